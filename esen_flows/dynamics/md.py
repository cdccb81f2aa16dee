"""Batched NVE molecular dynamics (velocity Verlet) over any ``Potential``.

One state holds all structures as flat arrays with a structure index per atom (torch-sim's
layout); ``nve_init`` and ``nve_step`` are the pure functions, ``run_nve`` drives them and
records energies. Every step is one ``potential.evaluate`` call for the whole batch. Units: ASE's
(eV, A, amu, time in A sqrt(amu/eV)); times in reports are ps, energies eV/atom.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
from ase import Atoms, units

from esen_flows.dynamics.state import SystemState
from esen_flows.dynamics.threads import single_threaded_blas
from esen_flows.io import get_label
from esen_flows.potentials import Potential


@dataclass(frozen=True)
class MDState(SystemState):
    """Molecular-dynamics state of B structures (N atoms in all).

    Attributes
    ----------
    numbers, system
        (N,) atomic numbers and structure index (``SystemState``).
    positions
        (N, 3) A.
    velocities
        (N, 3) A per ASE time unit.
    masses
        (N,) amu.
    forces
        (N, 3) eV/A.
    cells
        (B, 3, 3) lattice vectors as rows, A.
    energies
        (B,) potential energies, eV.
    labels
        B-tuple of structure labels.
    """

    positions: np.ndarray
    velocities: np.ndarray
    masses: np.ndarray
    forces: np.ndarray
    cells: np.ndarray
    energies: np.ndarray
    labels: tuple[str, ...]

    PER_ATOM: ClassVar[tuple[str, ...]] = (
        "numbers",
        "system",
        "positions",
        "velocities",
        "masses",
        "forces",
    )
    COUNTED_BY: ClassVar[str | None] = "cells"

    def atoms(self) -> list[Atoms]:
        """The structures as ASE ``Atoms`` (positions as they are now)."""
        out = []
        for b, label in enumerate(self.labels):
            sel = self.system == b
            a = Atoms(self.numbers[sel], self.positions[sel], cell=self.cells[b], pbc=True)
            a.info["label"] = label
            out.append(a)
        return out

    def kinetic_energies(self) -> np.ndarray:
        """(B,) kinetic energy per structure, eV."""
        per_atom = 0.5 * self.masses * (self.velocities**2).sum(axis=1)
        return np.bincount(self.system, per_atom, minlength=len(self.cells))

    def temperatures(self) -> np.ndarray:
        """(B,) instantaneous temperature, K (3N - 3 degrees of freedom)."""
        dof = np.maximum(3 * self.counts - 3, 1)
        return 2 * self.kinetic_energies() / (dof * units.kB)


def _evaluate(potential: Potential, state_atoms: list[Atoms]) -> tuple[np.ndarray, np.ndarray]:
    ev = potential.evaluate(state_atoms)
    forces = np.concatenate(ev.forces) if ev.forces else np.zeros((0, 3))
    return np.asarray(ev.energies, dtype=float), forces


def nve_init(
    potential: Potential,
    structures: Sequence[Atoms],
    temperature: float | Sequence[float],
    seed: int = 0,
) -> MDState:
    """Maxwell-Boltzmann velocities at ``temperature`` (K, one or one per structure), zero
    total momentum per structure, rescaled to that temperature exactly; first forces."""
    temps = np.broadcast_to(np.asarray(temperature, dtype=float), (len(structures),))
    rng = np.random.default_rng(seed)
    numbers = np.concatenate([a.numbers for a in structures])
    positions = np.concatenate([a.positions for a in structures]).astype(float)
    masses = np.concatenate([a.get_masses() for a in structures])
    system = np.repeat(np.arange(len(structures)), [len(a) for a in structures])
    velocities = (
        rng.normal(size=positions.shape) * np.sqrt(units.kB * temps[system] / masses)[:, None]
    )
    for b in range(len(structures)):
        sel = system == b
        p = (masses[sel, None] * velocities[sel]).sum(axis=0)
        velocities[sel] -= p / masses[sel].sum()
    labels = tuple(get_label(a) or f"structure-{k}" for k, a in enumerate(structures))
    cells = np.stack([a.cell.array for a in structures])
    state = MDState(
        numbers=numbers,
        system=system,
        positions=positions,
        velocities=velocities,
        masses=masses,
        forces=np.zeros_like(positions),
        cells=cells,
        energies=np.zeros(len(structures)),
        labels=labels,
    )
    current = state.temperatures()
    scale = np.sqrt(np.divide(temps, current, out=np.zeros_like(temps), where=current > 0))
    state = replace(state, velocities=velocities * scale[system, None])
    energies, forces = _evaluate(potential, state.atoms())
    return replace(state, energies=energies, forces=forces)


def nve_step(potential: Potential, state: MDState, timestep: float) -> MDState:
    """One velocity-Verlet step of ``timestep`` (ASE time units) for every structure."""
    inv_m = (1.0 / state.masses)[:, None]
    half = state.velocities + 0.5 * timestep * state.forces * inv_m
    moved = replace(state, positions=state.positions + timestep * half)
    energies, forces = _evaluate(potential, moved.atoms())
    return replace(
        moved, velocities=half + 0.5 * timestep * forces * inv_m, forces=forces, energies=energies
    )


@dataclass
class NVETrajectory:
    """Energies sampled along NVE runs (B structures, T samples: step 0, then every
    ``sample_every`` steps).

    Attributes
    ----------
    labels
        B-tuple of structure labels (``structure-<k>`` for one without a label).
    times
        (T,) time of each sample, ps.
    potential, kinetic
        (B, T) potential and kinetic energy per atom, eV/atom.
    temperature
        (B, T) instantaneous temperature, K (3N - 3 degrees of freedom).
    total
        (B, T) ``potential + kinetic``, eV/atom (a property).
    """

    labels: tuple[str, ...]
    times: np.ndarray
    potential: np.ndarray
    kinetic: np.ndarray
    temperature: np.ndarray

    @property
    def total(self) -> np.ndarray:
        return self.potential + self.kinetic


@single_threaded_blas()
def run_nve(
    potential: Potential,
    structures: Sequence[Atoms],
    temperature: float | Sequence[float],
    timestep_fs: float = 1.0,
    steps: int = 1000,
    sample_every: int = 10,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> NVETrajectory:
    """Run NVE for all ``structures`` at once and record energies every ``sample_every`` steps.

    Raises
    ------
    FloatingPointError
        When an energy becomes non-finite (the message names the structure and the step).
    """
    if steps < 1 or sample_every < 1 or not timestep_fs > 0:
        raise ValueError("steps, sample_every and timestep_fs must be positive")
    state = nve_init(potential, structures, temperature, seed)
    n_atoms = state.counts.astype(float)
    dt = timestep_fs * units.fs
    times, pot, kin, temp = [], [], [], []

    def record(step: int) -> None:
        bad = ~np.isfinite(state.energies)
        if bad.any():
            label = state.labels[int(np.argmax(bad))]
            raise FloatingPointError(f"{label}: non-finite energy at NVE step {step}")
        times.append(step * timestep_fs * 1e-3)
        pot.append(state.energies / n_atoms)
        kin.append(state.kinetic_energies() / n_atoms)
        temp.append(state.temperatures())

    record(0)
    for step in range(1, steps + 1):
        state = nve_step(potential, state, dt)
        if step % sample_every == 0:
            record(step)
        if progress is not None:
            progress(1)
    return NVETrajectory(
        labels=state.labels,
        times=np.array(times),
        potential=np.array(pot).T,
        kinetic=np.array(kin).T,
        temperature=np.array(temp).T,
    )


def energy_drift(times_ps: np.ndarray, total_per_atom: np.ndarray, drop: float = 0.1) -> float:
    """Drift of the total energy in meV/atom/ps: the slope of a linear fit after dropping the
    first ``drop`` share of the run (the protocol of the eSEN paper's NVE test)."""
    times_ps = np.asarray(times_ps, dtype=float)
    total_per_atom = np.asarray(total_per_atom, dtype=float)
    start = int(np.floor(drop * len(times_ps)))
    t, e = times_ps[start:], total_per_atom[start:]
    if len(t) < 2:
        raise ValueError("need at least two samples after the dropped share to fit a drift")
    slope = np.polyfit(t, e, 1)[0]
    return float(slope * 1e3)
