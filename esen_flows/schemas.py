"""Result documents (pydantic). Units live in the field descriptions.

Every document carries ``kind``, ``label``, ``key``, the potential's ``potential`` name and
``checksum``, its ``settings``, a ``status`` (``"ok"`` or ``"failed"``) and a ``reason`` when it
failed. ``key`` = hash(canonical structure, potential checksum, settings): a job asked for work
whose key is already in the results store returns the stored document instead of recomputing.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pymatgen.core import Structure
from pymatgen.phonon.bandstructure import PhononBandStructureSymmLine
from pymatgen.phonon.dos import PhononDos

EV_A3_TO_GPA = 160.21766208


def canonical_structure(structure: Structure) -> list[Any]:
    """A permutation-invariant, rounded description of a structure (for hashing).

    Lattice to 1e-6 A, fractional coordinates wrapped into [0, 1) to 1e-6, sites sorted.
    """
    lattice = np.round(structure.lattice.matrix, 6) + 0.0
    frac = np.round(np.mod(structure.frac_coords, 1.0), 6) % 1.0 + 0.0
    sites = sorted(
        (site.species_string, *map(float, f)) for site, f in zip(structure, frac, strict=True)
    )
    return [lattice.tolist(), sites]


def hash_key(*parts: Any) -> str:
    """A 32-hex-digit hash of JSON-serialisable parts (sorted keys)."""
    payload = json.dumps(list(parts), sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def make_key(structure: Structure, checksum: str, settings: dict[str, Any]) -> str:
    """Hash of (canonical structure, potential checksum, settings): a result's identity."""
    return hash_key(canonical_structure(structure), checksum, settings)


#: The data-store readers of ``esen_flows.stores.records``, which puts them here when it is
#: imported: only the deprecated document methods (``doc.to_phonopy(store)`` and kin, removed
#: in the next release) use them. This module imports nothing of the package.
DATA_READERS: dict[str, Callable[..., Any]] = {}


def _deprecated_reader(name: str, doc: Any, store: Any, old: str | None = None) -> Any:
    warnings.warn(
        f"{type(doc).__name__}.{old or name}(store) is deprecated and will be removed: use "
        f"esen_flows.stores.{name}(doc, store)",
        DeprecationWarning,
        stacklevel=3,
    )
    if name not in DATA_READERS:
        raise RuntimeError(f"{doc.label}: use esen_flows.stores.{name}(doc, store)")
    return DATA_READERS[name](doc, store)


def _now() -> datetime:
    return datetime.now(UTC)


