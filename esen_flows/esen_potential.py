"""The eSEN ``Potential`` (layer 2 over the model): batched evaluation, and an ASE calculator.

Importing this module registers ``"esen:PATH"`` and the shipped ``"esen-emt-tiny"`` with
``esen_flows.potentials.get_potential``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from pymatgen.core import Structure

from esen_flows.io import to_atoms
from esen_flows.model.esen import ESEN, AtomsBatch, CheckpointError, pack_structures
from esen_flows.potentials import (
    Evaluation,
    PotentialError,
    check_elements,
    normalise_dtype,
    register_potential,
)

ZOO = Path(__file__).resolve().parent / "zoo"
SHIPPED = {
    "esen-emt-tiny": "esen-emt-tiny.pt",
    "esen-emt-tiny-direct": "esen-emt-tiny-direct.pt",  # its direct-force twin (NVE studies)
}

#: Atoms per forward pass when evaluating a long list (memory-budgeted batching comes later).
DEFAULT_MAX_ATOMS = 2048


def _file_checksum(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """CUDA when available and not told otherwise, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: Any) -> torch.dtype:
    """``"float32"``/``"float64"``/torch dtype/None (float32) -> torch dtype."""
    name = normalise_dtype(dtype) or "float32"
    return {"float32": torch.float32, "float64": torch.float64}[name]


class ESENPotential:
    """A ``Potential`` backed by an ``ESEN`` model.

    Parameters
    ----------
    model
        The network (put in eval mode, moved to ``device`` and ``dtype``).
    name, checksum
        Identity; the checksum is the checkpoint file's hash (or the weights' hash).
    max_atoms
        Structures are packed into forward passes of at most this many atoms.
    forces
        ``"conservative"`` (-dE/dr and stress by autograd), ``"direct"`` (the direct-force
        head of a pretraining checkpoint: no stress, which is returned as NaN) or ``"auto"``
        (direct exactly when the model has a direct-force head).
    """

    def __init__(
        self,
        model: ESEN,
        name: str,
        checksum: str,
        device: str | torch.device | None = None,
        dtype: Any = None,
        max_atoms: int = DEFAULT_MAX_ATOMS,
        forces: str = "auto",
    ):
        if forces not in ("auto", "conservative", "direct"):
            raise ValueError(f"forces must be 'auto', 'conservative' or 'direct', got {forces!r}")
        if forces == "direct" and model.force_head is None:
            raise PotentialError(f"potential {name!r}: the model has no direct-force head")
        self.direct = forces == "direct" or (forces == "auto" and model.force_head is not None)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype)
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        self.name = name
        self.checksum = checksum
        self.elements: frozenset[str] | None = model.config.supported_elements
        self.max_atoms = max_atoms

    def evaluate(self, structures: Sequence[Structure | Atoms]) -> Evaluation:
        """Energies (eV), forces (eV/A), stresses (eV/A^3, ASE sign), a few batches at most."""
        atoms = [s if isinstance(s, Atoms) else to_atoms(s) for s in structures]
        for a in atoms:
            check_elements(self, a)
        n = len(atoms)
        energies = np.empty(n)
        stresses = np.empty((n, 3, 3))
        forces: list[np.ndarray] = [np.empty((0, 3))] * n
        for chunk in pack_structures([len(a) for a in atoms], self.max_atoms):
            data = AtomsBatch.from_atoms([atoms[i] for i in chunk], self.dtype, self.device)
            if self.direct:
                with torch.no_grad():
                    out = self.model(data, direct=True)
                s = np.full((len(chunk), 3, 3), np.nan)
            else:
                out = self.model(data)
                s = out["stress"].detach().cpu().double().numpy()
            e = out["energy"].detach().cpu().numpy()
            f = out["forces"].detach().cpu().double().numpy()
            offsets = np.cumsum([0] + [len(atoms[i]) for i in chunk])
            for k, i in enumerate(chunk):
                energies[i] = e[k]
                forces[i] = f[offsets[k] : offsets[k + 1]]
                stresses[i] = s[k]
        return Evaluation(energies=energies, forces=forces, stresses=stresses)

    def as_calculator(self) -> Calculator:
        """An ASE calculator sharing this potential's model."""
        return ESENCalculator(self)


class ESENCalculator(Calculator):
    """ASE calculator over an ``ESENPotential`` (energy, free_energy, forces, stress)."""

    implemented_properties = ("energy", "free_energy", "forces", "stress")

    def __init__(self, potential: ESENPotential, **kwargs: Any):
        super().__init__(**kwargs)
        self.potential = potential

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        ev = self.potential.evaluate([self.atoms])
        stress = ev.stresses[0]
        self.results = {
            "energy": float(ev.energies[0]),
            "free_energy": float(ev.energies[0]),
            "forces": ev.forces[0],
            "stress": np.array(
                [stress[0, 0], stress[1, 1], stress[2, 2], stress[1, 2], stress[0, 2], stress[0, 1]]
            ),
        }


def load_potential(
    path: str | Path, device: Any = None, dtype: Any = None, name: str | None = None
) -> ESENPotential:
    """An ``ESENPotential`` from a checkpoint file (validated, ``weights_only=True``)."""
    path = Path(path).expanduser()
    model = ESEN.load(path)
    return ESENPotential(
        model,
        name=name or f"esen:{path}",
        checksum=_file_checksum(path),
        device=device,
        dtype=dtype,
    )


def _build_path(path: str, device: Any = None, dtype: Any = None) -> ESENPotential:
    try:
        return load_potential(path, device=device, dtype=dtype)
    except CheckpointError as exc:
        raise PotentialError(f"potential 'esen:{path}': {exc}") from None


def _build_shipped(name: str):
    def build(device: Any = None, dtype: Any = None) -> ESENPotential:
        path = ZOO / SHIPPED[name]
        if not path.is_file():
            raise PotentialError(
                f"potential {name!r}: the checkpoint {path.name} is not shipped in this "
                "installation yet; use 'esen:PATH' with a checkpoint of your own"
            )
        return load_potential(path, device=device, dtype=dtype, name=name)

    return build


register_potential("esen", _build_path, prefix=True)
for _name in SHIPPED:
    register_potential(_name, _build_shipped(_name))
