"""``ThermalConductivityMaker``: lattice thermal conductivity of many structures in one job
(phono3py, batched forces)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from jobflow import Job, Maker, job
from pymatgen.core import Structure

from esen_flows.io import StructureInput, UnreadableInput, load_structures
from esen_flows.makers.relax import STORE_CONFIG, _current_store
from esen_flows.potentials import get_potential
from esen_flows.schemas import ConductivityDocument
from esen_flows.stores import data_store
from esen_flows.tasks.conductivity import (
    FC2_SUPERCELL,
    FC3_SUPERCELL,
    PHONO3PY_TEMPERATURES,
    Q_MESH,
    ConductivitySettings,
    checked_mesh,
    run_conductivity,
)
from esen_flows.tasks.phonons import checked_supercell


@dataclass
class ThermalConductivityMaker(Maker):
    """Lattice thermal conductivity with phono3py: optional symmetric tight relaxation, fc2
    and fc3 displaced supercells of ALL the job's structures evaluated as batches, symmetrised
    force constants, then phono3py's transport equation.

    Structures with imaginary modes on the conductivity's q-grid (from fc2) get a document that
    says so and no fc3 work. fc2, fc3 and the mode conductivity go to the ``data`` store
    (``ConductivityDocument.to_phono3py`` and ``mode_data`` read them back; ``esen-flows
    export`` writes phono3py's files). ``matbench_discovery()`` gives Matbench Discovery's kappa
    protocol.

    Parameters
    ----------
    name
        Job name.
    potential
        Potential name for ``get_potential``.
    relax, fmax, max_steps, symprec
        Relax first (FIRE, Frechet cell filter, space group kept at ``symprec`` A) to ``fmax``
        eV/A within ``max_steps``.
    supercell_matrix, fc2_supercell_matrix
        fc3 and fc2 supercells (3 integers or 3x3); None: diagonal, at least ``min_length`` and
        ``fc2_min_length`` A thick. A structure's own ``fc3_supercell``, ``fc2_supercell`` and
        ``q_point_mesh`` properties (Matbench Discovery's names) win.
    displacement
        Displacement distance, A (phono3py's default 0.03).
    cutoff_pair_distance
        phono3py's pair cutoff, A (None: all pairs, its default).
    displacements
        ``"systematic"`` (default; Matbench Discovery's protocol) or ``"random"``: random
        displacements of every atom, force constants fitted with symfc, far fewer supercells
        (``fast()``).
    n_snapshots, n_fc2_snapshots, random_seed, plusminus, snapshot_factor
        ``"random"``: fc3 and fc2 supercells (a number or ``"auto"``), the seed (recorded in
        the document's settings), +- pairs, phono3py's ``number_estimation_factor``.
    phono3py_symprec
        phono3py's symmetry tolerance, A (its default 1e-5).
    mesh
        q-mesh: 3 numbers or a length in A (default 40 A: 19x19x19 for fcc Cu's primitive cell).
    temperatures
        K (phono3py's RTA default: 0 to 1000 K in steps of 10).
    method
        "rta" (default) or "lbte".
    wigner
        Add the Wigner coherence term (phono3py's SMM19).
    isotope
        Isotope scattering.
    boundary_mfp
        Boundary mean free path, micrometres.
    symmetrize
        Symmetrise fc2 and fc3.
    gamma_tolerance
        Acoustic modes at Gamma may reach -``gamma_tolerance`` THz (Matbench Discovery: 0.01).
    device, dtype
        Passed to ``get_potential``; float64 by default (finite differences of forces).
    retry_failed
        Recompute structures whose stored document failed.
    """

    name: str = "conductivity"
    potential: str = "esen-emt-tiny"
    relax: bool = True
    fmax: float = 1.0e-4
    max_steps: int = 1000
    symprec: float = 1.0e-3
    supercell_matrix: Sequence[Sequence[int]] | Sequence[int] | None = None
    fc2_supercell_matrix: Sequence[Sequence[int]] | Sequence[int] | None = None
    min_length: float = 7.0
    fc2_min_length: float = 12.0
    displacement: float = 0.03
    cutoff_pair_distance: float | None = None
    displacements: str = "systematic"
    n_snapshots: int | str = "auto"
    n_fc2_snapshots: int | str = "auto"
    random_seed: int = 0
    plusminus: bool = False
    snapshot_factor: float | None = None
    phono3py_symprec: float = 1.0e-5
    mesh: float | Sequence[int] = 40.0
    temperatures: Sequence[float] = field(default_factory=lambda: list(PHONO3PY_TEMPERATURES))
    method: str = "rta"
    wigner: bool = False
    isotope: bool = False
    boundary_mfp: float | None = None
    symmetrize: bool = True
    gamma_tolerance: float = 0.01
    device: str | None = None
    dtype: str | None = "float64"
    retry_failed: bool = False

    @classmethod
    def matbench_discovery(cls, **overrides: Any) -> ThermalConductivityMaker:
        """A maker with Matbench Discovery's kappa protocol (``ConductivitySettings.
        matbench_discovery``); ``overrides`` set any field (e.g. ``potential``)."""
        preset = ConductivitySettings.matbench_discovery()
        names = {f.name for f in fields(ConductivitySettings)}
        values = {n: getattr(preset, n) for n in names}
        values["temperatures"] = list(values["temperatures"])
        return cls(**{**values, "name": "conductivity (Matbench Discovery)", **overrides})

    @classmethod
    def fast(cls, **overrides: Any) -> ThermalConductivityMaker:
        """Matbench Discovery's protocol with random displacements: fc2 and fc3 fitted with
        symfc from phono3py's ``"auto"`` number of supercells, each displacement also
        reversed (+- pairs cancel the even-order error of the finite differences: with EMT,
        kappa within 1 % of the systematic set for fcc Cu, Ag and L1_2 Cu3Au against 2-5 %
        without, from 4.6x fewer fc3 supercells); the same settings otherwise."""
        values = {"name": "conductivity (fast)", "displacements": "random", "plusminus": True}
        return cls.matbench_discovery(**{**values, **overrides})

    def settings(self) -> ConductivitySettings:
        """The settings that enter each result's key (checked: a bad value raises here)."""
        names = {f.name for f in fields(ConductivitySettings)}
        values = {n: getattr(self, n) for n in names}
        values["temperatures"] = tuple(self.temperatures)
        return ConductivitySettings(**values)

    def make(
        self,
        structures: list[StructureInput] | StructureInput,
        supercell_matrices: Sequence[Any] | None = None,
        fc2_supercell_matrices: Sequence[Any] | None = None,
        meshes: Sequence[Any] | None = None,
    ) -> Job:
        """A job computing the conductivity of ``structures`` (one document each, input order).

        ``supercell_matrices`` (fc3), ``fc2_supercell_matrices`` and ``meshes``: one per
        structure (None entries keep the maker's own), as Matbench Discovery gives each of its
        structures.
        """
        self.settings()  # bad settings fail now, not inside the job
        items = load_structures(structures)
        for values, prop, check in (
            (supercell_matrices, FC3_SUPERCELL, checked_supercell),
            (fc2_supercell_matrices, FC2_SUPERCELL, checked_supercell),
            (meshes, Q_MESH, checked_mesh),
        ):
            if values is None:
                continue
            if len(values) != len(items):
                raise ValueError(f"got {len(values)} values of {prop} for {len(items)} structures")
            for item, value in zip(items, values, strict=True):
                if value is not None and isinstance(item, Structure):
                    checked = check(value)
                    item.properties[prop] = list(checked) if isinstance(checked, tuple) else checked
        job_ = run_conductivity_job(self, items)
        job_.name = self.name
        return job_


@job(config=STORE_CONFIG, data=True)
def run_conductivity_job(
    maker: ThermalConductivityMaker, structures: list[Structure | UnreadableInput]
) -> list[ConductivityDocument]:
    """The job behind ``ThermalConductivityMaker``."""
    potential = get_potential(maker.potential, device=maker.device, dtype=maker.dtype)
    store = _current_store()
    if store is not None:  # the output (a batch of documents) goes to the data store: GridFS
        data_store(store)  # in production, so no outputs document nears MongoDB's 16 MB
    return run_conductivity(
        structures,
        potential,
        maker.settings(),
        store=store,
        retry_failed=maker.retry_failed,
        desc=maker.name,
    )
