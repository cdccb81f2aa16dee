"""The Frechet cell filter of many structures at once, and its relaxation step with FIRE.

ASE's ``FrechetCellFilter`` turns a structure's atoms and cell into one set of generalised
coordinates: the atoms' positions in the undeformed reference cell, and
``exp_cell_factor * log(F)`` for the deformation gradient ``F`` (cell = reference cell @ F^T),
with the matching generalised forces. Here all structures of a batch live in one
``RelaxState`` (``dynamics.state``: per-atom fields with a ``system`` index, torch-sim's
layout), the filter maps them to rows of coordinates and forces, and ``dynamics.fire`` moves
the rows (ASE's ``FIRE.step``), so a structure follows the trajectory of
``FIRE(FrechetCellFilter(atoms))``. With a ``SymmetryOps`` per structure, forces, stresses and
steps are symmetrised as ASE's ``FixSymmetry`` does.

Shapes: N atoms in all, B structures; positions (N, 3) A; cells (B, 3, 3) with lattice vectors
as rows, A; forces eV/A; stresses (B, 3, 3) eV/A^3, ASE sign.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
from ase import Atoms
from scipy.linalg import logm

from esen_flows.dynamics.fire import FireSettings, fire_update
from esen_flows.dynamics.state import SystemState
from esen_flows.dynamics.symmetry import SymmetryOps, symmetrize_tensor, symmetrize_vectors

#: ASE's FixSymmetry refuses cell steps with a deformation-gradient change beyond this.
MAX_SYMMETRIC_CELL_STEP = 0.25


def expm_small(a: np.ndarray) -> np.ndarray:
    """Matrix exponential of a stack of small matrices (..., n, n): scaling and squaring with
    a degree-18 Taylor polynomial (error below 1e-16 after scaling to 1-norm <= 1/4).

    ``scipy.linalg.expm`` gives the same to rounding but costs milliseconds per call on a
    batch of 3x3 matrices (and more with multi-threaded BLAS on a busy machine); this costs
    microseconds, and the relaxation needs it every step.
    """
    a = np.asarray(a, dtype=float)
    if a.size == 0:
        return a.copy()
    norm = np.abs(a).sum(axis=-2).max(axis=-1)
    squarings = np.ceil(np.log2(np.maximum(norm, 1e-300) / 0.25)).clip(min=0).astype(int)
    a = a / (2.0**squarings)[..., None, None]
    eye = np.broadcast_to(np.eye(a.shape[-1]), a.shape)
    out = eye.copy()
    for k in range(18, 0, -1):
        out = eye + (a @ out) / k
    for _ in range(int(squarings.max(initial=0))):
        more = squarings > 0
        out[more] = out[more] @ out[more]
        squarings = squarings - 1
    return out


@dataclass(frozen=True)
class RelaxState(SystemState):
    """The Frechet filter's coordinates and FIRE's variables of B structures (N atoms in all).

    Attributes
    ----------
    numbers, system
        (N,) atomic numbers and structure index (``SystemState``).
    ref_positions
        (N, 3) positions in the reference (undeformed) cell, A.
    velocities
        (N, 3) FIRE velocities of those coordinates.
    ref_cells
        (B, 3, 3) reference cells, rows are lattice vectors, A.
    cell_dofs
        (B, 3, 3) the cell's coordinates, ``cell_factor * log F``.
    cell_velocities
        (B, 3, 3) their FIRE velocities.
    dt, alpha, n_pos
        (B,) FIRE's time step, mixing parameter and downhill steps since the last uphill one.
    n_steps
        (B,) steps taken.
    fresh
        (B,) no step taken yet.
    cell_factor
        (B,) ASE's ``exp_cell_factor`` (the number of atoms).
    relax_cell
        (B,) whether the cell moves.
    index
        (B,) the caller's id of each structure.
    symmetry
        B-tuple of ``SymmetryOps`` (space group kept) or None.
    deformation
        (B, 3, 3) the deformation gradient ``F = expm(cell_dofs / cell_factor)``, kept in step
        with ``cell_dofs``.
    """

    ref_positions: np.ndarray
    velocities: np.ndarray
    ref_cells: np.ndarray
    cell_dofs: np.ndarray
    cell_velocities: np.ndarray
    dt: np.ndarray
    alpha: np.ndarray
    n_pos: np.ndarray
    n_steps: np.ndarray
    fresh: np.ndarray
    cell_factor: np.ndarray
    relax_cell: np.ndarray
    index: np.ndarray
    symmetry: tuple[SymmetryOps | None, ...]
    deformation: np.ndarray

    PER_ATOM: ClassVar[tuple[str, ...]] = ("numbers", "system", "ref_positions", "velocities")
    COUNTED_BY: ClassVar[str | None] = "index"

    def cells(self) -> np.ndarray:
        """(B, 3, 3) current cells, rows are lattice vectors."""
        return self.ref_cells @ self.deformation.transpose(0, 2, 1)

    def positions(self) -> np.ndarray:
        """(N, 3) current Cartesian positions."""
        return np.einsum("nj,nkj->nk", self.ref_positions, self.deformation[self.system])

    def atoms(self) -> list[Atoms]:
        """The structures as ASE ``Atoms`` (periodic), in batch order."""
        cells, pos = self.cells(), self.positions()
        bounds = np.concatenate([[0], np.cumsum(self.counts)])
        return [
            Atoms(
                self.numbers[bounds[b] : bounds[b + 1]],
                pos[bounds[b] : bounds[b + 1]],
                cell=cells[b],
                pbc=True,
            )
            for b in range(self.n_structures)
        ]


def relax_init(
    structures: Sequence[Atoms],
    index: Sequence[int],
    relax_cell: bool | Sequence[bool] = True,
    symmetry: Sequence[SymmetryOps | None] | None = None,
    fire: FireSettings | None = None,
) -> RelaxState:
    """A state holding ``structures`` before their first step (zero velocities)."""
    fire = fire or FireSettings()
    n = len(structures)
    counts = np.array([len(a) for a in structures], dtype=int)
    relax = np.broadcast_to(np.asarray(relax_cell, dtype=bool), (n,)).copy()
    return RelaxState(
        numbers=np.concatenate([a.numbers for a in structures]) if n else np.zeros(0, int),
        system=np.repeat(np.arange(n), counts),
        ref_positions=np.concatenate([a.positions for a in structures]) if n else np.zeros((0, 3)),
        velocities=np.zeros((int(counts.sum()), 3)),
        ref_cells=np.array([a.cell.array for a in structures]).reshape(n, 3, 3),
        cell_dofs=np.zeros((n, 3, 3)),
        cell_velocities=np.zeros((n, 3, 3)),
        dt=np.full(n, fire.dt),
        alpha=np.full(n, fire.astart),
        n_pos=np.zeros(n, dtype=int),
        n_steps=np.zeros(n, dtype=int),
        fresh=np.ones(n, dtype=bool),
        cell_factor=counts.astype(float),
        relax_cell=relax,
        index=np.asarray(index, dtype=int).reshape(n),
        symmetry=tuple(symmetry) if symmetry is not None else (None,) * n,
        deformation=np.broadcast_to(np.eye(3), (n, 3, 3)).copy(),
    )


def _constrained(state: RelaxState) -> Iterator[tuple[int, SymmetryOps, np.ndarray]]:
    """(structure, its group, its atom mask) for every structure under the constraint."""
    for b, ops in enumerate(state.symmetry):
        if ops is not None:
            yield b, ops, state.system == b


def symmetrize_results(
    state: RelaxState, forces: np.ndarray, stresses: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Forces (N, 3) and stresses (B, 3, 3) averaged over each structure's group (where it has
    one), as ``FixSymmetry.adjust_forces``/``adjust_stress`` do."""
    constrained = list(_constrained(state))
    if not constrained:
        return forces, stresses
    forces, stresses = forces.copy(), stresses.copy()
    cells = state.cells()
    for b, ops, sel in constrained:
        forces[sel] = symmetrize_vectors(cells[b], forces[sel], ops)
        stresses[b] = symmetrize_tensor(cells[b], stresses[b], ops)
    return forces, stresses


