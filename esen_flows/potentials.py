"""The one interface the rest of esen-flows sees: a ``Potential``.

``get_potential(name)`` turns a name into a ``Potential``:

- ``"emt"``: ASE's effective-medium theory (Al, Cu, Ag, Au, Ni, Pd, Pt; H, C, N, O roughly),
- ``"module:Class"``: any ASE ``Calculator`` class (instantiated without arguments) or any class
  that already implements the ``Potential`` protocol,
- ``"esen:PATH"`` and ``"esen-emt-tiny"``: the eSEN model, once ``esen_flows.model`` provides it.

Potentials are cached per process, so a job that asks for the same name again reuses the loaded
model (one model load per process). A cached potential may be used from several threads at once
(thread pools, notebooks, FireWorks ``rapidfire`` in threads): an ASE-calculator potential
gives each thread its own calculator, an eSEN potential evaluates one batch at a time.
"""

from __future__ import annotations

import hashlib
import importlib
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from pymatgen.core import Structure

from esen_flows.io import get_label, to_atoms


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
        groups: list[list[int]] = []
        n_atoms = n_edges = 0
        for i, atoms in enumerate(structures):
            a, e = self.cost(atoms)
            if not groups or not self.fits(n_atoms + a, n_edges + e):
                groups.append([])
                n_atoms = n_edges = 0
            groups[-1].append(i)
            n_atoms += a
            n_edges += e
        return groups


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


@dataclass
class ASECalculatorPotential:
    """A ``Potential`` over any ASE calculator: a loop, one structure after another.

    Safe to use from several threads at once (the per-process cache hands the same instance
    to every job of a process): each thread evaluates with a calculator of its own.

    Parameters
    ----------
    factory
        Makes a fresh calculator (called once; the instance is reused, reset before each
        structure so that a result never depends on the structure evaluated before it).
    name, checksum
        Identity of the potential; the checksum goes into every result key.
    elements
        Element symbols the calculator has parameters for, or None when unknown.
    """

    factory: Callable[[], Calculator]
    name: str
    checksum: str
    elements: frozenset[str] | None = None
    _local: threading.local = field(
        default_factory=threading.local, init=False, repr=False, compare=False
    )

    def __getstate__(self) -> dict[str, Any]:  # calculators stay with their threads
        return {k: v for k, v in self.__dict__.items() if k != "_local"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _local=threading.local())

    def _calculator(self) -> Calculator:
        """This thread's calculator: ASE calculators keep per-structure state (neighbour lists,
        results), so threads sharing one would read each other's (wrong energies, shape
        errors); each thread gets its own, made once."""
        calc = getattr(self._local, "calc", None)
        if calc is None:
            calc = self._local.calc = self.factory()
        return calc

    def evaluate(self, structures: Sequence[Structure | Atoms]) -> Evaluation:
        """Evaluate each structure with the calculator; see ``Potential.evaluate``."""
        n = len(structures)
        energies = np.empty(n)
        stresses = np.empty((n, 3, 3))
        forces = []
        calc = self._calculator()
        for i, obj in enumerate(structures):
            check_elements(self, obj)
            atoms = obj if isinstance(obj, Atoms) else to_atoms(obj)
            atoms = atoms.copy()
            if hasattr(calc, "reset"):  # no state from the previous structure (EMT's
                calc.reset()  # neighbour list shifts its forces by ~1e-14 eV/A with history)
            atoms.calc = calc
            energies[i] = atoms.get_potential_energy()
            forces.append(np.array(atoms.get_forces(), dtype=float))
            stresses[i] = atoms.get_stress(voigt=False)
        return Evaluation(energies=energies, forces=forces, stresses=stresses)

    def as_calculator(self) -> Calculator:
        """A fresh calculator instance (ASE calculators hold per-atoms state)."""
        return self.factory()


