"""Relaxation of many structures at once: batched FIRE with a Frechet cell filter, a full batch.

The structures wait in a queue; as many as the potential's memory budget allows (atoms and
estimated edges, ``Potential.batch_budget``) relax together, every step ONE
``potential.evaluate`` call for all of them. A structure leaves the batch when it converges,
reaches the step limit or fails, and waiting ones take its place at once, so the model sees a
full batch for the whole run. ``on_result`` is called the moment a structure leaves, so a
caller can persist it. The update is ASE's FIRE (``esen_flows.dynamics.fire``) on
``FrechetCellFilter``'s degrees of freedom (``esen_flows.dynamics.frechet``), optionally with
the space-group constraint of ASE's ``FixSymmetry``; a relaxation here follows the trajectory
ASE's would.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from ase import Atoms
from pymatgen.core import Structure

from esen_flows.dynamics.evaluate import evaluate_robustly
from esen_flows.dynamics.fire import FireSettings
from esen_flows.dynamics.frechet import (
    RelaxState,
    frechet_gradient,
    relax_init,
    relax_step,
    symmetrize_results,
)
from esen_flows.dynamics.symmetry import (
    SymmetryError,
    SymmetryOps,
    find_symmetry,
    refine_symmetry,
)
from esen_flows.dynamics.threads import single_threaded_blas
from esen_flows.io import get_label, to_atoms
from esen_flows.potentials import BatchBudget, Potential, batch_budget

__all__ = ["FireSettings", "RelaxResult", "relax_structures"]

RelaxStatus = Literal["converged", "max_steps", "failed"]

#: A cell below this volume per atom (A^3) has collapsed; it is not evaluated.
MIN_VOLUME_PER_ATOM = 1.0


@dataclass
class RelaxResult:
    """Outcome of one structure's relaxation.

    Attributes
    ----------
    index
        Position of the structure in the input list.
    status
        ``"converged"``, ``"max_steps"`` or ``"failed"``.
    atoms
        Final structure (relaxed positions and cell).
    energy
        Final energy, eV (NaN when failed before any evaluation).
    forces
        Final forces, (n_atoms, 3), eV/A.
    stress
        Final stress, (3, 3), eV/A^3, ASE sign.
    n_steps
        FIRE steps taken.
    max_force
        Largest atomic force norm, eV/A.
    max_cell_force
        Largest row norm of the filter's cell gradient, eV (ASE's cell convergence measure).
    reason
        Why it failed, else None.
    wall_time
        Seconds from entering the batch to leaving it.
    spacegroup
        International symbol kept by the symmetry constraint (None without it).
    """

    index: int
    status: RelaxStatus
    atoms: Atoms
    energy: float = math.nan
    forces: np.ndarray | None = None
    stress: np.ndarray | None = None
    n_steps: int = 0
    max_force: float = math.nan
    max_cell_force: float = math.nan
    reason: str | None = None
    wall_time: float = 0.0
    spacegroup: str | None = None


@single_threaded_blas()
def relax_structures(
    potential: Potential,
    structures: Sequence[Structure | Atoms],
    *,
    fmax: float = 0.05,
    max_steps: int = 500,
    relax_cell: bool = True,
    symmetry: bool = False,
    symprec: float = 0.01,
    fire: FireSettings | None = None,
    budget: BatchBudget | None = None,
    on_result: Callable[[RelaxResult], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[RelaxResult]:
    """Relax structures with batched FIRE (+ Frechet cell filter when ``relax_cell``).

    Parameters
    ----------
    potential
        Any ``Potential``; the structures of the batch are evaluated in one call per step
        (an ASE calculator evaluates them one after another).
    structures
        Structures or ``Atoms`` of any sizes.
    fmax
        Convergence threshold (eV/A): every atomic force norm AND every row of the cell
        gradient (eV, i.e. stress x volume / n_atoms as ASE's filter scales it) below it.
    max_steps
        Step limit per structure; a structure that reaches it ends as ``"max_steps"``.
    relax_cell
        Relax the cell too (Frechet cell filter); positions only when False.
    symmetry
        Keep each structure's space group (found by spglib within ``symprec`` A, refined to
        be exact first), as ASE's ``FixSymmetry``: for phonon and conductivity preparation.
    fire
        FIRE parameters (ASE's defaults).
    budget
        Atoms and estimated edges in the batch at once; None: the potential's own.
    on_result
        Called with each ``RelaxResult`` as soon as its structure leaves the batch.
    progress
        Called with the number of structures that just finished.

    Returns
    -------
    list of RelaxResult
        In input order.
    """
    if not (isinstance(fmax, int | float) and math.isfinite(fmax) and fmax > 0):
        raise ValueError(f"fmax must be a positive number (eV/A), got {fmax!r}")
    if not (isinstance(max_steps, int) and max_steps >= 1):
        raise ValueError(f"max_steps must be an integer of at least 1, got {max_steps!r}")
    fire = fire or FireSettings()
    budget = budget or batch_budget(potential)
    n = len(structures)
    templates = [(s if isinstance(s, Atoms) else to_atoms(s)).copy() for s in structures]
    for t in templates:
        t.calc = None
    labels = [get_label(t) or f"structure {i}" for i, t in enumerate(templates)]
    results: list[RelaxResult | None] = [None] * n
    queue = deque(range(n))
    cost = {i: budget.cost(templates[i]) for i in range(n)}
    started: dict[int, float] = {}
    spacegroups: dict[int, str] = {}
    state = relax_init([], [], fire=fire)

    def finish(result: RelaxResult) -> None:
        i = result.index
        result.wall_time = time.perf_counter() - started.get(i, time.perf_counter())
        result.spacegroup = spacegroups.get(i)
        results[i] = result
        if on_result is not None:
            on_result(result)
        if progress is not None:
            progress(1)

    def fail(i: int, reason: str, atoms: Atoms | None = None, **kw) -> None:
        finish(
            RelaxResult(i, "failed", atoms or templates[i], reason=f"{labels[i]}: {reason}", **kw)
        )

    def refill(state: RelaxState) -> RelaxState:
        used = np.sum([cost[i] for i in state.index], axis=0) if state.n_structures else (0, 0)
        n_atoms, n_edges = int(used[0]), int(used[1])
        joining: list[int] = []
        prepared: list[Atoms] = []
        groups: list[SymmetryOps | None] = []
        while queue:
            i = queue[0]
            a, e = cost[i]
            if (state.n_structures or joining) and not budget.fits(n_atoms + a, n_edges + e):
                break
            queue.popleft()
            started[i] = time.perf_counter()
            atoms, ops = templates[i], None
            if symmetry:
                try:
                    atoms = refine_symmetry(atoms, symprec)
                    ops = find_symmetry(atoms, symprec)
                except SymmetryError as exc:
                    fail(i, str(exc).split(": ", 1)[-1])
                    continue
                spacegroups[i] = ops.symbol
            joining.append(i)
            prepared.append(atoms)
            groups.append(ops)
            n_atoms, n_edges = n_atoms + a, n_edges + e
        if not joining:
            return state
        return state.concat(relax_init(prepared, joining, relax_cell, groups, fire))

    while queue or state.n_structures:
        state = refill(state)
        if not state.n_structures:
            break
        state = _drop_collapsed(state, fail)
        if not state.n_structures:
            continue
        evaluated = state.atoms()
        for i, atoms in zip(state.index, evaluated, strict=True):
            atoms.info.update(templates[i].info)  # labels, for the potential and its errors
        energies, forces, stresses, problems = _evaluate(potential, evaluated, relax_cell)
        forces, stresses = symmetrize_results(state, forces, stresses)
        grad = frechet_gradient(state, forces, stresses)
        converged = (problems == "") & (grad.fmax < fmax)
        done = (problems != "") | converged | (state.n_steps >= max_steps)
        bounds = np.concatenate([[0], np.cumsum(state.counts)])
        for b in np.flatnonzero(done):
            i = int(state.index[b])
            final = templates[i].copy()
            final.set_cell(evaluated[b].cell, scale_atoms=False)
            final.positions = evaluated[b].positions
            if problems[b]:
                fail(i, problems[b], final, energy=energies[b], n_steps=int(state.n_steps[b]))
                continue
            finish(
                RelaxResult(
                    i,
                    "converged" if converged[b] else "max_steps",
                    final,
                    energy=float(energies[b]),
                    forces=forces[bounds[b] : bounds[b + 1]].copy(),
                    stress=stresses[b].copy(),
                    n_steps=int(state.n_steps[b]),
                    max_force=float(grad.max_force[b]),
                    max_cell_force=float(grad.max_cell_force[b]),
                )
            )
        state, errors = relax_step(state, grad, fire)
        refused = ~done & (errors != "")
        for b in np.flatnonzero(refused):
            i = int(state.index[b])
            fail(i, str(errors[b]), evaluated[b], n_steps=int(state.n_steps[b]))
        state = state.take(~done & ~refused)
    return [r for r in results if r is not None]


def _drop_collapsed(state: RelaxState, fail: Callable[..., None]) -> RelaxState:
    """Fail and remove the structures whose cell has collapsed (or become NaN)."""
    volume = np.abs(np.linalg.det(state.cells())) / state.counts
    bad = ~(volume >= MIN_VOLUME_PER_ATOM)  # also catches NaN
    for b in np.flatnonzero(bad):
        fail(
            int(state.index[b]),
            f"cell collapsed ({volume[b]:.3g} A^3/atom)",
            n_steps=int(state.n_steps[b]),
        )
    return state.take(~bad) if bad.any() else state


def _evaluate(
    potential: Potential, batch: list[Atoms], relax_cell: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Energies (B,), forces (N, 3), stresses (B, 3, 3) and a (B,) array of problems ('' when
    fine); a structure with a problem has zero forces and stress so the step stays finite."""
    b = len(batch)
    counts = [len(a) for a in batch]
    bounds = np.concatenate([[0], np.cumsum(counts)]).astype(int)
    energies = np.full(b, np.nan)
    forces = np.zeros((int(bounds[-1]), 3))
    stresses = np.zeros((b, 3, 3))
    problems = np.full(b, "", dtype=object)
    for k, out in enumerate(evaluate_robustly(potential, batch)):
        problem = out.problem(counts[k], with_stress=relax_cell)
        energies[k] = out.energy
        if problem is not None:
            problems[k] = problem
            continue
        forces[bounds[k] : bounds[k + 1]] = out.forces
        stresses[k] = out.stress if relax_cell else 0.0  # NaN for a direct-force model
    return energies, forces, stresses, problems