class ResultDocument(BaseModel):
    """Fields shared by every result document."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="allow")
    kind: ClassVar[str] = "result"
    #: The field that holds the structure given (a task's ``Batch`` fills it).
    input_field: ClassVar[str] = "input_structure"
    #: Fields a failed document of this kind also sets.
    failed_fields: ClassVar[dict[str, Any]] = {}

    label: str = Field(description="Structure label, unique within a screen.")
    key: str = Field(description="hash(canonical structure, potential checksum, settings).")
    potential: str = Field(description="Name of the potential (get_potential's argument).")
    checksum: str = Field(description="Checksum identifying the potential's parameters.")
    settings: dict[str, Any] = Field(default_factory=dict, description="Settings of the task.")
    status: Literal["ok", "failed"] = Field("ok", description="'failed' comes with a reason.")
    reason: str | None = Field(None, description="Why the task failed.")
    created_at: datetime = Field(default_factory=_now, description="UTC time of creation.")

    @field_validator("created_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        """Stores hand datetimes back without a time zone: they are UTC."""
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)

    def to_store(self) -> dict[str, Any]:
        """A JSON/BSON-ready dict with ``kind`` for the results store."""
        from monty.json import jsanitize

        doc = jsanitize(self.model_dump(), strict=True, allow_bson=True)
        doc["kind"] = self.kind
        return doc

    @classmethod
    def from_store(cls, doc: dict[str, Any]) -> ResultDocument:
        """Rebuild a document from what ``to_store`` wrote (MSON objects decoded)."""
        from monty.json import MontyDecoder

        data = {k: v for k, v in doc.items() if k not in ("_id", "kind")}
        return cls.model_validate(MontyDecoder().process_decoded(data))


class RelaxationDocument(ResultDocument):
    """One structure's relaxation (or static evaluation: ``settings["task"] == "static"``)."""

    kind: ClassVar[str] = "relaxation"
    failed_fields: ClassVar[dict[str, Any]] = {"relax_status": "failed"}

    formula: str | None = Field(None, description="Reduced formula.")
    chemsys: str | None = Field(None, description="Elements joined by '-', sorted.")
    n_sites: int | None = Field(None, description="Number of atoms.")
    input_structure: Structure | None = Field(None, description="Structure given.")
    structure: Structure | None = Field(None, description="Final (relaxed) structure.")
    energy: float | None = Field(None, description="Final total energy, eV.")
    energy_per_atom: float | None = Field(None, description="Final energy per atom, eV/atom.")
    stress_gpa: list[list[float]] | None = Field(
        None, description="Final stress, 3x3, GPa, ASE sign (positive = tensile)."
    )
    max_force: float | None = Field(None, description="Largest final atomic force, eV/A.")
    max_stress_gpa: float | None = Field(None, description="Largest |stress component|, GPa.")
    relax_status: Literal["converged", "max_steps", "static", "failed"] | None = Field(
        None, description="How the relaxation ended."
    )
    converged: bool = Field(False, description="True when force and cell criteria were met.")
    n_steps: int = Field(0, description="Optimiser steps taken.")
    duplicate_of: str | None = Field(
        None, description="Label of the input this one matched (StructureMatcher) and shares."
    )
    volume_change: float | None = Field(None, description="Final / initial volume - 1.")
    same_as: str | None = Field(
        None,
        description="Label of a relaxation that ended in the same structure (from another "
        "input): this one shares its verdict on the hull.",
    )
    oxide_type: str | None = Field(
        None, description="pymatgen's oxide type of the relaxed structure (O compounds)."
    )
    sulfide_type: str | None = Field(
        None, description="pymatgen's sulfide type of the relaxed structure (S compounds)."
    )
    wall_time: float | None = Field(None, description="Seconds spent on this structure.")


class ReferenceDocument(ResultDocument):
    """A competing phase given to a screen (``reference_entries``), kept in the store so the
    store-wide hull includes it. ``checksum`` and ``settings`` are those of the screen's
    relaxations: the potential and settings the entry is declared to be computed with."""

    kind: ClassVar[str] = "reference"

    formula: str | None = Field(None, description="Reduced formula.")
    chemsys: str | None = Field(None, description="Elements joined by '-', sorted.")
    energy_per_atom: float | None = Field(None, description="Energy, eV/atom.")
    converged: bool = Field(True, description="A given entry counts as converged.")
    entry: Any = Field(None, description="The entry as given (a pymatgen ComputedEntry).")
    compatibility: str | None = Field(
        None,
        description="The correction scheme the screen applied (e.g. 'mp2020'): the store's "
        "hull of this set applies it unless told otherwise.",
    )


