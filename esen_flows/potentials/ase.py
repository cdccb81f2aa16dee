"""ASE calculators as potentials: ``"emt"`` and any ``"module:Class"`` naming an ASE
``Calculator`` class (or a class implementing the ``Potential`` protocol)."""

from __future__ import annotations

import hashlib
import importlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from pymatgen.core import Structure

from esen_flows.io import to_atoms
from esen_flows.potentials.base import (
    Evaluation,
    Potential,
    PotentialError,
    UnknownPotentialError,
    check_elements,
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


def checksum_of(*parts: Any) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(repr(part).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def make_emt(**_: Any) -> Potential:
    import ase
    from ase.calculators.emt import EMT, parameters

    elements = frozenset(parameters)
    return ASECalculatorPotential(
        factory=EMT,
        name="emt",
        checksum=checksum_of(
            "ase.calculators.emt.EMT", ase.__version__, sorted(parameters.items())
        ),
        elements=elements,
    )


def make_from_class(spec: str, **kwargs: Any) -> Potential:
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
            checksum=checksum_of(spec, version),
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
