"""Compare an ``ESEN`` with another code's energies, forces and stresses on the same cells.

The reference is an ``.npz`` as ``benchmarks/_fairchem_write.py`` writes it from fairchem's
own inference: ``labels`` (S,), ``counts`` (S,) atoms per structure, ``numbers`` (N,),
``positions`` (N, 3) A, ``cells`` (S, 3, 3) A, ``energy`` (S,) eV, ``forces`` (N, 3) eV/A and
``stress`` (S, 3, 3) eV/A^3 (ASE's sign).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from ase import Atoms

from esen_flows.model.esen import ESEN, AtomsBatch


@dataclass
class Reference:
    """Structures and the reference code's results for them (S structures).

    Attributes
    ----------
    structures
        S periodic ``Atoms`` (positions and cell in A), each with its ``info["label"]``.
    energy
        (S,) eV.
    forces
        S arrays (n_k, 3), eV/A, one per structure.
    stress
        (S, 3, 3) eV/A^3, ASE's sign.
    """

    structures: list[Atoms]
    energy: np.ndarray
    forces: list[np.ndarray]
    stress: np.ndarray

    @classmethod
    def read(cls, path: str | Path) -> Reference:
        with np.load(path) as data:
            offsets = np.concatenate([[0], np.cumsum(data["counts"])])
            structures, forces = [], []
            for k, label in enumerate(data["labels"]):
                part = slice(offsets[k], offsets[k + 1])
                atoms = Atoms(
                    numbers=data["numbers"][part],
                    positions=data["positions"][part],
                    cell=data["cells"][k],
                    pbc=True,
                )
                atoms.info["label"] = str(label)
                structures.append(atoms)
                forces.append(data["forces"][part])
            return cls(structures, data["energy"].copy(), forces, data["stress"].copy())


def parity(model: ESEN, reference: Reference, dtype: torch.dtype = torch.float64) -> list[dict]:
    """Per structure: label, atoms, relative energy error, and the largest force and stress
    errors relative to the largest reference force (eV/A) and stress (eV/A^3) of the set."""
    model = model.to(dtype).eval()
    f_scale = max(float(np.abs(f).max()) for f in reference.forces)
    s_scale = float(np.abs(reference.stress).max())
    rows = []
    for k, atoms in enumerate(reference.structures):
        out = model(AtomsBatch.from_atoms([atoms], dtype))
        energy = float(out["energy"][0].detach())
        forces = out["forces"].detach().double().numpy()
        stress = out["stress"][0].detach().double().numpy()
        rows.append(
            {
                "label": atoms.info["label"],
                "atoms": len(atoms),
                "energy": energy,
                "energy_ref": float(reference.energy[k]),
                "energy_rel": abs(energy - reference.energy[k]) / max(abs(reference.energy[k]), 1),
                "forces_rel": float(np.abs(forces - reference.forces[k]).max()) / f_scale,
                "stress_rel": float(np.abs(stress - reference.stress[k]).max()) / s_scale,
            }
        )
    return rows
