"""Batched FIRE on the degrees of freedom of ASE's ``FrechetCellFilter``: one state, pure steps.

All structures of a batch live in flat arrays with a structure index per atom (torch-sim's
layout): atoms can join (``fire_init`` + ``concat``) and leave (``take``) between steps, which is
how the relaxation driver keeps its batch full. Per structure the update is ASE's ``FIRE`` with
its defaults, applied to positions in the undeformed reference cell plus
``exp_cell_factor * log(F)`` for the deformation gradient ``F`` (cell = reference cell @ F^T),
so a structure follows the trajectory of ``FIRE(FrechetCellFilter(atoms))``. With a
``SymmetryOps`` per structure, forces, stresses and steps are symmetrised as ASE's
``FixSymmetry`` does.

Shapes: N atoms in all, B structures; positions (N, 3) A; cells (B, 3, 3) with lattice vectors
as rows, A; forces eV/A; stresses (B, 3, 3) eV/A^3, ASE sign.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields, replace

import numpy as np
from ase import Atoms
from scipy.linalg import logm

from esen_flows.dynamics.symmetry import SymmetryOps, symmetrize_tensor, symmetrize_vectors

#: ASE's FixSymmetry refuses cell steps with a deformation-gradient change beyond this.
MAX_SYMMETRIC_CELL_STEP = 0.25


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
class FireState:
    """FIRE + Frechet-filter state of B structures (N atoms in all).

    Per atom: ``numbers`` (N,), ``system`` (N,) structure index, ``x`` (N, 3) positions in the
    reference cell, ``v`` (N, 3) their FIRE velocities. Per structure: ``ref_cells`` (B, 3, 3),
    ``xc`` (B, 3, 3) cell DOFs (``exp_cell_factor * log F``), ``vc`` (B, 3, 3), ``dt``, ``a``,
    ``n_pos`` (steps since the last uphill move), ``n_steps``, ``fresh`` (no step taken yet),
    ``ecf`` (exp_cell_factor = atoms), ``relax_cell``, ``index`` (caller's id), ``symmetry``
    (a ``SymmetryOps`` or None) and ``f`` (B, 3, 3), the deformation gradient ``expm(xc/ecf)``
    kept in step with ``xc``.
    """

    numbers: np.ndarray
    system: np.ndarray
    x: np.ndarray
    v: np.ndarray
    ref_cells: np.ndarray
    xc: np.ndarray
    vc: np.ndarray
    dt: np.ndarray
    a: np.ndarray
    n_pos: np.ndarray
    n_steps: np.ndarray
    fresh: np.ndarray
    ecf: np.ndarray
    relax_cell: np.ndarray
    index: np.ndarray
    symmetry: tuple[SymmetryOps | None, ...]
    f: np.ndarray

    @property
    def n_structures(self) -> int:
        return len(self.index)

    @property
    def counts(self) -> np.ndarray:
        """(B,) atoms per structure."""
        return np.bincount(self.system, minlength=self.n_structures)

    def deformations(self) -> np.ndarray:
        """(B, 3, 3) deformation gradients F (identity where the cell is fixed)."""
        return self.f

    def cells(self) -> np.ndarray:
        """(B, 3, 3) current cells, rows are lattice vectors."""
        return self.ref_cells @ self.deformations().transpose(0, 2, 1)

    def positions(self) -> np.ndarray:
        """(N, 3) current Cartesian positions."""
        f = self.deformations()
        return np.einsum("nj,nkj->nk", self.x, f[self.system])

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


_PER_ATOM = ("numbers", "system", "x", "v")


def fire_init(
    structures: Sequence[Atoms],
    index: Sequence[int],
    relax_cell: bool | Sequence[bool] = True,
    symmetry: Sequence[SymmetryOps | None] | None = None,
    fire: FireSettings | None = None,
) -> FireState:
    """A state holding ``structures`` before their first step (zero velocities)."""
    fire = fire or FireSettings()
    n = len(structures)
    counts = np.array([len(a) for a in structures], dtype=int)
    relax = np.broadcast_to(np.asarray(relax_cell, dtype=bool), (n,)).copy()
    return FireState(
        numbers=np.concatenate([a.numbers for a in structures]) if n else np.zeros(0, int),
        system=np.repeat(np.arange(n), counts),
        x=np.concatenate([a.positions for a in structures]) if n else np.zeros((0, 3)),
        v=np.zeros((int(counts.sum()), 3)),
        ref_cells=np.array([a.cell.array for a in structures]).reshape(n, 3, 3),
        xc=np.zeros((n, 3, 3)),
        vc=np.zeros((n, 3, 3)),
        dt=np.full(n, fire.dt),
        a=np.full(n, fire.astart),
        n_pos=np.zeros(n, dtype=int),
        n_steps=np.zeros(n, dtype=int),
        fresh=np.ones(n, dtype=bool),
        ecf=counts.astype(float),
        relax_cell=relax,
        index=np.asarray(index, dtype=int).reshape(n),
        symmetry=tuple(symmetry) if symmetry is not None else (None,) * n,
        f=np.broadcast_to(np.eye(3), (n, 3, 3)).copy(),
    )


def concat(a: FireState, b: FireState) -> FireState:
    """One state holding the structures of ``a`` then those of ``b``."""
    if a.n_structures == 0:
        return b
    if b.n_structures == 0:
        return a
    out = {}
    for f in fields(FireState):
        va, vb = getattr(a, f.name), getattr(b, f.name)
        if f.name == "system":
            out[f.name] = np.concatenate([va, vb + a.n_structures])
        elif f.name == "symmetry":
            out[f.name] = va + vb
        else:
            out[f.name] = np.concatenate([va, vb])
    return FireState(**out)


def take(state: FireState, keep: np.ndarray) -> FireState:
    """The state of the structures where ``keep`` (B,) is True, renumbered."""
    keep = np.asarray(keep, dtype=bool)
    atom_keep = keep[state.system]
    renumber = np.cumsum(keep) - 1
    out = {}
    for f in fields(FireState):
        value = getattr(state, f.name)
        if f.name == "system":
            out[f.name] = renumber[value[atom_keep]]
        elif f.name == "symmetry":
            out[f.name] = tuple(s for s, k in zip(value, keep, strict=True) if k)
        elif f.name in _PER_ATOM:
            out[f.name] = value[atom_keep]
        else:
            out[f.name] = value[keep]
    return FireState(**out)


def _constrained(state: FireState) -> Iterator[tuple[int, SymmetryOps, np.ndarray]]:
    """(structure, its group, its atom mask) for every structure under the constraint."""
    for b, ops in enumerate(state.symmetry):
        if ops is not None:
            yield b, ops, state.system == b


def symmetrize_results(
    state: FireState, forces: np.ndarray, stresses: np.ndarray
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

    ``atoms`` (N, 3) eV/A in the reference frame and ``cell`` (B, 3, 3) eV; per structure (B,):
    ``max_force`` the largest Cartesian atomic force norm (eV/A), ``max_ref_force`` the largest
    reference-frame one and ``max_cell_force`` the largest cell-row norm (eV).
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


def frechet_gradient(state: FireState, forces: np.ndarray, stresses: np.ndarray) -> Gradient:
    """The filter's generalised forces for every structure (``FrechetCellFilter.get_forces``).

    The cell part is the derivative of the energy with respect to ``log F``: the Frechet
    derivative of the matrix exponential applied to the virial, computed for all structures
    with one batched 6x6 exponential each.
    """
    b = state.n_structures
    f = state.deformations()
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
        log_f = state.xc[relax] / state.ecf[relax, None, None]
        block = np.zeros((len(volume), 6, 6))
        block[:, :3, :3] = log_f.transpose(0, 2, 1)
        block[:, 3:, 3:] = log_f.transpose(0, 2, 1)
        block[:, :3, 3:] = ucf
        g_cell[relax] = expm_small(block)[:, :3, 3:] / state.ecf[relax, None, None]
    return Gradient(
        atoms=g_atoms,
        cell=g_cell,
        max_force=max_force,
        max_ref_force=ref_norm,
        max_cell_force=np.linalg.norm(g_cell, axis=2).max(axis=1, initial=0.0),
    )


def _per_structure(state: FireState, atom_part: np.ndarray, cell_part: np.ndarray) -> np.ndarray:
    """Per-structure sums of a per-atom (N,) and a per-structure (B, 3, 3) contribution."""
    return np.bincount(state.system, atom_part, minlength=state.n_structures) + cell_part.sum(
        axis=(1, 2)
    )


def fire_step(
    state: FireState, grad: Gradient, fire: FireSettings | None = None
) -> tuple[FireState, np.ndarray]:
    """One FIRE update of every structure along ``grad`` (ASE's rule, per structure).

    Returns the new state and a (B,) array of error messages ('' where the step was fine; a
    symmetrised cell step too large for the constraint is refused, as ASE refuses it).
    """
    fire = fire or FireSettings()
    sys = state.system
    g, gc = grad.atoms, grad.cell
    v, vc = state.v.copy(), state.vc.copy()
    dt, a, n_pos = state.dt.copy(), state.a.copy(), state.n_pos.copy()

    vf = _per_structure(state, (g * v).sum(axis=1), gc * vc)
    gg = _per_structure(state, (g * g).sum(axis=1), gc * gc)
    vv = _per_structure(state, (v * v).sum(axis=1), vc * vc)
    mix = ~state.fresh & (vf > 0.0)
    reset = ~state.fresh & ~(vf > 0.0)
    # downhill: turn the velocity towards the force and speed up after n_min good steps
    scale = np.where(mix, np.sqrt(vv) / np.sqrt(np.where(mix, gg, 1.0)), 0.0)
    keep = np.where(mix, 1.0 - a, 1.0)
    mixed_a = np.where(mix, a, 0.0)
    v = keep[sys, None] * v + (mixed_a * scale)[sys, None] * g
    vc = keep[:, None, None] * vc + (mixed_a * scale)[:, None, None] * gc
    accelerate = mix & (n_pos > fire.n_min)
    dt = np.where(accelerate, np.minimum(dt * fire.finc, fire.dtmax), dt)
    a = np.where(accelerate, a * fire.fa, a)
    n_pos = np.where(mix, n_pos + 1, n_pos)
    # uphill: stop, restart slower
    v[reset[sys]] = 0.0
    vc[reset] = 0.0
    a = np.where(reset, fire.astart, a)
    dt = np.where(reset, dt * fire.fdec, dt)
    n_pos = np.where(reset, 0, n_pos)

    v = v + dt[sys, None] * g
    vc = vc + dt[:, None, None] * gc
    dr, drc = dt[sys, None] * v, dt[:, None, None] * vc
    norm = np.sqrt(_per_structure(state, (dr * dr).sum(axis=1), drc * drc))
    shrink = np.where(norm > fire.maxstep, fire.maxstep / np.where(norm > 0, norm, 1.0), 1.0)
    xc = state.xc + shrink[:, None, None] * drc * state.relax_cell[:, None, None]
    new = replace(
        state,
        x=state.x + shrink[sys, None] * dr,
        xc=xc,
        f=expm_small(xc / state.ecf[:, None, None]),
        v=v,
        vc=vc,
        dt=dt,
        a=a,
        n_pos=n_pos,
        n_steps=state.n_steps + 1,
        fresh=np.zeros_like(state.fresh),
    )
    return _constrain(state, new)


def _constrain(old: FireState, new: FireState) -> tuple[FireState, np.ndarray]:
    """Symmetrise the step of every structure with a group (``FixSymmetry.adjust_cell`` then
    ``adjust_positions``, as the Frechet filter applies them) and re-derive its DOFs."""
    errors = np.full(new.n_structures, "", dtype=object)
    constrained = list(_constrained(new))
    if not constrained:
        return new, errors
    x, xc = new.x.copy(), new.xc.copy()
    old_cells, old_pos = old.cells(), old.positions()
    f_new = new.deformations()
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
        proposed = new.x[sel] @ f_new[b].T
        pos = scaled + symmetrize_vectors(cell, proposed - scaled, ops)
        f = np.linalg.solve(new.ref_cells[b], cell).T
        x[sel] = np.linalg.solve(f, pos.T).T
        if new.relax_cell[b]:
            xc[b] = np.real(logm(f)) * new.ecf[b]
    return replace(new, x=x, xc=xc, f=expm_small(xc / new.ecf[:, None, None])), errors
