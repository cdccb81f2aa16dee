"""FIRE with a Frechet cell filter over a batch of structures.

The degrees of freedom are those of ASE's ``FrechetCellFilter``: atomic positions in the
undeformed reference cell, plus ``exp_cell_factor * log(F)`` for the deformation gradient ``F``
(cell = reference cell @ F^T). The FIRE update is ASE's (same defaults), applied per structure,
so a relaxation here follows the trajectory ASE's ``FIRE(FrechetCellFilter(atoms))`` follows.

Every step evaluates all structures still relaxing with ONE ``potential.evaluate`` call, which a
batched potential runs as one batch. A structure leaves the batch when it converges, reaches the
step limit or fails; ``on_result`` is called at that moment so a caller can persist it at once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from ase import Atoms
from pymatgen.core import Structure
from scipy.linalg import expm

from esen_flows.io import get_label, to_atoms
from esen_flows.potentials import Evaluation, Potential

RelaxStatus = Literal["converged", "max_steps", "failed"]

#: Energies per atom beyond this magnitude (eV/atom) mean the relaxation blew up.
EXPLODED_EV_PER_ATOM = 1.0e3
#: A cell below this volume per atom (A^3) has collapsed; it is not evaluated.
MIN_VOLUME_PER_ATOM = 1.0


@dataclass(frozen=True)
class FireSettings:
    """FIRE parameters; the defaults are ASE's (``ase.optimize.FIRE``)."""

    dt: float = 0.1
    maxstep: float = 0.2
    dtmax: float = 1.0
    n_min: int = 5
    finc: float = 1.1
    fdec: float = 0.5
    astart: float = 0.1
    fa: float = 0.99


