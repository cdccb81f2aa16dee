"""The one interface the rest of esen-flows sees: a ``Potential``.

``get_potential(name)`` turns a name into a ``Potential``:

- ``"emt"``: ASE's effective-medium theory (Al, Cu, Ag, Au, Ni, Pd, Pt; H, C, N, O roughly),
- ``"module:Class"``: any ASE ``Calculator`` class (instantiated without arguments) or any class
  that already implements the ``Potential`` protocol,
- ``"esen:PATH"``: an eSEN checkpoint (esen-flows' own, or fairchem's 1.x/2.x files), and the
  shipped ``"esen-emt-tiny"`` (``zoo.SHIPPED``).

Potentials are cached per process, so a job that asks for the same name again reuses the loaded
model (one model load per process). A cached potential may be used from several threads at once
(thread pools, notebooks, FireWorks ``rapidfire`` in threads): an ASE-calculator potential
gives each thread its own calculator, an eSEN potential evaluates one batch at a time.

Modules: ``base`` (the protocol, ``Evaluation``, errors, batch budget), ``ase`` (ASE
calculators), ``esen`` (the eSEN potential; imports torch), ``zoo`` (the shipped models),
``registry`` (names -> builders, the cache). ``ESENPotential``, ``ESENCalculator`` and
``load_potential`` are importable from here; torch is imported when one is first used.
"""

from typing import Any

from esen_flows.potentials.ase import ASECalculatorPotential
from esen_flows.potentials.base import (
    DEFAULT_BATCH_ATOMS,
    BatchBudget,
    Evaluation,
    Potential,
    PotentialError,
    UnknownPotentialError,
    UnsupportedElementError,
    batch_budget,
    check_elements,
    check_system,
    estimate_edges,
    is_out_of_memory,
    normalise_dtype,
)
from esen_flows.potentials.registry import (
    check_potential,
    clear_cache,
    get_potential,
    register_potential,
)
from esen_flows.potentials.zoo import SHIPPED

_ESEN_NAMES = ("ESENPotential", "ESENCalculator", "load_potential")


def __getattr__(name: str) -> Any:
    if name in _ESEN_NAMES:  # torch only when the eSEN potential itself is wanted
        from esen_flows.potentials import esen

        return getattr(esen, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_BATCH_ATOMS",
    "SHIPPED",
    "ASECalculatorPotential",
    "BatchBudget",
    "ESENCalculator",
    "ESENPotential",
    "Evaluation",
    "Potential",
    "PotentialError",
    "UnknownPotentialError",
    "UnsupportedElementError",
    "batch_budget",
    "check_elements",
    "check_potential",
    "check_system",
    "clear_cache",
    "estimate_edges",
    "get_potential",
    "is_out_of_memory",
    "load_potential",
    "normalise_dtype",
    "register_potential",
]