class StabilityDocument(ResultDocument):
    """A structure's place relative to the convex hull of its chemical system."""

    kind: ClassVar[str] = "stability"

    formula: str | None = Field(None, description="Reduced formula.")
    chemsys: str | None = Field(None, description="Elements joined by '-', sorted.")
    relaxation_key: str | None = Field(None, description="Key of the relaxation used.")
    energy_per_atom: float | None = Field(
        None, description="Relaxed energy, eV/atom (corrected when a compatibility is set)."
    )
    energy_correction: float | None = Field(
        None, description="What the compatibility scheme added to the energy, eV/atom."
    )
    e_form: float | None = Field(
        None, description="Formation energy vs the elemental references, eV/atom."
    )
    e_above_hull: float | None = Field(None, description="Energy above the hull, eV/atom.")
    stable: bool | None = Field(
        None, description="On the hull: e_above_hull <= 1e-6 eV/atom (Matbench Discovery)."
    )
    candidate: bool | None = Field(None, description="Within e_hull_max of the hull.")
    converged: bool | None = Field(
        None,
        description="Whether the relaxation converged; an unconverged one does not shape the "
        "hull and is never stable nor a candidate.",
    )
    n_steps: int | None = Field(None, description="Optimiser steps of the relaxation.")
    duplicate_of: str | None = Field(
        None, description="Label of the input this one matched and shares its verdict with."
    )
    same_as: str | None = Field(
        None,
        description="Label of a relaxation that ended in the same structure: its distance to "
        "the hull (and verdict) is this one's.",
    )
    e_hull_max: float | None = Field(None, description="Threshold for candidate, eV/atom.")
    decomposition: dict[str, float] | None = Field(
        None, description="Hull phases (formula/label: fraction) the structure decomposes into."
    )
    references: dict[str, float] | None = Field(
        None, description="Elemental reference energies used, eV/atom."
    )
    structure: Structure | None = Field(None, description="Relaxed structure.")


class ConservationDocument(ResultDocument):
    """Energy conservation of a potential in NVE molecular dynamics (velocity Verlet)."""

    kind: ClassVar[str] = "conservation"
    input_field: ClassVar[str] = "structure"

    formula: str | None = Field(None, description="Reduced formula.")
    chemsys: str | None = Field(None, description="Elements joined by '-', sorted.")
    n_sites: int | None = Field(None, description="Number of atoms.")
    temperature: float | None = Field(None, description="Initial temperature, K.")
    timestep_fs: float | None = Field(None, description="Time step, fs.")
    steps: int | None = Field(None, description="Velocity-Verlet steps.")
    drift: float | None = Field(
        None,
        description="Slope of the total energy after the first 10 % of the run, meV/atom/ps.",
    )
    threshold: float | None = Field(None, description="Largest |drift| that passes, meV/atom/ps.")
    conserves: bool | None = Field(None, description="|drift| <= threshold.")
    mean_temperature: float | None = Field(None, description="Mean temperature of the run, K.")
    times_ps: list[float] | None = Field(None, description="Sample times, ps.")
    total_energy: list[float] | None = Field(None, description="Total energy per sample, eV/atom.")
    potential_energy: list[float] | None = Field(
        None, description="Potential energy per sample, eV/atom."
    )
    structure: Structure | None = Field(None, description="Initial structure.")


class ThermalProperties(BaseModel):
    """Harmonic thermal properties in phonopy's units, per mole of phonopy's primitive cell."""

    temperatures: list[float] = Field(description="Temperatures, K.")
    free_energy: list[float] = Field(description="Helmholtz free energy F = U - TS, kJ/mol.")
    entropy: list[float] = Field(description="Entropy, J/K/mol.")
    heat_capacity: list[float] = Field(description="Heat capacity at constant volume, J/K/mol.")

    def at(self, temperature: float) -> dict[str, float]:
        """The three properties at one of the temperatures (K)."""
        temps = np.asarray(self.temperatures)
        i = int(np.argmin(np.abs(temps - temperature)))
        if abs(temps[i] - temperature) > 1e-6:
            raise ValueError(f"{temperature} K is not one of the temperatures computed")
        return {
            "free_energy": self.free_energy[i],
            "entropy": self.entropy[i],
            "heat_capacity": self.heat_capacity[i],
        }


class RelaxedCellDocument(ResultDocument):
    """Fields shared by the phonon and conductivity documents: the structure, its optional
    symmetry-constrained relaxation and its space group before and after."""

    formula: str | None = Field(None, description="Reduced formula.")
    chemsys: str | None = Field(None, description="Elements joined by '-', sorted.")
    n_sites: int | None = Field(None, description="Atoms in the unit cell.")
    structure: Structure | None = Field(
        None, description="The unit cell the calculation used (relaxed when relaxed)."
    )
    input_structure: Structure | None = Field(None, description="Structure given.")
    relaxed: bool = Field(False, description="Whether a symmetry-constrained relaxation ran.")
    relax_converged: bool | None = Field(None, description="Whether that relaxation converged.")
    relax_steps: int | None = Field(None, description="FIRE steps of that relaxation.")
    relax_max_force: float | None = Field(None, description="Largest force after it, eV/A.")
    spacegroup_input: str | None = Field(None, description="Space group given (symbol).")
    spacegroup: str | None = Field(None, description="Space group of the structure used.")