@dataclass(frozen=True)
class Gradient:
    """Negative energy gradient in the filter's DOFs.

    Attributes
    ----------
    atoms
        (N, 3) forces on the reference-cell positions (``forces @ F``), eV/A.
    cell
        (B, 3, 3) generalised forces on ``cell_dofs``, eV; zero where the cell does not move.
    max_force
        (B,) the largest Cartesian atomic force norm, eV/A.
    max_ref_force
        (B,) the largest row norm of ``atoms``, eV/A.
    max_cell_force
        (B,) the largest row norm of ``cell``, eV.
    """

    atoms: np.ndarray
    cell: np.ndarray
    max_force: np.ndarray
    max_ref_force: np.ndarray
    max_cell_force: np.ndarray

    @property
    def fmax(self) -> np.ndarray:
        """(B,) ASE's convergence measure: the largest row norm of the filter's forces."""
        return np.maximum(self.max_ref_force, self.max_cell_force)


def frechet_gradient(state: RelaxState, forces: np.ndarray, stresses: np.ndarray) -> Gradient:
    """The filter's generalised forces for every structure (``FrechetCellFilter.get_forces``).

    The cell part is the derivative of the energy with respect to ``log F``: the Frechet
    derivative of the matrix exponential applied to the virial, computed for all structures
    with one batched 6x6 exponential each.
    """
    b = state.n_structures
    f = state.deformation
    g_atoms = np.einsum("nj,njk->nk", forces, f[state.system])
    ref_norm = np.zeros(b)
    np.maximum.at(ref_norm, state.system, np.linalg.norm(g_atoms, axis=1))
    max_force = np.zeros(b)
    np.maximum.at(max_force, state.system, np.linalg.norm(forces, axis=1))
    g_cell = np.zeros((b, 3, 3))
    relax = state.relax_cell
    if relax.any():
        cells = state.ref_cells[relax] @ f[relax].transpose(0, 2, 1)
        volume = np.abs(np.linalg.det(cells))
        virial = -volume[:, None, None] * stresses[relax]
        ucf = virial @ np.linalg.inv(f[relax].transpose(0, 2, 1))
        log_f = state.cell_dofs[relax] / state.cell_factor[relax, None, None]
        block = np.zeros((len(volume), 6, 6))
        block[:, :3, :3] = log_f.transpose(0, 2, 1)
        block[:, 3:, 3:] = log_f.transpose(0, 2, 1)
        block[:, :3, 3:] = ucf
        g_cell[relax] = expm_small(block)[:, :3, 3:] / state.cell_factor[relax, None, None]
    return Gradient(
        atoms=g_atoms,
        cell=g_cell,
        max_force=max_force,
        max_ref_force=ref_norm,
        max_cell_force=np.linalg.norm(g_cell, axis=2).max(axis=1, initial=0.0),
    )


