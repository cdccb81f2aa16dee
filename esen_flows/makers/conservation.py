"""``EnergyConservationMaker``: does a potential conserve energy in NVE molecular dynamics?

The eSEN paper's test (Fu et al. 2025, section 4): velocity Verlet from Maxwell-Boltzmann
velocities, the total energy's drift fitted after the first 10 % of the run, in meV/atom/ps. A
conservative model (forces = -dE/dr) keeps it near zero; a direct-force model drifts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from jobflow import Job, Maker, job
from pymatgen.core import Structure

from esen_flows.io import StructureInput, UnreadableInput, load_structures
from esen_flows.makers.relax import STORE_CONFIG, _current_store
from esen_flows.potentials import get_potential
from esen_flows.schemas import ConservationDocument
from esen_flows.tasks import NVESettings, run_conservation


@dataclass
class EnergyConservationMaker(Maker):
    """NVE runs of many structures in one job, batched over structures.

    Parameters
    ----------
    name
        Job name.
    potential
        Potential name for ``get_potential``.
    temperature
        Initial temperature (K) when ``make`` is given none per structure.
    timestep_fs, steps, sample_every
        Velocity-Verlet time step (fs), number of steps, and steps between energy samples.
    threshold
        Largest |drift| (meV/atom/ps) that counts as conserving (the paper's scale: ~1).
    dtype
        Precision of the potential; float64 by default so round-off does not drift.
    device
        Passed to ``get_potential``.
    seed
        Seed of the initial velocities.
    """

    name: str = "energy conservation"
    potential: str = "esen-emt-tiny"
    temperature: float = 300.0
    timestep_fs: float = 1.0
    steps: int = 2000
    sample_every: int = 10
    threshold: float = 1.0
    dtype: str | None = "float64"
    device: str | None = None
    seed: int = 0

    def settings(self, temperature: float | None = None) -> NVESettings:
        """The settings of one structure's run (they enter its key)."""
        return NVESettings(
            temperature=self.temperature if temperature is None else float(temperature),
            timestep_fs=self.timestep_fs,
            steps=self.steps,
            sample_every=self.sample_every,
            threshold=self.threshold,
            seed=self.seed,
        )

    def make(
        self,
        structures: list[StructureInput] | StructureInput,
        temperatures: Sequence[float] | None = None,
    ) -> Job:
        """A job running NVE for every structure (``temperatures``: one per structure, K)."""
        items = load_structures(structures)
        bad = [i for i in items if isinstance(i, UnreadableInput)]
        if bad:
            raise ValueError(f"{bad[0].source}: {bad[0].reason}")
        if temperatures is not None and len(temperatures) != len(items):
            raise ValueError(f"got {len(temperatures)} temperatures for {len(items)} structures")
        temps = [float(t) for t in temperatures] if temperatures is not None else None
        job_ = run_nve_job(self, items, temps)
        job_.name = self.name
        return job_


@job(config=STORE_CONFIG)
def run_nve_job(
    maker: EnergyConservationMaker,
    structures: list[Structure],
    temperatures: list[float] | None = None,
) -> list[ConservationDocument]:
    """The job behind ``EnergyConservationMaker``."""
    potential = get_potential(maker.potential, device=maker.device, dtype=maker.dtype)
    temps = temperatures if temperatures is not None else [None] * len(structures)
    settings = [maker.settings(t) for t in temps]
    return run_conservation(structures, potential, settings, store=_current_store())