class PhononDocument(RelaxedCellDocument):
    """Harmonic phonons of one structure (phonopy finite displacements).

    The force constants and the displacement dataset are in the additional ``data`` store, not
    here (``to_phonopy`` reads them back); the document stays small for any size of cell.
    """

    kind: ClassVar[str] = "phonon"

    supercell_matrix: list[list[int]] | None = Field(None, description="Supercell, 3x3.")
    primitive_matrix: list[list[float]] | None = Field(
        None, description="phonopy's primitive cell in the unit cell's vectors, 3x3."
    )
    n_displacements: int | None = Field(None, description="Displaced supercells evaluated.")
    n_supercell_atoms: int | None = Field(None, description="Atoms per supercell.")
    mesh: list[int] | None = Field(
        None, description="Gamma-centred q-mesh of the thermal properties and stability check."
    )
    dos_mesh: list[int] | None = Field(None, description="Gamma-centred q-mesh of the DOS.")
    thermal_properties: ThermalProperties | None = Field(
        None, description="Free energy (kJ/mol), entropy, heat capacity (J/K/mol) against T (K)."
    )
    band_structure: PhononBandStructureSymmLine | None = Field(
        None,
        description="Frequencies (THz) along seekpath's standard path; None when it was too "
        "large for a document (``band_structure_in_data``): read it with ``bands(store)``.",
    )
    band_structure_in_data: bool = Field(
        False,
        description="The band structure (over BAND_STRUCTURE_INLINE_BYTES as JSON) is in the "
        "data store's phonopy record of this result, not in the document.",
    )
    dos: PhononDos | None = Field(None, description="Total DOS, states/THz per primitive cell.")
    dynamically_stable: bool | None = Field(
        None,
        description="No imaginary mode on the mesh and path (acoustic at Gamma above "
        "-gamma_tolerance THz, all others >= 0).",
    )
    n_imaginary: int | None = Field(None, description="Sampled modes that are imaginary.")
    min_frequency: float | None = Field(None, description="Lowest sampled frequency, THz.")
    max_frequency: float | None = Field(None, description="Highest sampled frequency, THz.")
    wall_time: float | None = Field(None, description="Seconds spent on this structure.")

    def to_phonopy(self, store: Any) -> Any:
        """Deprecated: ``esen_flows.stores.load_phonopy(doc, store)``."""
        return _deprecated_reader("load_phonopy", self, store, old="to_phonopy")

    def bands(self, store: Any = None) -> PhononBandStructureSymmLine | None:
        """Deprecated: ``esen_flows.stores.load_band_structure(doc, store)``."""
        return _deprecated_reader("load_band_structure", self, store, old="bands")


