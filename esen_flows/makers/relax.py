"""Relaxation and static makers: thin jobflow wrappers over ``esen_flows.tasks``."""

from __future__ import annotations

from dataclasses import dataclass

from jobflow import CURRENT_JOB, Job, JobConfig, Maker, job
from pymatgen.core import Structure

from esen_flows.io import StructureInput, UnreadableInput, load_structures
from esen_flows.potentials import check_potential, get_potential
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
    output_keys
        Make the job's output the ``{"key", "label"}`` of each result instead of the document
        (every document is in the results store, written as its structure finished). A screen
        of many jobs needs this: resolving a job's output makes jobflow read it back, and on the
        embedded store that read decodes every output of the flow (montydb has no indexes).
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
    output_keys: bool = False

    def settings(self, task: str = "relax") -> RelaxSettings:
        """The settings that enter each result's key."""
        return RelaxSettings(
            task=task,
            fmax=self.fmax,
            max_steps=self.max_steps,
            relax_cell=self.relax_cell,
            min_distance=self.min_distance,
        )

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
        self.settings()  # bad settings fail here, not inside the job
        check_potential(self.potential, device=self.device, dtype=self.dtype)  # unknown: now
        return _batch_job(self, load_structures(structures), "relax", single=False)


def _batch_job(
    maker: BatchRelaxMaker, items: list[Structure | UnreadableInput], task: str, single: bool
) -> Job:
    job_ = run_batch(maker, items, task, single)
    job_.name = maker.name
    return job_


@job(config=STORE_CONFIG)
def run_batch(
    maker: BatchRelaxMaker,
    structures: list[Structure | UnreadableInput],
    task: str = "relax",
    single: bool = False,
) -> list[RelaxationDocument] | RelaxationDocument | list[dict[str, str]]:
    """The job behind the relaxation makers: ``task`` is ``"relax"`` or ``"static"``."""
    store = _current_store()
    if maker.output_keys and store is None:
        raise ValueError(f"{maker.name}: output_keys needs a job store to keep the documents in")
    potential = get_potential(maker.potential, device=maker.device, dtype=maker.dtype)
    docs = run_relaxations(
        structures,
        potential,
        maker.settings(task),
        store=store,
        retry_failed=maker.retry_failed,
        desc=maker.name,
    )
    if maker.output_keys:
        return [{"key": d.key, "label": d.label} for d in docs]
    return docs[0] if single else docs


@dataclass
class RelaxMaker(BatchRelaxMaker):
    """Relax one structure (a ``BatchRelaxMaker`` of one); the output is its document."""

    name: str = "relax"

    def make(self, structure: StructureInput) -> Job:
        """A job relaxing one structure (``ValueError`` for bad settings, as the batch maker)."""
        self.settings()
        return _batch_job(self, load_structures([structure]), "relax", single=True)


@dataclass
class StaticMaker(BatchRelaxMaker):
    """Energy, forces and stress of structures without moving atoms (one batched call)."""

    name: str = "static"

    def make(self, structures: list[StructureInput] | StructureInput) -> Job:
        """A job evaluating ``structures``; one document per structure."""
        return _batch_job(self, load_structures(structures), "static", single=False)
