"""Relaxation and static makers: thin jobflow wrappers over ``esen_flows.tasks``."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from jobflow import Job, Maker
from pymatgen.core import Structure

from esen_flows.io import StructureInput, UnreadableInput, load_structures
from esen_flows.makers.base import accepts_flat_settings, esen_job, potential_and_store
from esen_flows.potentials import check_potential
from esen_flows.schemas import RelaxationDocument
from esen_flows.tasks import RelaxSettings, run_relaxations

#: The settings ``BatchRelaxMaker`` used to declare flat (deprecated keyword arguments).
FLAT_RELAX = ("fmax", "max_steps", "relax_cell", "min_distance")


@accepts_flat_settings(*FLAT_RELAX)
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
    settings
        ``RelaxSettings``: ``fmax`` (eV/A), ``max_steps``, ``relax_cell``, ``min_distance`` (A);
        all enter the result key.
    device, dtype
        Passed to ``get_potential`` (ignored by ASE calculators).
    retry_failed
        Recompute structures whose stored document failed.
    output_keys
        Make the job's output the ``{"key", "label"}`` of each result instead of the document
        (every document is in the results store, written as its structure finished). A screen
        of many jobs needs this: resolving a job's output makes jobflow read it back, and on the
        embedded store that read decodes every output of the flow (montydb has no indexes).
    """

    name: str = "batch relax"
    potential: str = "emt"
    settings: RelaxSettings = field(default_factory=RelaxSettings)
    device: str | None = None
    dtype: str | None = None
    retry_failed: bool = False
    output_keys: bool = False

    #: The task this maker runs ("static" for ``StaticMaker``).
    task = "relax"

    def task_settings(self) -> RelaxSettings:
        """The settings of this maker's task (``settings`` with its ``task``)."""
        if self.settings.task == self.task:
            return self.settings
        return replace(self.settings, task=self.task)

    def make(self, structures: list[StructureInput] | StructureInput) -> Job:
        """A job relaxing ``structures``; its output is one document per structure.

        Inputs are converted to labelled pymatgen ``Structure``s here, so the job holds only
        serialisable data (it can travel to FireWorks).

        Raises
        ------
        ValueError
            For ``fmax <= 0`` or ``max_steps < 1`` (no relaxation could converge), or a potential
        ``get_potential`` cannot build (``PotentialError``).
        """
        if not isinstance(self.settings, RelaxSettings):
            raise TypeError(f"settings must be RelaxSettings, got {type(self.settings).__name__}")
        check_potential(self.potential, device=self.device, dtype=self.dtype)  # unknown: now
        return self.run(load_structures(structures))

    @esen_job
    def run(
        self, structures: list[Structure | UnreadableInput], single: bool = False
    ) -> list[RelaxationDocument] | RelaxationDocument | list[dict[str, str]]:
        """The job: relax (or evaluate) ``structures`` with the results store of the running
        job; one document each, or the one document with ``single``."""
        potential, store = potential_and_store(self)
        if self.output_keys and store is None:
            raise ValueError(f"{self.name}: output_keys needs a job store to keep the documents")
        docs = run_relaxations(
            structures,
            potential,
            self.task_settings(),
            store=store,
            retry_failed=self.retry_failed,
            desc=self.name,
        )
        if self.output_keys:
            return [{"key": d.key, "label": d.label} for d in docs]
        return docs[0] if single else docs


@accepts_flat_settings(*FLAT_RELAX)
@dataclass
class RelaxMaker(BatchRelaxMaker):
    """Relax one structure (a ``BatchRelaxMaker`` of one); the output is its document."""

    name: str = "relax"

    def make(self, structure: StructureInput) -> Job:
        """A job relaxing one structure (``ValueError`` for bad settings, as the batch maker)."""
        check_potential(self.potential, device=self.device, dtype=self.dtype)
        return self.run(load_structures([structure]), single=True)


@accepts_flat_settings(*FLAT_RELAX)
@dataclass
class StaticMaker(BatchRelaxMaker):
    """Energy, forces and stress of structures without moving atoms (one batched call)."""

    name: str = "static"
    task = "static"

    def make(self, structures: list[StructureInput] | StructureInput) -> Job:
        """A job evaluating ``structures``; one document per structure."""
        return self.run(load_structures(structures))
