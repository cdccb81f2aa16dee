"""``EnergyConservationMaker``: does a potential conserve energy in NVE molecular dynamics?

The eSEN paper's test (Fu et al. 2025, section 4): velocity Verlet from Maxwell-Boltzmann
velocities, the total energy's drift fitted after the first 10 % of the run, in meV/atom/ps. A
conservative model (forces = -dE/dr) keeps it near zero; a direct-force model drifts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from jobflow import Job, Maker
from pymatgen.core import Structure

from esen_flows.io import StructureInput, UnreadableInput, load_structures
from esen_flows.makers.base import accepts_flat_settings, esen_job, potential_and_store
from esen_flows.schemas import ConservationDocument
from esen_flows.tasks import NVESettings, run_conservation

#: The settings ``EnergyConservationMaker`` used to declare flat (deprecated keyword arguments).
FLAT_NVE = ("temperature", "timestep_fs", "steps", "sample_every", "threshold", "seed")


@accepts_flat_settings(*FLAT_NVE)
@dataclass
class EnergyConservationMaker(Maker):
    """NVE runs of many structures in one job, batched over structures.

    Parameters
    ----------
    name
        Job name.
    potential
        Potential name for ``get_potential``.
    settings
        ``NVESettings``: initial temperature (K, when ``make`` is given none per structure),
        time step (fs), steps, steps between energy samples, the drift threshold
        (meV/atom/ps), the velocities' seed; all enter the key.
    dtype
        Precision of the potential; float64 by default so round-off does not drift.
    device
        Passed to ``get_potential``.
    retry_failed
        Recompute structures whose stored document failed.
    """

    name: str = "energy conservation"
    potential: str = "esen-emt-tiny"
    settings: NVESettings = field(default_factory=NVESettings)
    dtype: str | None = "float64"
    device: str | None = None
    retry_failed: bool = False

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
        return self.run(items, temps)

    @esen_job
    def run(
        self, structures: list[Structure], temperatures: list[float] | None = None
    ) -> list[ConservationDocument]:
        """The job: NVE of every structure, at its own initial temperature when given."""
        potential, store = potential_and_store(self)
        temps = temperatures if temperatures is not None else [None] * len(structures)
        settings = [
            self.settings if t is None else replace(self.settings, temperature=t) for t in temps
        ]
        return run_conservation(
            structures, potential, settings, store=store, retry_failed=self.retry_failed
        )
