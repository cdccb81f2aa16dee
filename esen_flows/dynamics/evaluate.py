"""Batched evaluation of many structures that never loses one: the displaced supercells of
phonopy and phono3py, the static task, every step of the relaxation and MD engines.

A batch that raises is taken apart so that one bad structure fails alone; the potential itself
keeps each batch within its memory budget and splits a batch that runs out of memory.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from ase import Atoms

from esen_flows.dynamics.threads import single_threaded_blas
from esen_flows.potentials import BatchBudget, Evaluation, Potential, batch_budget

#: Energies per atom beyond this magnitude (eV/atom) mean a structure blew up.
EXPLODED_EV_PER_ATOM = 1.0e3


@dataclass(frozen=True)
class Outcome:
    """One structure's evaluation: its results, or why there are none.

    Attributes
    ----------
    energy
        eV (NaN when the evaluation raised).
    forces
        (n, 3) eV/A, or None.
    stress
        (3, 3) eV/A^3, ASE sign, or None.
    error
        The error the evaluation raised (``"Type: message"``), or None.
    """

    energy: float = math.nan
    forces: np.ndarray | None = None
    stress: np.ndarray | None = None
    error: str | None = None

    def problem(self, n_atoms: int, with_stress: bool = True) -> str | None:
        """Why this outcome cannot be used (the evaluation raised, or NaN/inf/exploded), or
        None; ``with_stress=False`` ignores the stress (unused without a cell relaxation)."""
        if self.error is not None:
            return f"evaluation failed ({self.error})"
        stress = self.stress if with_stress else np.zeros((3, 3))
        return health_problem(self.energy, self.forces, stress, n_atoms)  # type: ignore[arg-type]


def evaluate_robustly(potential: Potential, atoms_list: Sequence[Atoms]) -> list[Outcome]:
    """Evaluate a batch; if the batch call raises, find the culprits one by one.

    Returns, per structure, an ``Outcome``: its energy, forces and stress, or the error: one
    bad structure never sinks the others.
    """
    try:
        ev = potential.evaluate(list(atoms_list))
        return _unpack(ev)
    except Exception as exc:
        if len(atoms_list) == 1:
            return [Outcome(error=f"{type(exc).__name__}: {exc}")]
    out: list[Outcome] = []
    for atoms in atoms_list:
        try:
            out.extend(_unpack(potential.evaluate([atoms])))
        except Exception as exc:
            out.append(Outcome(error=f"{type(exc).__name__}: {exc}"))
    return out


def _unpack(ev: Evaluation) -> list[Outcome]:
    return [
        Outcome(float(ev.energies[i]), np.asarray(ev.forces[i]), np.asarray(ev.stresses[i]))
        for i in range(len(ev))
    ]


def health_problem(energy: float, forces: np.ndarray, stress: np.ndarray, n: int) -> str | None:
    """Why an evaluation of ``n`` atoms is unusable (NaN, inf, an exploded energy), or None."""
    if not (math.isfinite(energy) and np.all(np.isfinite(forces)) and np.all(np.isfinite(stress))):
        return "non-finite energy, forces or stress (NaN or inf)"
    if abs(energy) / n > EXPLODED_EV_PER_ATOM:
        return f"energy exploded ({energy / n:.3g} eV/atom)"
    return None


@single_threaded_blas()
def evaluate_batched(
    potential: Potential,
    structures: Sequence[Atoms],
    budget: BatchBudget | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[Outcome]:
    """Energies, forces and stresses of many structures (e.g. thousands of displaced
    supercells), in batches that fill the potential's memory budget.

    Returns
    -------
    list
        Per structure, in input order, an ``Outcome``: energy (eV), forces ((n, 3) eV/A) and
        stress ((3, 3) eV/A^3), or the error of a structure that could not be evaluated.
    """
    budget = budget or batch_budget(potential)
    out: list[Outcome] = []
    for group in budget.pack(list(structures)):
        out.extend(evaluate_robustly(potential, [structures[i] for i in group]))
        if progress is not None:
            progress(len(group))
    return out
