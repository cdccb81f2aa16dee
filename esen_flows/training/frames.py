"""Training frames (structures labelled with energy, forces and stress) and their batches."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from ase import Atoms

from esen_flows.model.esen import AtomsBatch


@dataclass
class Frame:
    """One labelled structure as tensors (float64 until batched).

    Attributes
    ----------
    positions
        (n, 3) A.
    numbers
        (n,) atomic numbers.
    cell
        (3, 3) lattice vectors as rows, A.
    energy
        Total energy, eV.
    forces
        (n, 3) eV/A.
    stress
        (3, 3) eV/A^3, ASE's sign.
    """

    positions: torch.Tensor
    numbers: torch.Tensor
    cell: torch.Tensor
    energy: float
    forces: torch.Tensor
    stress: torch.Tensor  # (3, 3) eV/A^3

    @classmethod
    def from_atoms(cls, atoms: Atoms) -> Frame:
        return cls(
            positions=torch.as_tensor(atoms.positions, dtype=torch.float64),
            numbers=torch.as_tensor(atoms.numbers, dtype=torch.long),
            cell=torch.as_tensor(atoms.cell.array, dtype=torch.float64),
            energy=float(atoms.get_potential_energy()),
            forces=torch.as_tensor(atoms.get_forces(), dtype=torch.float64),
            stress=torch.as_tensor(atoms.get_stress(voigt=False), dtype=torch.float64),
        )


@dataclass
class Batch:
    """Frames concatenated for one forward pass, with their targets (B frames, N atoms).

    Attributes
    ----------
    data
        The model's input: positions, numbers, cells and structure index of every atom, in
        the batch's dtype.
    energy
        (B,) total energies, eV (float64).
    natoms
        (B,) atoms per frame.
    forces
        (N, 3) eV/A, in the batch's dtype.
    stress
        (B, 3, 3) eV/A^3, ASE's sign, in the batch's dtype.
    """

    data: AtomsBatch
    energy: torch.Tensor  # (B,) float64 eV
    natoms: torch.Tensor  # (B,)
    forces: torch.Tensor  # (N, 3)
    stress: torch.Tensor  # (B, 3, 3)


def make_batch(frames: Sequence[Frame], dtype: torch.dtype = torch.float32) -> Batch:
    """Concatenate frames (torch-sim style: one structure index per atom)."""
    counts = torch.tensor([len(f.numbers) for f in frames])
    data = AtomsBatch(
        positions=torch.cat([f.positions for f in frames]).to(dtype),
        numbers=torch.cat([f.numbers for f in frames]),
        cell=torch.stack([f.cell for f in frames]).to(dtype),
        system=torch.repeat_interleave(torch.arange(len(frames)), counts),
    )
    return Batch(
        data=data,
        energy=torch.tensor([f.energy for f in frames], dtype=torch.float64),
        natoms=counts,
        forces=torch.cat([f.forces for f in frames]).to(dtype),
        stress=torch.stack([f.stress for f in frames]).to(dtype),
    )


def batches(
    frames: Sequence[Frame], batch_atoms: int, rng: np.random.Generator | None = None
) -> list[list[int]]:
    """Indices of frames grouped into batches of at most ``batch_atoms`` atoms (shuffled when
    ``rng`` is given; a frame larger than the limit is a batch of its own)."""
    order = rng.permutation(len(frames)) if rng is not None else np.arange(len(frames))
    out: list[list[int]] = [[]]
    total = 0
    for i in order:
        n = len(frames[i].numbers)
        if out[-1] and total + n > batch_atoms:
            out.append([])
            total = 0
        out[-1].append(int(i))
        total += n
    return [b for b in out if b]


def fit_element_energies(frames: Sequence[Frame], num_elements: int) -> torch.Tensor:
    """Per-element reference energies (eV) by least squares of energy on composition."""
    present = sorted({int(z) for f in frames for z in f.numbers})
    counts = np.zeros((len(frames), len(present)))
    for k, f in enumerate(frames):
        for j, z in enumerate(present):
            counts[k, j] = int((f.numbers == z).sum())
    energies = np.array([f.energy for f in frames])
    coef, *_ = np.linalg.lstsq(counts, energies, rcond=None)
    out = torch.zeros(num_elements, dtype=torch.float64)
    for j, z in enumerate(present):
        out[z] = coef[j]
    return out