def _hash(*parts: Any) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(repr(part).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def _make_emt(**_: Any) -> Potential:
    import ase
    from ase.calculators.emt import EMT, parameters

    elements = frozenset(parameters)
    return ASECalculatorPotential(
        factory=EMT,
        name="emt",
        checksum=_hash("ase.calculators.emt.EMT", ase.__version__, sorted(parameters.items())),
        elements=elements,
    )


def _make_from_class(spec: str, **kwargs: Any) -> Potential:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UnknownPotentialError(
            f"potential {spec!r}: cannot import module {module_name!r} ({exc})"
        ) from exc
    try:
        cls = getattr(module, attr)
    except AttributeError as exc:
        raise UnknownPotentialError(
            f"potential {spec!r}: module {module_name!r} has no attribute {attr!r}"
        ) from exc
    version = getattr(module, "__version__", None) or getattr(
        importlib.import_module(module_name.split(".")[0]), "__version__", "unknown"
    )
    if isinstance(cls, type) and issubclass(cls, Calculator):
        elements = getattr(cls, "supported_elements", None)
        return ASECalculatorPotential(
            factory=cls,
            name=spec,
            checksum=_hash(spec, version),
            elements=frozenset(elements) if elements is not None else None,
        )
    if isinstance(cls, type) and hasattr(cls, "evaluate"):
        obj = cls(**kwargs)
        if not isinstance(obj, Potential):
            raise PotentialError(
                f"potential {spec!r}: {attr} has evaluate() but lacks name, checksum, "
                "elements or as_calculator()"
            )
        return obj
    raise PotentialError(
        f"potential {spec!r}: {attr} is neither an ASE Calculator class nor a Potential class"
    )


_BUILDERS: dict[str, Callable[..., Potential]] = {"emt": _make_emt}
_PREFIX_BUILDERS: dict[str, Callable[..., Potential]] = {}
_CACHE: dict[tuple[str, str | None, str | None], Potential] = {}
_LOCK = threading.Lock()


def register_potential(name: str, builder: Callable[..., Potential], prefix: bool = False) -> None:
    """Register a builder for a potential name (or a ``prefix:`` family such as ``esen:``)."""
    (_PREFIX_BUILDERS if prefix else _BUILDERS)[name] = builder


def normalise_dtype(dtype: Any) -> str | None:
    """``'float32'``/``'float64'``/a torch dtype -> its name; None stays None."""
    if dtype is None:
        return None
    text = str(dtype).removeprefix("torch.")
    if text not in ("float32", "float64"):
        raise PotentialError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return text


def get_potential(name: str | Potential, device: str | None = None, dtype: Any = None) -> Potential:
    """Build (or fetch from the per-process cache) the potential called ``name``.

    Parameters
    ----------
    name
        ``"emt"``, ``"module:Class"``, ``"esen:PATH"``, ``"esen-emt-tiny"``; a ``Potential``
        instance is returned unchanged.
    device
        ``"cpu"``, ``"cuda"``, ...; ignored by ASE calculators.
    dtype
        ``"float32"``/``"float64"`` or a torch dtype; ignored by ASE calculators.

    Raises
    ------
    UnknownPotentialError
        When the name matches nothing esen-flows can build.
    """
    if not isinstance(name, str):
        if isinstance(name, Potential):
            return name
        raise TypeError(f"potential must be a name or a Potential, got {type(name).__name__}")
    dtype_s = normalise_dtype(dtype)
    key = (name, device, dtype_s)
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
        if name.startswith("esen"):
            _load_esen()
        kwargs = {"device": device, "dtype": dtype_s}
        prefix = name.split(":", 1)[0] if ":" in name else None
        if name in _BUILDERS:
            potential = _BUILDERS[name](**kwargs)
        elif prefix in _PREFIX_BUILDERS:
            potential = _PREFIX_BUILDERS[prefix](name.split(":", 1)[1], **kwargs)
        elif name.startswith("esen"):
            shipped = sorted(n for n in _BUILDERS if n.startswith("esen"))
            raise UnknownPotentialError(
                f"unknown eSEN potential {name!r}: use 'esen:PATH' with a checkpoint file"
                + (f" or a shipped model ({', '.join(shipped)})" if shipped else "")
            )
        elif prefix is not None:
            potential = _make_from_class(name)
        else:
            known = sorted(_BUILDERS) + [f"{p}:PATH" for p in sorted(_PREFIX_BUILDERS)]
            raise UnknownPotentialError(
                f"unknown potential {name!r}: expected one of {', '.join(known)} or "
                "'module:Class' naming an ASE Calculator class"
            )
        _CACHE[key] = potential
        return potential


def check_potential(name: str, device: str | None = None, dtype: Any = None) -> Potential:
    """Build the potential ``name`` here to check that it exists and loads, on ``device``
    when this machine has it, else on the CPU (a flow built on a login node without GPUs
    runs on GPU workers later)."""
    if device is not None and str(device).startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            device = None
    return get_potential(name, device=device, dtype=dtype)


def _load_esen() -> None:
    """Register the eSEN potentials (imports torch, so only when an eSEN name is asked for)."""
    importlib.import_module("esen_flows.esen_potential")


def clear_cache() -> None:
    """Forget every cached potential (tests use it to count model loads)."""
    with _LOCK:
        _CACHE.clear()
