"""Workloads and timing shared by the model-speed benchmark and its fairchem driver.

Only numpy, ASE and torch are imported, so the fairchem driver can use it from its own venv.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np
from ase import Atoms
from ase.build import bulk

#: name -> (atoms per structure, structures)
WORKLOADS = {"256x1": (256, 1), "32x32": (32, 32), "8x64": (8, 64)}

#: the two configurations of the issue, in the fields both implementations understand
CONFIGS = {
    "small": dict(lmax=2, mmax=2, channels=64, num_layers=2, cutoff=5.0, num_rbf=64),
    "30m": dict(lmax=3, mmax=2, channels=128, num_layers=10, cutoff=6.0, num_rbf=64),
}


def cu_cells(n_atoms: int, n_struct: int, seed: int = 1) -> list[Atoms]:
    """Rattled fcc Cu supercells (a = 3.61 A) of 8, 32 or 256 atoms."""
    reps = {8: (2, 1, 1), 32: (2, 2, 2), 256: (4, 4, 4)}[n_atoms]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_struct):
        a = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(reps)
        a.rattle(0.05, seed=int(rng.integers(1 << 30)))
        out.append(a)
    return out


def atoms_per_second(run: Callable[[list[Atoms]], object], atoms: list[Atoms], reps: int) -> float:
    """Median throughput of ``run(atoms)`` over ``reps`` calls after one warm-up call."""
    run(atoms)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        run(atoms)
        times.append(time.perf_counter() - t0)
    return sum(len(a) for a in atoms) / statistics.median(times)