def relax_step(
    state: RelaxState, grad: Gradient, fire: FireSettings | None = None
) -> tuple[RelaxState, np.ndarray]:
    """One FIRE step of every structure along the filter's forces ``grad``.

    The filter's rows (atoms, then three cell rows per structure) go to ``fire_update``; its
    step comes back into the coordinates, then the symmetry constraint. Returns the new state
    and a (B,) array of error messages ('' where the step was fine; a symmetrised cell step
    too large for the constraint is refused, as ASE refuses it).
    """
    b, n = state.n_structures, len(state.system)
    owner = np.concatenate([state.system, np.repeat(np.arange(b), 3)])
    velocities = np.concatenate([state.velocities, state.cell_velocities.reshape(-1, 3)])
    forces = np.concatenate([grad.atoms, grad.cell.reshape(-1, 3)])
    out = fire_update(
        velocities, forces, owner, state.dt, state.alpha, state.n_pos, state.fresh, fire
    )
    cell_step = out.step[n:].reshape(b, 3, 3) * state.relax_cell[:, None, None]
    cell_dofs = state.cell_dofs + cell_step
    new = replace(
        state,
        ref_positions=state.ref_positions + out.step[:n],
        cell_dofs=cell_dofs,
        deformation=expm_small(cell_dofs / state.cell_factor[:, None, None]),
        velocities=out.velocities[:n],
        cell_velocities=out.velocities[n:].reshape(b, 3, 3),
        dt=out.dt,
        alpha=out.alpha,
        n_pos=out.n_pos,
        n_steps=state.n_steps + 1,
        fresh=np.zeros_like(state.fresh),
    )
    return _constrain(state, new)


def _constrain(old: RelaxState, new: RelaxState) -> tuple[RelaxState, np.ndarray]:
    """Symmetrise the step of every structure with a group (``FixSymmetry.adjust_cell`` then
    ``adjust_positions``, as the Frechet filter applies them) and re-derive its DOFs."""
    errors = np.full(new.n_structures, "", dtype=object)
    constrained = list(_constrained(new))
    if not constrained:
        return new, errors
    x, xc = new.ref_positions.copy(), new.cell_dofs.copy()
    old_cells, old_pos = old.cells(), old.positions()
    f_new = new.deformation
    for b, ops, sel in constrained:
        cur = old_cells[b]
        cell = new.ref_cells[b] @ f_new[b].T
        if new.relax_cell[b]:
            delta = (np.linalg.inv(cur) @ cell).T - np.eye(3)
            if np.abs(delta).max() > MAX_SYMMETRIC_CELL_STEP:
                errors[b] = (
                    f"cell step too large for the symmetry constraint "
                    f"(deformation change {np.abs(delta).max():.3g} > {MAX_SYMMETRIC_CELL_STEP})"
                )
                continue
            cell = cur @ (symmetrize_tensor(cur, delta, ops) + np.eye(3)).T
        else:
            cell = cur
        scaled = old_pos[sel] @ np.linalg.inv(cur) @ cell  # set_cell(scale_atoms=True)
        proposed = new.ref_positions[sel] @ f_new[b].T
        pos = scaled + symmetrize_vectors(cell, proposed - scaled, ops)
        f = np.linalg.solve(new.ref_cells[b], cell).T
        x[sel] = np.linalg.solve(f, pos.T).T
        if new.relax_cell[b]:
            xc[b] = np.real(logm(f)) * new.cell_factor[b]
    deformation = expm_small(xc / new.cell_factor[:, None, None])
    return replace(new, ref_positions=x, cell_dofs=xc, deformation=deformation), errors