@dataclass
class RelaxResult:
    """Outcome of one structure's relaxation.

    Attributes
    ----------
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


@dataclass
class _State:
    """Per-structure FIRE + Frechet-filter state."""

    index: int
    atoms: Atoms
    ref_cell: np.ndarray  # (3, 3) rows are lattice vectors of the undeformed cell
    x: np.ndarray  # (n + 3, 3): reference-frame positions and scaled log-deformation
    exp_cell_factor: float
    relax_cell: bool
    v: np.ndarray | None = None
    dt: float = 0.1
    a: float = 0.1
    n_pos: int = 0  # FIRE's count of steps since the last uphill move
    n_steps: int = 0
    started: float = field(default_factory=time.perf_counter)

    @property
    def n_atoms(self) -> int:
        return len(self.atoms)

    def deformation(self) -> np.ndarray:
        return expm(self.x[self.n_atoms :] / self.exp_cell_factor)

    def apply(self) -> None:
        """Write the DOF vector back into ``atoms`` (cell and Cartesian positions)."""
        f = self.deformation() if self.relax_cell else np.eye(3)
        self.atoms.set_cell(self.ref_cell @ f.T, scale_atoms=False)
        self.atoms.positions = self.x[: self.n_atoms] @ f.T


def frechet_gradient(
    state: _State, forces: np.ndarray, stress: np.ndarray
) -> tuple[np.ndarray, float, float]:
    """Negative gradient of the energy in the filter's DOFs, as ASE's FrechetCellFilter.

    Returns
    -------
    g
        (n + 3, 3): atomic forces in the reference frame, then the cell rows.
    max_force, max_cell_force
        Largest atomic force norm (eV/A) and largest cell-row norm (eV).
    """
    n = state.n_atoms
    g = np.zeros((n + 3, 3))
    if not state.relax_cell:
        g[:n] = forces
        norms = np.linalg.norm(forces, axis=1)
        return g, float(norms.max(initial=0.0)), 0.0
    f = state.deformation()
    volume = abs(np.linalg.det(state.atoms.cell.array))
    virial = -volume * stress
    log_f = state.x[n:] / state.exp_cell_factor
    ucf_grad = virial @ np.linalg.inv(f.T)
    # The gradient of <expm(X), G> with respect to X is the Frechet derivative of expm at X^T
    # applied to G: one 6x6 exponential instead of nine directional derivatives.
    block = np.zeros((6, 6))
    block[:3, :3] = log_f.T
    block[3:, 3:] = log_f.T
    block[:3, 3:] = ucf_grad
    cell_grad = expm(block)[:3, 3:]
    g[:n] = forces @ f
    g[n:] = cell_grad / state.exp_cell_factor
    max_force = float(np.linalg.norm(forces, axis=1).max(initial=0.0))
    max_cell = float(np.linalg.norm(g[n:], axis=1).max())
    return g, max_force, max_cell


def fire_step(state: _State, g: np.ndarray, fire: FireSettings) -> None:
    """One FIRE update of ``state.x`` along the negative gradient ``g`` (ASE's rule)."""
    if state.v is None:
        state.v = np.zeros_like(state.x)
    else:
        vf = float(np.vdot(g, state.v))
        if vf > 0.0:
            gnorm = math.sqrt(float(np.vdot(g, g)))
            vnorm = math.sqrt(float(np.vdot(state.v, state.v)))
            state.v = (1.0 - state.a) * state.v + state.a * g / gnorm * vnorm
            if state.n_pos > fire.n_min:
                state.dt = min(state.dt * fire.finc, fire.dtmax)
                state.a *= fire.fa
            state.n_pos += 1
        else:
            state.v[:] = 0.0
            state.a = fire.astart
            state.dt *= fire.fdec
            state.n_pos = 0
    state.v += state.dt * g
    dr = state.dt * state.v
    norm = math.sqrt(float(np.vdot(dr, dr)))
    if norm > fire.maxstep:
        dr *= fire.maxstep / norm
    state.x = state.x + dr
    state.apply()


def _init_state(index: int, atoms: Atoms, relax_cell: bool, fire: FireSettings) -> _State:
    atoms = atoms.copy()
    atoms.calc = None
    n = len(atoms)
    x = np.zeros((n + 3, 3))
    x[:n] = atoms.positions
    return _State(
        index=index,
        atoms=atoms,
        ref_cell=atoms.cell.array.copy(),
        x=x,
        exp_cell_factor=float(n),
        relax_cell=relax_cell,
        dt=fire.dt,
        a=fire.astart,
    )


def evaluate_robustly(
    potential: Potential, atoms_list: Sequence[Atoms]
) -> list[tuple[float, np.ndarray, np.ndarray] | str]:
    """Evaluate a batch; if the batch call raises, find the culprits one by one.

    Returns, per structure, ``(energy, forces, stress)`` or the error message: one bad
    structure never sinks the others.
    """
    try:
        ev = potential.evaluate(list(atoms_list))
        return _unpack(ev)
    except Exception as exc:
        if len(atoms_list) == 1:
            return [f"{type(exc).__name__}: {exc}"]
    out: list[tuple[float, np.ndarray, np.ndarray] | str] = []
    for atoms in atoms_list:
        try:
            out.extend(_unpack(potential.evaluate([atoms])))
        except Exception as exc:
            out.append(f"{type(exc).__name__}: {exc}")
    return out


def _unpack(ev: Evaluation) -> list[tuple[float, np.ndarray, np.ndarray] | str]:
    return [
        (float(ev.energies[i]), np.asarray(ev.forces[i]), np.asarray(ev.stresses[i]))
        for i in range(len(ev))
    ]


def health_problem(energy: float, forces: np.ndarray, stress: np.ndarray, n: int) -> str | None:
    if not (math.isfinite(energy) and np.all(np.isfinite(forces)) and np.all(np.isfinite(stress))):
        return "non-finite energy, forces or stress (NaN or inf)"
    if abs(energy) / n > EXPLODED_EV_PER_ATOM:
        return f"energy exploded ({energy / n:.3g} eV/atom)"
    return None


def relax_structures(
    potential: Potential,
    structures: Sequence[Structure | Atoms],
    *,
    fmax: float = 0.05,
    max_steps: int = 500,
    relax_cell: bool = True,
    fire: FireSettings | None = None,
    on_result: Callable[[RelaxResult], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[RelaxResult]:
    """Relax a batch of structures with FIRE (+ Frechet cell filter when ``relax_cell``).

    Parameters
    ----------
    potential
        Any ``Potential``; all structures still relaxing are evaluated in one call per step.
    structures
        Structures or ``Atoms`` of any sizes.
    fmax
        Convergence threshold (eV/A): every atomic force norm AND every row of the cell
        gradient (eV, i.e. stress x volume / n_atoms as ASE's filter scales it) below it.
    max_steps
        Step limit per structure; a structure that reaches it ends as ``"max_steps"``.
    relax_cell
        Relax the cell too (Frechet cell filter); positions only when False.
    on_result
        Called with each ``RelaxResult`` as soon as its structure leaves the batch.
    progress
        Called with the number of structures that just finished.

    Returns
    -------
    list of RelaxResult
        In input order.
    """
    fire = fire or FireSettings()
    results: list[RelaxResult | None] = [None] * len(structures)
    active = [
        _init_state(i, s if isinstance(s, Atoms) else to_atoms(s), relax_cell, fire)
        for i, s in enumerate(structures)
    ]

    def finish(state: _State, result: RelaxResult) -> None:
        result.wall_time = time.perf_counter() - state.started
        results[state.index] = result
        if on_result is not None:
            on_result(result)
        if progress is not None:
            progress(1)

    while active:
        alive = []
        for state in active:
            volume = abs(np.linalg.det(state.atoms.cell.array))
            if not volume / state.n_atoms >= MIN_VOLUME_PER_ATOM:  # also catches NaN
                label = get_label(state.atoms) or f"structure {state.index}"
                reason = f"{label}: cell collapsed ({volume / state.n_atoms:.3g} A^3/atom)"
                finish(
                    state,
                    RelaxResult(
                        state.index, "failed", state.atoms, n_steps=state.n_steps, reason=reason
                    ),
                )
            else:
                alive.append(state)
        active = alive
        if not active:
            break
        outputs = evaluate_robustly(potential, [s.atoms for s in active])
        still: list[_State] = []
        for state, out in zip(active, outputs, strict=True):
            label = get_label(state.atoms) or f"structure {state.index}"
            if isinstance(out, str):
                finish(
                    state,
                    RelaxResult(
                        state.index,
                        "failed",
                        state.atoms,
                        n_steps=state.n_steps,
                        reason=f"{label}: evaluation failed ({out})",
                    ),
                )
                continue
            energy, forces, stress = out
            problem = health_problem(energy, forces, stress, state.n_atoms)
            if problem is not None:
                finish(
                    state,
                    RelaxResult(
                        state.index,
                        "failed",
                        state.atoms,
                        energy=energy,
                        n_steps=state.n_steps,
                        reason=f"{label}: {problem}",
                    ),
                )
                continue
            g, max_force, max_cell = frechet_gradient(state, forces, stress)
            converged = float(np.linalg.norm(g, axis=1).max()) < fmax
            if converged or state.n_steps >= max_steps:
                finish(
                    state,
                    RelaxResult(
                        state.index,
                        "converged" if converged else "max_steps",
                        state.atoms,
                        energy=energy,
                        forces=forces,
                        stress=stress,
                        n_steps=state.n_steps,
                        max_force=max_force,
                        max_cell_force=max_cell,
                    ),
                )
                continue
            fire_step(state, g, fire)
            state.n_steps += 1
            still.append(state)
        active = still
    return [r for r in results if r is not None]
