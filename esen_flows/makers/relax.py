"""Relaxation and static makers: thin jobflow wrappers over ``esen_flows.tasks``."""

from __future__ import annotations

from dataclasses import dataclass

from jobflow import CURRENT_JOB, JobConfig, Maker, job
from pymatgen.core import Structure

from esen_flows.io import StructureInput, UnreadableInput, load_structures
from esen_flows.potentials import get_potential
from esen_flows.schemas import RelaxationDocument
from esen_flows.tasks import RelaxSettings, run_relaxations

#: Jobs see the store they run with (``CURRENT_JOB.store``) to skip and persist results.
STORE_CONFIG = JobConfig(expose_store=True)


def _current_store():
    """The JobStore of the running job (set by run_locally and FireWorks), or None."""
    return getattr(CURRENT_JOB, "store", None)


@dataclass
class BatchRelaxMaker(Maker):
    """Relax many structures in one job, every FIRE step one batched evaluation.

    Results already in the store (same structure, potential checksum and settings) are returned
    without recomputation; each new result is written to the store as soon as its structure
    finishes, so an interrupted job loses nothing.

    Parameters
    ----------
    name
        Job name.
    potential
        Potential name for ``get_potential`` (``"emt"``, ``"esen:PATH"``, ``"module:Class"``).
    fmax
        Force (eV/A) and cell-gradient convergence threshold.
    max_steps
        FIRE step limit per structure.
    relax_cell
        Relax the cell with the Frechet cell filter.
    min_distance
        Atoms closer than this (A) make the structure fail as overlapping.
    device, dtype
        Passed to ``get_potential`` (ignored by ASE calculators).
    retry_failed
        Recompute structures whose stored document failed.
    """

    name: str = "batch relax"
    potential: str = "emt"
    fmax: float = 0.05
    max_steps: int = 500
    relax_cell: bool = True
    min_distance: float = 0.5
    device: str | None = None
    dtype: str | None = None
    retry_failed: bool = False

    def settings(self, task: str = "relax") -> RelaxSettings:
        """The settings that enter each result's key."""
        return RelaxSettings(
            task=task,
            fmax=self.fmax,
            max_steps=self.max_steps,
            relax_cell=self.relax_cell,
            min_distance=self.min_distance,
            dtype=self.dtype,
        )

    def _run(
        self, structures: list[Structure | UnreadableInput], task: str
    ) -> list[RelaxationDocument]:
        potential = get_potential(self.potential, device=self.device, dtype=self.dtype)
        items = load_structures(structures)
        return run_relaxations(
            items,
            potential,
            self.settings(task),
            store=_current_store(),
            retry_failed=self.retry_failed,
            desc=self.name,
        )

    @job(config=STORE_CONFIG)
    def make(self, structures: list[StructureInput | UnreadableInput]) -> list[RelaxationDocument]:
        """A job relaxing ``structures``; its output is one document per structure."""
        return self._run(structures, "relax")


@dataclass
class RelaxMaker(BatchRelaxMaker):
    """Relax one structure (a ``BatchRelaxMaker`` of one); the output is its document."""

    name: str = "relax"

    @job(config=STORE_CONFIG)
    def make(self, structure: StructureInput) -> RelaxationDocument:
        """A job relaxing one structure."""
        return self._run([structure], "relax")[0]


@dataclass
class StaticMaker(BatchRelaxMaker):
    """Energy, forces and stress of structures without moving atoms (one batched call)."""

    name: str = "static"

    @job(config=STORE_CONFIG)
    def make(self, structures: list[StructureInput] | StructureInput) -> list[RelaxationDocument]:
        """A job evaluating ``structures``; one document per structure."""
        if not isinstance(structures, list):
            structures = [structures]
        return self._run(structures, "static")
