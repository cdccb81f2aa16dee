"""``PhononMaker``: harmonic phonons of many structures in one job (phonopy, batched forces)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from jobflow import Job, Maker, job
from pymatgen.core import Structure

from esen_flows.io import StructureInput, UnreadableInput, load_structures
from esen_flows.makers.relax import STORE_CONFIG, _current_store
from esen_flows.potentials import get_potential
from esen_flows.schemas import PhononDocument
from esen_flows.stores import data_store
from esen_flows.tasks import PhononSettings, run_phonons
from esen_flows.tasks.phonons import SUPERCELL_PROPERTY, checked_supercell


@dataclass
class PhononMaker(Maker):
    """Phonons of structures with phonopy: optional symmetric tight relaxation, displaced
    supercells of ALL the job's structures evaluated as batches, symmetrised force constants,
    band structure (seekpath path), DOS, thermal properties and dynamic stability.

    One job handles a list of structures; each gets a ``PhononDocument`` (``failed`` with a
    reason when it cannot be done; imaginary modes are a result, ``dynamically_stable=False``).
    Force constants go to the ``data`` store; ``PhononDocument.to_phonopy(store)`` rebuilds the
    ``Phonopy`` object and ``esen-flows export`` writes ``phonopy_params.yaml``.

    Parameters
    ----------
    name
        Job name.
    potential
        Potential name for ``get_potential``.
    relax
        Relax first: FIRE with the Frechet cell filter, space group kept (ASE ``FixSymmetry``).
    fmax, max_steps, symprec
        That relaxation's threshold (eV/A, atoms and cell), step limit and symmetry tolerance
        (A).
    supercell_matrix
        3 integers or a 3x3 integer matrix; None: diagonal, from ``min_length``.
    min_length
        Smallest face-to-face width of the supercell, A, when no matrix is given.
    displacement
        Displacement distance, A (phonopy's default 0.01).
    phonopy_symprec
        phonopy's symmetry tolerance, A (its default 1e-5).
    mesh
        Thermal-property and stability q-mesh: a length in A (phonopy's convention, default
        100) or 3 numbers.
    dos_mesh
        DOS q-mesh (tetrahedron method), default 50.
    t_min, t_max, t_step
        Temperatures of the thermal properties, K.
    band_points
        q-points per band-path segment.
    gamma_tolerance
        Acoustic modes at Gamma may reach -``gamma_tolerance`` THz (Matbench Discovery: 0.01).
    device, dtype
        Passed to ``get_potential``; float64 by default (a 1e-4 eV/A relaxation and 0.01 A
        finite differences need it).
    retry_failed
        Recompute structures whose stored document failed.
    """

    name: str = "phonons"
    potential: str = "esen-emt-tiny"
    relax: bool = True
    fmax: float = 1.0e-4
    max_steps: int = 1000
    symprec: float = 1.0e-3
    supercell_matrix: Sequence[Sequence[int]] | Sequence[int] | None = None
    min_length: float = 15.0
    displacement: float = 0.01
    phonopy_symprec: float = 1.0e-5
    mesh: float | Sequence[int] = 100.0
    dos_mesh: float | Sequence[int] = 50.0
    t_min: float = 0.0
    t_max: float = 1000.0
    t_step: float = 10.0
    band_points: int = 51
    gamma_tolerance: float = 0.01
    device: str | None = None
    dtype: str | None = "float64"
    retry_failed: bool = False

    def settings(self) -> PhononSettings:
        """The settings that enter each result's key (checked: a bad value raises here)."""
        mesh, dos_mesh = (
            m if isinstance(m, int | float) else tuple(map(int, m))
            for m in (self.mesh, self.dos_mesh)
        )
        return PhononSettings(
            relax=self.relax,
            fmax=self.fmax,
            max_steps=self.max_steps,
            symprec=self.symprec,
            supercell_matrix=self.supercell_matrix,  # checked by PhononSettings
            min_length=self.min_length,
            displacement=self.displacement,
            phonopy_symprec=self.phonopy_symprec,
            mesh=mesh,
            dos_mesh=dos_mesh,
            t_min=self.t_min,
            t_max=self.t_max,
            t_step=self.t_step,
            band_points=self.band_points,
            gamma_tolerance=self.gamma_tolerance,
        )

    def make(
        self,
        structures: list[StructureInput] | StructureInput,
        supercell_matrices: Sequence[Sequence[Sequence[int]] | Sequence[int] | None] | None = None,
    ) -> Job:
        """A job computing the phonons of ``structures`` (one document each, input order).

        ``supercell_matrices``: one per structure (3 integers, a 3x3 matrix, or None for the
        maker's own rule), as atomate2's ``make(structure, supercell_matrix)`` takes one.
        """
        self.settings()  # bad settings fail now, not inside the job
        items = load_structures(structures)
        if supercell_matrices is not None:
            if len(supercell_matrices) != len(items):
                raise ValueError(
                    f"got {len(supercell_matrices)} supercell matrices for {len(items)} structures"
                )
            for item, matrix in zip(items, supercell_matrices, strict=True):
                if matrix is not None and isinstance(item, Structure):
                    item.properties[SUPERCELL_PROPERTY] = checked_supercell(matrix)
        job_ = run_phonon_job(self, items)
        job_.name = self.name
        return job_


@job(config=STORE_CONFIG, data=True)
def run_phonon_job(
    maker: PhononMaker, structures: list[Structure | UnreadableInput]
) -> list[PhononDocument]:
    """The job behind ``PhononMaker``."""
    potential = get_potential(maker.potential, device=maker.device, dtype=maker.dtype)
    store = _current_store()
    if store is not None:  # the output (a batch of documents) goes to the data store: GridFS
        data_store(store)  # in production, so no outputs document nears MongoDB's 16 MB
    return run_phonons(
        structures,
        potential,
        maker.settings(),
        store=store,
        retry_failed=maker.retry_failed,
        desc=maker.name,
    )