class ConductivityDocument(RelaxedCellDocument):
    """Lattice thermal conductivity of one structure (phono3py finite displacements).

    fc2, fc3, the displacement datasets and the mode-resolved conductivity are in the
    additional ``data`` store (``to_phono3py`` and ``mode_data`` read them back), never here:
    fc3 grows with the square of the supercell. A structure found dynamically unstable from
    fc2 gets a document that says so, with no fc3 and no kappa.
    """

    kind: ClassVar[str] = "conductivity"

    symmetry_broken: bool | None = Field(
        None, description="The relaxation changed the space group (Matbench Discovery: SRME 2)."
    )
    supercell_matrix: list[list[int]] | None = Field(None, description="fc3 supercell, 3x3.")
    fc2_supercell_matrix: list[list[int]] | None = Field(None, description="fc2 supercell, 3x3.")
    primitive_matrix: list[list[float]] | None = Field(
        None, description="phono3py's primitive cell in the unit cell's vectors, 3x3."
    )
    n_fc2_displacements: int | None = Field(None, description="fc2 supercells evaluated.")
    n_fc3_displacements: int | None = Field(
        None, description="fc3 supercells evaluated (0 when fc3 was skipped)."
    )
    n_supercell_atoms: int | None = Field(None, description="Atoms per fc3 supercell.")
    mesh: list[int] | None = Field(None, description="q-mesh of the conductivity, Gamma-centred.")
    method: str | None = Field(None, description="'rta' or 'lbte'.")
    wigner: bool | None = Field(None, description="Coherence term included (Wigner equation).")
    isotope: bool | None = Field(None, description="Isotope scattering included.")
    dynamically_stable: bool | None = Field(
        None,
        description="No imaginary mode on the conductivity's q-grid (acoustic at Gamma above "
        "-gamma_tolerance THz, all others >= 0); False means no fc3 and no kappa.",
    )
    n_imaginary: int | None = Field(None, description="Grid modes that are imaginary.")
    min_frequency: float | None = Field(None, description="Lowest grid frequency, THz.")
    max_frequency: float | None = Field(None, description="Highest grid frequency, THz.")
    temperatures: list[float] | None = Field(None, description="Temperatures, K.")
    kappa: list[list[float]] | None = Field(
        None,
        description="Per temperature, the conductivity's 6 Voigt components xx, yy, zz, yz, "
        "xz, xy, W/(m K) (particle plus coherence with wigner).",
    )
    kappa_mean: list[float] | None = Field(
        None, description="Per temperature, (xx + yy + zz) / 3, W/(m K)."
    )
    kappa_particle: list[list[float]] | None = Field(
        None, description="Particle-like part, like kappa, W/(m K)."
    )
    kappa_coherence: list[list[float]] | None = Field(
        None, description="Wave-like coherence part, like kappa, W/(m K) (zero without wigner)."
    )
    wall_time: float | None = Field(None, description="Seconds spent on this structure.")

    def kappa_at(self, temperature: float) -> float:
        """``kappa_mean`` at one of the temperatures (K), W/(m K)."""
        if not self.temperatures or self.kappa_mean is None:
            raise ValueError(f"{self.label}: no conductivity ({self.reason or 'not computed'})")
        temps = np.asarray(self.temperatures)
        i = int(np.argmin(np.abs(temps - temperature)))
        if abs(temps[i] - temperature) > 1e-6:
            raise ValueError(f"{temperature} K is not one of the temperatures computed")
        return self.kappa_mean[i]

    def mode_data(self, store: Any) -> dict[str, np.ndarray]:
        """Deprecated: ``esen_flows.stores.load_mode_data(doc, store)``."""
        return _deprecated_reader("load_mode_data", self, store, old="mode_data")

    def to_phono3py(self, store: Any) -> Any:
        """Deprecated: ``esen_flows.stores.load_phono3py(doc, store)``."""
        return _deprecated_reader("load_phono3py", self, store, old="to_phono3py")


#: The mode-resolved arrays of a conductivity in the data store.
MODE_ARRAYS = (
    "temperatures",
    "mode_kappa",
    "weights",
    "qpoints",
    "frequencies",
    "heat_capacity",
    "gamma",
)


DOCUMENT_KINDS: dict[str, type[ResultDocument]] = {
    "relaxation": RelaxationDocument,
    "stability": StabilityDocument,
    "reference": ReferenceDocument,
    "conservation": ConservationDocument,
    "phonon": PhononDocument,
    "conductivity": ConductivityDocument,
}


def document_class(kind: str) -> type[ResultDocument]:
    """The document class for a ``kind``; a clear error for kinds not (yet) known."""
    try:
        return DOCUMENT_KINDS[kind]
    except KeyError:
        known = ", ".join(sorted(DOCUMENT_KINDS))
        raise ValueError(f"unknown document kind {kind!r}: expected one of {known}") from None
