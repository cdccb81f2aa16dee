"""What every potential is: the ``Potential`` protocol, its ``Evaluation``, its errors, and the
batch budget that packs structures into model calls."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from pymatgen.core import Structure

from esen_flows.io import get_label
from esen_flows.packing import pack


class PotentialError(ValueError):
    """A potential cannot be built or cannot handle the input."""


class UnknownPotentialError(PotentialError):
    """The potential name is not one esen-flows knows how to build."""


class UnsupportedElementError(PotentialError):
    """A structure holds an element that the potential has no parameters for."""


@dataclass
class Evaluation:
    """Energies, forces and stresses of a list of structures.

    Attributes
    ----------
    energies
        Shape (n,), total energies in eV.
    forces
        One (n_i, 3) array per structure, eV/Angstrom.
    stresses
        Shape (n, 3, 3), eV/Angstrom^3, ASE's sign (positive = tensile).
    """

    energies: np.ndarray
    forces: list[np.ndarray]
    stresses: np.ndarray

    def __len__(self) -> int:
        return len(self.energies)


@runtime_checkable
class Potential(Protocol):
    """What every potential offers: batched evaluation, identity and an ASE calculator."""

    name: str
    checksum: str
    elements: frozenset[str] | None

    def evaluate(self, structures: Sequence[Structure | Atoms]) -> Evaluation:
        """Energies (eV), forces (eV/A) and stresses (eV/A^3) for all structures at once."""
        ...

    def as_calculator(self) -> Calculator:
        """An ASE calculator backed by this potential."""
        ...


#: Atoms per batch for potentials that state no budget (ASE calculators run a loop anyway).
DEFAULT_BATCH_ATOMS = 2048


def estimate_edges(atoms: Atoms, cutoff: float) -> int:
    """Directed neighbour pairs within ``cutoff`` (A) expected for ``atoms``: n * density *
    sphere volume. An estimate for budgeting (exact for a uniform density), not a count."""
    n = len(atoms)
    volume = abs(float(np.linalg.det(atoms.cell.array))) if atoms.cell.rank == 3 else 0.0
    if n == 0 or not volume > 0.0:
        return 0
    return math.ceil(n * n / volume * 4.0 / 3.0 * math.pi * cutoff**3)


@dataclass(frozen=True)
class BatchBudget:
    """How much one batched evaluation may hold: atoms and, for a graph model, estimated
    directed edges (``estimate_edges`` at ``cutoff``). Set from the device's free memory by the
    potential (``batch_budget()``), shrunk when a batch runs out of memory.

    Attributes
    ----------
    max_atoms
        Atoms per batch.
    max_edges
        Estimated edges per batch; None when edges cost nothing extra (ASE calculators).
    cutoff
        Neighbour cutoff (A) for the edge estimate.
    """

    max_atoms: int = DEFAULT_BATCH_ATOMS
    max_edges: int | None = None
    cutoff: float | None = None

    def cost(self, atoms: Atoms) -> tuple[int, int]:
        """(atoms, estimated edges) of one structure."""
        edges = estimate_edges(atoms, self.cutoff) if self.cutoff and self.max_edges else 0
        return len(atoms), edges

    def fits(self, n_atoms: int, n_edges: int) -> bool:
        """Whether a batch of that size is within the budget."""
        return n_atoms <= self.max_atoms and (self.max_edges is None or n_edges <= self.max_edges)

    def pack(self, structures: Sequence[Atoms]) -> list[list[int]]:
        """Consecutive groups of structure indices, each within the budget (a structure larger
        than the budget is a group of its own)."""
        return pack([self.cost(a) for a in structures], (self.max_atoms, self.max_edges))


def batch_budget(potential: Potential) -> BatchBudget:
    """The potential's own budget (its ``batch_budget()``), else ``BatchBudget()``."""
    own = getattr(potential, "batch_budget", None)
    budget = own() if callable(own) else own
    return budget if isinstance(budget, BatchBudget) else BatchBudget()


def is_out_of_memory(exc: BaseException) -> bool:
    """True for the errors a device raises when a batch does not fit (CUDA or host memory)."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text
    )


def check_elements(potential: Potential, structure: Structure | Atoms) -> None:
    """Raise ``UnsupportedElementError`` naming the first element the potential lacks."""
    if potential.elements is None:
        return
    if isinstance(structure, Atoms):
        symbols = set(structure.get_chemical_symbols())
    else:
        symbols = {el.symbol for el in structure.composition.elements}
    missing = sorted(symbols - potential.elements)
    if missing:
        name = get_label(structure) or "structure"
        raise UnsupportedElementError(
            f"{name}: element {', '.join(missing)} not supported by potential {potential.name!r} "
            f"(it knows {', '.join(sorted(potential.elements))})"
        )
    check_system(potential, structure)


def check_system(potential: Potential, structure: Structure | Atoms) -> None:
    """Raise ``PotentialError`` when a structure states a charge or spin (``atoms.info`` or
    ``Structure.properties``) other than the one a potential was built for (fairchem 2.x
    eSENs fold them into the model when loaded)."""
    system = getattr(potential, "system", None)
    if not system:
        return
    info = structure.info if isinstance(structure, Atoms) else structure.properties
    for key in ("charge", "spin"):
        if key in info and info[key] is not None and int(info[key]) != system[key]:
            name = get_label(structure) or "structure"
            raise PotentialError(
                f"{name}: {key} {info[key]} differs from the {key} {system[key]} potential "
                f"{potential.name!r} was loaded for (convert the checkpoint with --{key})"
            )


def normalise_dtype(dtype: Any) -> str | None:
    """``'float32'``/``'float64'``/a torch dtype -> its name; None stays None."""
    if dtype is None:
        return None
    text = str(dtype).removeprefix("torch.")
    if text not in ("float32", "float64"):
        raise PotentialError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return text
