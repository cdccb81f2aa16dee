"""``ThermalConductivityMaker``: lattice thermal conductivity of many structures in one job
(phono3py, batched forces)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from jobflow import Job, Maker
from pymatgen.core import Structure

from esen_flows.io import StructureInput, UnreadableInput, load_structures
from esen_flows.makers.base import accepts_flat_settings, esen_job, potential_and_store
from esen_flows.schemas import ConductivityDocument
from esen_flows.tasks.conductivity import (
    ConductivitySettings,
    overrides_from_properties,
    run_conductivity,
)
from esen_flows.tasks.settings import PER_STRUCTURE, PROBLEMS, RELAX_FIELDS, with_flat

#: The settings ``ThermalConductivityMaker`` used to declare flat (deprecated keyword
#: arguments): every field of ``ConductivitySettings`` and the relaxation's.
FLAT_CONDUCTIVITY = (
    *RELAX_FIELDS,
    *(n for n in ConductivitySettings.__dataclass_fields__ if n not in RELAX_FIELDS),
)


@accepts_flat_settings(*FLAT_CONDUCTIVITY)
@dataclass
class ThermalConductivityMaker(Maker):
    """Lattice thermal conductivity with phono3py: optional symmetric tight relaxation, fc2
    and fc3 displaced supercells of ALL the job's structures evaluated as batches, symmetrised
    force constants, then phono3py's transport equation.

    Structures with imaginary modes on the conductivity's q-grid (from fc2) get a document that
    says so and no fc3 work. fc2, fc3 and the mode conductivity go to the ``data`` store
    (``esen_flows.stores.load_phono3py`` and ``load_mode_data`` read them back; ``esen-flows
    export`` writes phono3py's files). ``matbench_discovery()`` gives Matbench Discovery's kappa
    protocol.

    Parameters
    ----------
    name
        Job name.
    potential
        Potential name for ``get_potential``.
    settings
        ``ConductivitySettings``: the relaxation first (``SymmetricRelax`` or None), fc2 and
        fc3 supercells, displacements (systematic or random), q-mesh, temperatures, method,
        Wigner term, isotopes, boundary mean free path; all enter the key. A structure's own
        ``fc3_supercell``, ``fc2_supercell`` and ``q_point_mesh`` properties (Matbench
        Discovery's names) or the per-structure arguments of ``make`` win.
    device, dtype
        Passed to ``get_potential``; float64 by default (finite differences of forces).
    retry_failed
        Recompute structures whose stored document failed.
    """

    name: str = "conductivity"
    potential: str = "esen-emt-tiny"
    settings: ConductivitySettings = field(default_factory=ConductivitySettings)
    device: str | None = None
    dtype: str | None = "float64"
    retry_failed: bool = False

    @classmethod
    def matbench_discovery(cls, **overrides: Any) -> ThermalConductivityMaker:
        """A maker with Matbench Discovery's kappa protocol (``ConductivitySettings.
        matbench_discovery``); ``overrides`` set the maker's fields (``potential``, ...) or,
        flat, the settings' (``mesh=...``, ``fmax=...``)."""
        flat = {k: overrides.pop(k) for k in list(overrides) if k in FLAT_CONDUCTIVITY}
        settings = with_flat(ConductivitySettings.matbench_discovery(), flat)
        values = {"name": "conductivity (Matbench Discovery)", "settings": settings}
        return cls(**{**values, **overrides})

    @classmethod
    def fast(cls, **overrides: Any) -> ThermalConductivityMaker:
        """Matbench Discovery's protocol with random fc3 displacements fitted with symfc.

        fc3: twice symfc's minimum number of supercells (``snapshot_factor=2``), each
        displacement also reversed (``plusminus``: 4x the minimum in all); fc2: phono3py's
        systematic set (a handful of supercells, no symfc set-up). Chosen from
        ``benchmarks/kappa_random.py`` (EMT, 12 crystals including a Cm ternary, against the
        systematic set): with +- pairs kappa is within 0.6 % at 1x, 2x or 4x the minimum;
        without them 2.4-2.6 % off however many supercells (the one-sided finite-difference
        error), and at 1x without pairs the fit is underdetermined. 1x with pairs sits at the
        edge of determination for fc3, so 2x keeps a margin against force noise. The same
        settings otherwise.
        """
        values = {
            "name": "conductivity (fast)",
            "displacements": "random",
            "plusminus": True,
            "snapshot_factor": 2.0,
            "n_fc2_snapshots": "systematic",
        }
        return cls.matbench_discovery(**{**values, **overrides})

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
        structures; they win over a structure's own properties.
        """
        if not isinstance(self.settings, ConductivitySettings):
            kind = type(self.settings).__name__
            raise TypeError(f"settings must be ConductivitySettings, got {kind}")
        items = load_structures(structures)
        overrides = overrides_from_properties(items)
        for values, name, arg in (
            (supercell_matrices, "supercell_matrix", "supercell_matrices"),
            (fc2_supercell_matrices, "fc2_supercell_matrix", "fc2_supercell_matrices"),
            (meshes, "mesh", "meshes"),
        ):
            if values is None:
                continue
            if len(values) != len(items):
                raise ValueError(f"got {len(values)} {arg} for {len(items)} structures")
            for i, value in enumerate(values):
                if value is None:
                    continue
                checked = PER_STRUCTURE[name](value)
                own = overrides[i] or {}  # the structure's other properties stay
                own.get(PROBLEMS, {}).pop(name, None)  # a bad property given anew: fixed
                own[name] = list(checked) if isinstance(checked, tuple) else checked
                overrides[i] = own
        return self.run(items, overrides)

    @esen_job(data=True)
    def run(
        self,
        structures: list[Structure | UnreadableInput],
        overrides: list[dict | None] | None = None,
    ) -> list[ConductivityDocument]:
        """The job: the conductivity of ``structures`` (``overrides``: per structure, None or
        its own ``supercell_matrix``, ``fc2_supercell_matrix``, ``mesh``)."""
        potential, store = potential_and_store(self, data=True)
        return run_conductivity(
            structures,
            potential,
            self.settings,
            store=store,
            retry_failed=self.retry_failed,
            desc=self.name,
            overrides=overrides if overrides is not None else [None] * len(structures),
        )
