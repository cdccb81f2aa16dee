"""FIRE (Bitzek et al. 2006) as ASE's ``FIRE.step`` does it, on many structures at once.

The optimiser knows nothing of atoms or cells: it moves rows of generalised coordinates, each
row owned by one structure, along the generalised forces it is given; per structure it keeps a
time step, a mixing parameter and a count of downhill steps. What the rows are is the filter's
business (``esen_flows.dynamics.frechet``: atoms in the reference cell, and the cell's
``log F``), as ASE separates ``Optimizable`` from ``FIRE.step``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FireSettings:
    """FIRE parameters; the defaults are ASE's (``ase.optimize.FIRE``).

    Attributes
    ----------
    dt, dtmax
        Initial and largest time step (ASE units).
    maxstep
        Largest step of one structure (norm over all its rows), A.
    n_min
        Downhill steps before the time step grows.
    finc, fdec
        Growth and shrink factors of the time step.
    astart, fa
        Initial mixing parameter and its decay factor.
    """

    dt: float = 0.1
    maxstep: float = 0.2
    dtmax: float = 1.0
    n_min: int = 5
    finc: float = 1.1
    fdec: float = 0.5
    astart: float = 0.1
    fa: float = 0.99


@dataclass(frozen=True)
class FireStep:
    """What one FIRE update gives.

    Attributes
    ----------
    step
        (R, 3) to add to the coordinates (the rows' own units: A for atoms), scaled down so that
        each structure's step, the norm over all its rows, is at most ``maxstep``.
    velocities
        (R, 3) the new FIRE velocities of the rows (ASE units).
    dt, alpha, n_pos
        (B,) per structure: the new time step (ASE units), mixing parameter, and downhill steps
        since the last uphill one.
    """

    step: np.ndarray
    velocities: np.ndarray
    dt: np.ndarray
    alpha: np.ndarray
    n_pos: np.ndarray


def fire_update(
    velocities: np.ndarray,
    forces: np.ndarray,
    owner: np.ndarray,
    dt: np.ndarray,
    alpha: np.ndarray,
    n_pos: np.ndarray,
    fresh: np.ndarray,
    fire: FireSettings | None = None,
) -> FireStep:
    """One FIRE update of every structure (ASE's rule, applied per structure).

    Parameters
    ----------
    velocities, forces
        (R, 3) per row of generalised coordinates.
    owner
        (R,) the structure of each row.
    dt, alpha, n_pos
        (B,) time step, mixing parameter, downhill steps so far.
    fresh
        (B,) True before a structure's first step (no velocity to mix yet).
    fire
        Parameters (ASE's defaults).
    """
    fire = fire or FireSettings()
    b = len(dt)
    g, v = forces, velocities.copy()
    dt, a, n_pos = dt.copy(), alpha.copy(), n_pos.copy()

    def per_structure(rows: np.ndarray) -> np.ndarray:
        return np.bincount(owner, rows, minlength=b)

    vf = per_structure((g * v).sum(axis=1))
    gg = per_structure((g * g).sum(axis=1))
    vv = per_structure((v * v).sum(axis=1))
    mix = ~fresh & (vf > 0.0)
    reset = ~fresh & ~(vf > 0.0)
    # downhill: turn the velocity towards the force and speed up after n_min good steps
    scale = np.where(mix, np.sqrt(vv) / np.sqrt(np.where(mix, gg, 1.0)), 0.0)
    keep = np.where(mix, 1.0 - a, 1.0)
    mixed_a = np.where(mix, a, 0.0)
    v = keep[owner, None] * v + (mixed_a * scale)[owner, None] * g
    accelerate = mix & (n_pos > fire.n_min)
    dt = np.where(accelerate, np.minimum(dt * fire.finc, fire.dtmax), dt)
    a = np.where(accelerate, a * fire.fa, a)
    n_pos = np.where(mix, n_pos + 1, n_pos)
    # uphill: stop, restart slower
    v[reset[owner]] = 0.0
    a = np.where(reset, fire.astart, a)
    dt = np.where(reset, dt * fire.fdec, dt)
    n_pos = np.where(reset, 0, n_pos)

    v = v + dt[owner, None] * g
    dr = dt[owner, None] * v
    norm = np.sqrt(per_structure((dr * dr).sum(axis=1)))
    shrink = np.where(norm > fire.maxstep, fire.maxstep / np.where(norm > 0, norm, 1.0), 1.0)
    return FireStep(shrink[owner, None] * dr, v, dt, a, n_pos)
