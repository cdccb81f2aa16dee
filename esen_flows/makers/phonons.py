"""``PhononMaker``: harmonic phonons of many structures in one job (phonopy, batched forces)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from jobflow import Job, Maker
from pymatgen.core import Structure

from esen_flows.io import StructureInput, UnreadableInput, load_structures
from esen_flows.makers.base import accepts_flat_settings, esen_job, potential_and_store
from esen_flows.schemas import PhononDocument
from esen_flows.tasks import PhononSettings, run_phonons
from esen_flows.tasks.settings import checked_supercell

#: The settings ``PhononMaker`` used to declare flat (deprecated keyword arguments).
FLAT_PHONON = (
    "relax",
    "fmax",
    "max_steps",
    "symprec",
    "supercell_matrix",
    "min_length",
    "displacement",
    "phonopy_symprec",
    "mesh",
    "dos_mesh",
    "t_min",
    "t_max",
    "t_step",
    "band_points",
    "gamma_tolerance",
)


@accepts_flat_settings(*FLAT_PHONON)
@dataclass
class PhononMaker(Maker):
    """Phonons of structures with phonopy: optional symmetric tight relaxation, displaced
    supercells of ALL the job's structures evaluated as batches, symmetrised force constants,
    band structure (seekpath path), DOS, thermal properties and dynamic stability.

    One job handles a list of structures; each gets a ``PhononDocument`` (``failed`` with a
    reason when it cannot be done; imaginary modes are a result, ``dynamically_stable=False``).
    Force constants go to the ``data`` store; ``esen_flows.stores.load_phonopy(doc, store)``
    rebuilds the ``Phonopy`` object and ``esen-flows export`` writes ``phonopy_params.yaml``.

    Parameters
    ----------
    name
        Job name.
    potential
        Potential name for ``get_potential``.
    settings
        ``PhononSettings``: the relaxation first (``SymmetricRelax`` or None), supercell,
        displacement, meshes, temperatures, band points, Gamma tolerance; all enter the key.
    device, dtype
        Passed to ``get_potential``; float64 by default (a 1e-4 eV/A relaxation and 0.01 A
        finite differences need it).
    retry_failed
        Recompute structures whose stored document failed.
    """

    name: str = "phonons"
    potential: str = "esen-emt-tiny"
    settings: PhononSettings = field(default_factory=PhononSettings)
    device: str | None = None
    dtype: str | None = "float64"
    retry_failed: bool = False

    def make(
        self,
        structures: list[StructureInput] | StructureInput,
        supercell_matrices: Sequence[Sequence[Sequence[int]] | Sequence[int] | None] | None = None,
    ) -> Job:
        """A job computing the phonons of ``structures`` (one document each, input order).

        ``supercell_matrices``: one per structure (3 integers, a 3x3 matrix, or None for the
        maker's own rule), as atomate2's ``make(structure, supercell_matrix)`` takes one.
        """
        if not isinstance(self.settings, PhononSettings):
            raise TypeError(f"settings must be PhononSettings, got {type(self.settings).__name__}")
        items = load_structures(structures)
        overrides = None
        if supercell_matrices is not None:
            if len(supercell_matrices) != len(items):
                raise ValueError(
                    f"got {len(supercell_matrices)} supercell matrices for {len(items)} structures"
                )
            overrides = [
                None if m is None else {"supercell_matrix": checked_supercell(m)}
                for m in supercell_matrices
            ]
        return self.run(items, overrides)

    @esen_job(data=True)
    def run(
        self,
        structures: list[Structure | UnreadableInput],
        overrides: list[dict | None] | None = None,
    ) -> list[PhononDocument]:
        """The job: the phonons of ``structures`` (``overrides``: per structure, None or its
        own ``{"supercell_matrix": ...}``)."""
        potential, store = potential_and_store(self, data=True)
        return run_phonons(
            structures,
            potential,
            self.settings,
            store=store,
            retry_failed=self.retry_failed,
            desc=self.name,
            overrides=overrides,
        )
