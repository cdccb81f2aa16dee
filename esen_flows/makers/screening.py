"""The screen: batched relaxations, then one convex-hull job."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from jobflow import Flow, JobStore, Maker, Response
from pymatgen.core import Structure
from pymatgen.entries.computed_entries import ComputedEntry

from esen_flows.analysis.compatibility import SCHEMES, check_scheme, corrected_references
from esen_flows.analysis.duplicates import find_duplicates, matches_any, relaxed_duplicates
from esen_flows.analysis.hull import compute_stability, elemental_references, entry_from_document
from esen_flows.analysis.store_hull import (
    REFERENCE_PREFIX,
    HullSet,
    hull_set_id,
    load_hull_sets,
    place,
    row_of,
)
from esen_flows.io import StructureInput, UnreadableInput, get_label, load_structures, with_label
from esen_flows.makers.base import current_store, esen_job
from esen_flows.makers.conductivity import ThermalConductivityMaker
from esen_flows.makers.phonons import PhononMaker
from esen_flows.makers.relax import BatchRelaxMaker
from esen_flows.potentials import check_potential
from esen_flows.schemas import (
    PhononDocument,
    ReferenceDocument,
    RelaxationDocument,
    StabilityDocument,
    hash_key,
)
from esen_flows.stores import data_store, find_documents, save_documents

Relaxed = RelaxationDocument | dict[str, str]


def relaxation_documents(items: list[Relaxed], store: JobStore | None) -> list[RelaxationDocument]:
    """Documents for job outputs that are documents or ``{"key", "label"}`` references (of a
    ``BatchRelaxMaker(output_keys=True)``), the latter read from the results store at once."""
    refs = [(d["key"], d["label"]) for d in items if isinstance(d, dict)]
    found: dict[tuple[str, str], RelaxationDocument] = {}
    if refs:
        if store is None:
            raise ValueError("relaxation results given by key need the job store to read them")
        keys = sorted({key for key, _ in refs})
        found = {(d.key, d.label): d for d in find_documents(store, "relaxation", keys=keys)}
        missing = [f"{label} ({key})" for key, label in refs if (key, label) not in found]
        if missing:
            raise LookupError(
                f"{len(missing)} relaxation results are not in the results store: "
                + ", ".join(missing[:5])
            )
    return [found[(d["key"], d["label"])] if isinstance(d, dict) else d for d in items]


@esen_job(data=True)
def stability_job(
    relaxations: list[list[Relaxed]],
    references: list[Relaxed] | None = None,
    reference_entries: list[ComputedEntry] | None = None,
    e_hull_max: float = 0.05,
    compete: bool = True,
    duplicates: list[Structure] | None = None,
    duplicate_of: dict[str, str] | None = None,
    compatibility: str | None = None,
) -> list[StabilityDocument]:
    """Place every relaxed structure on the convex hull of its chemical system.

    Parameters
    ----------
    relaxations
        The outputs of the batch relaxation jobs: lists of documents, or of their
        ``{"key", "label"}`` (read from the results store in one query).
    references
        Relaxed elemental references (fcc, bcc, hcp), the same way; the lowest per element is
        used.
    reference_entries
        User-supplied competing phases (computed with the same potential).
    e_hull_max
        Candidate threshold, eV/atom.
    compete
        Screened structures join the hull (True) or face the references alone (False).
    duplicates, duplicate_of
        Inputs that were not relaxed because they match another (label -> its label): each
        gets a copy of that one's relaxation, with ``duplicate_of`` set, saved to the store.
    compatibility
        Correct model energies and ``reference_entries`` with this scheme (``"mp2020"``).
    """
    store = current_store()
    if store is not None:
        # the output (one document per structure, tens of MB for a large screen) goes to the
        # data store (``data=True``; GridFS in production): a MongoDB document holds 16 MB
        data_store(store)
    screened = [d for batch in relaxations for d in batch]
    every = relaxation_documents(screened + list(references or []), store)  # one store read
    docs, refs = every[: len(screened)], every[len(screened) :]
    copies = duplicate_documents(docs, duplicates or [], duplicate_of or {})
    if store is not None and copies:
        save_documents(store, copies)
    docs = docs + copies
    docs = share_relaxed_duplicates(docs, store)
    if store is None or not compete:  # this screen's own hull
        entries = list(reference_entries or [])
        if compatibility is not None and entries:
            entries = corrected_references(entries, compatibility)
        entries += [entry_from_document(d, compatibility) for d in refs if d.status == "ok"]
        stability = compute_stability(
            docs, entries, e_hull_max=e_hull_max, compete=compete, compatibility=compatibility
        )
    else:  # the hull of everything the store holds for this potential and settings
        stability = store_wide_stability(
            store, docs, reference_entries or [], e_hull_max, compatibility
        )
    if store is not None:
        save_documents(store, stability)
    return stability


def duplicate_documents(
    docs: list[RelaxationDocument], duplicates: list[Structure], duplicate_of: dict[str, str]
) -> list[RelaxationDocument]:
    """A relaxation document for each duplicate input: its representative's result (same key,
    energy and relaxed structure) under its own label and input, with ``duplicate_of``."""
    by_label = {d.label: d for d in docs}
    out = []
    for s in duplicates:
        label = get_label(s)
        rep = by_label[duplicate_of[label]]
        relaxed = rep.structure
        if relaxed is not None:
            relaxed = with_label(relaxed, label)
        reason = rep.reason if rep.status == "ok" else f"{label}: as {rep.label}: {rep.reason}"
        out.append(
            rep.model_copy(
                update={
                    "label": label,
                    "duplicate_of": rep.label,
                    "input_structure": s,
                    "structure": relaxed,
                    "reason": reason,
                    "created_at": datetime.now(UTC),
                }
            )
        )
    return out


def share_relaxed_duplicates(
    docs: list[RelaxationDocument], store: JobStore | None
) -> list[RelaxationDocument]:
    """``docs`` with ``same_as`` set on relaxations that ended in the structure of another
    (``relaxed_duplicates``); those changed are saved to the store (newest wins)."""
    same = relaxed_duplicates(docs)
    changed = []
    out = []
    for d in docs:
        if same.get(d.label) != d.same_as:
            d = d.model_copy(update={"same_as": same.get(d.label), "created_at": datetime.now(UTC)})
            changed.append(d)
        out.append(d)
    if store is not None and changed:
        save_documents(store, changed)
    return out


def store_wide_stability(
    store: JobStore,
    docs: list[RelaxationDocument],
    reference_entries: list[ComputedEntry],
    e_hull_max: float,
    compatibility: str | None = None,
) -> list[StabilityDocument]:
    """Place ``docs`` on the hull of every finished, converged relaxation in ``store`` with
    their potential checksum and settings (their hull set), the given ``reference_entries``
    saved into that set first. Each document's ``settings["hull_set"]`` names the set and
    ``settings["hull"]`` hashes the entries it held; energies corrected by ``compatibility``
    when given."""
    if reference_entries and docs:
        save_documents(store, reference_documents(reference_entries, docs[0], compatibility))
    sets = load_hull_sets(store, docs[0].potential if docs else None, compatibility)
    groups: dict[str, list[int]] = {}  # hull set -> the docs placed on it, in one call
    for i, d in enumerate(docs):
        schemes = [compatibility] if compatibility is not None else [None, *SCHEMES]
        ids = [hull_set_id(d.checksum, d.settings, scheme) for scheme in schemes]
        sid = next((x for x in ids if x in sets), ids[0])  # None: the scheme the set states
        if sid not in sets:
            sets[sid] = HullSet(sid, compatibility=compatibility)
        groups.setdefault(sid, []).append(i)
    out: list[StabilityDocument | None] = [None] * len(docs)
    for sid, members in groups.items():
        hs = sets[sid]
        rows = [row_of(docs[i], hs.compatibility) for i in members]
        for i, s in zip(members, place(hs, rows, e_hull_max, details=True), strict=True):
            out[i] = s.model_copy(update={"structure": docs[i].structure})
    return [s for s in out if s is not None]


def reference_documents(
    entries: list[ComputedEntry], like: RelaxationDocument, compatibility: str | None = None
) -> list[ReferenceDocument]:
    """The given competing phases as documents of ``like``'s potential and settings, saying
    which correction scheme the screen applied to them."""
    out = []
    for i, e in enumerate(entries):
        comp = e.composition
        label = f"{comp.reduced_formula}-{e.entry_id or i}"
        out.append(
            ReferenceDocument(
                label=label,
                key=hash_key(e.as_dict(), like.checksum, like.settings),
                potential=like.potential,
                checksum=like.checksum,
                settings=like.settings,
                formula=comp.reduced_formula,
                chemsys=comp.chemical_system,
                energy_per_atom=e.energy_per_atom,
                entry=e.as_dict(),
                compatibility=compatibility,
            )
        )
    return out


def _batched(maker: Maker, structures: list[Structure], size: int, what: str) -> Response:
    """Replace the calling job by ceil(n / ``size``) jobs of ``maker`` (named "``what`` b/N")."""
    if not structures:
        return Response(output=[])
    n_batches = math.ceil(len(structures) / size)
    jobs = [
        replace(maker, name=f"{what} {b + 1}/{n_batches}").make(
            structures[b * size : (b + 1) * size]
        )
        for b in range(n_batches)
    ]
    return Response(replace=Flow(jobs, output=[j.output for j in jobs], name=what))


@esen_job
def phonon_stage(
    stability: list[StabilityDocument], phonon_maker: PhononMaker, batch_size: int = 50
) -> Response:
    """Phonons for the candidates (within ``e_hull_max`` of the hull), added at run time: the
    job replaces itself with ceil(n / ``batch_size``) ``PhononMaker`` jobs."""
    candidates = [
        with_label(d.structure, d.label)
        for d in stability
        if d.status == "ok" and d.candidate and d.structure is not None
    ]
    return _batched(phonon_maker, candidates, batch_size, "phonons")


@esen_job
def conductivity_stage(
    previous: list[StabilityDocument] | list[list[PhononDocument]],
    maker: ThermalConductivityMaker,
    batch_size: int = 20,
) -> Response:
    """Conductivity added at run time: for the dynamically stable phonon results (their
    relaxed cells), or, after the hull directly, for the candidates (the maker's own fc2 check
    then spares the unstable ones their fc3). Replaces itself with ceil(n / ``batch_size``)
    ``ThermalConductivityMaker`` jobs."""
    flat = [d for item in previous for d in (item if isinstance(item, list) else [item])]
    chosen = [
        with_label(d.structure, d.label)
        for d in flat
        if d.status == "ok"
        and d.structure is not None
        and (d.dynamically_stable if isinstance(d, PhononDocument) else d.candidate)
    ]
    return _batched(maker, chosen, batch_size, "conductivity")


@dataclass
class ScreeningMaker(Maker):
    """Relax many candidates in batches and compute their convex-hull stability.

    The flow has ceil(n / batch_size) relaxation jobs, one job relaxing the elemental
    references (fcc, bcc, hcp of every element screened; skipped when ``reference_entries`` are
    given) and one hull job; with ``phonons=True`` a job that, once the hull is known, replaces
    itself with ceil(candidates / ``phonon_batch_size``) ``PhononMaker`` jobs; with
    ``conductivity=True`` a last one that replaces itself with ``ThermalConductivityMaker`` jobs
    for the dynamically stable.

    Parameters
    ----------
    name
        Flow name.
    potential
        Potential name for ``get_potential``.
    e_hull_max
        Structures within this distance of the hull (eV/atom) are ``candidate``s.
    batch_size
        Structures per relaxation job.
    relax_maker
        Relaxation settings; its ``potential`` is replaced by this maker's.
    reference_entries
        Competing phases computed with the same potential (e.g. ``ComputedEntry``s read from
        JSON); they replace the elemental reference relaxations.
    compete
        True (default): the hull holds the references and every screened structure. False:
        each structure faces the references' hull alone, as Matbench Discovery scores it
        (``e_above_hull`` may then be negative).
    compatibility
        ``"mp2020"``: model energies and ``reference_entries`` (e.g. Materials Project
        ``ComputedStructureEntry``s) corrected with ``MaterialsProject2020Compatibility``, as
        Matbench Discovery does (``esen_flows.analysis.compatibility``); None: as computed.
    phonons
        After the hull, phonons (``phonon_maker``) for every candidate, in jobs of
        ``phonon_batch_size`` structures added at run time.
    phonon_maker
        Phonon settings; its ``potential`` is replaced by this maker's.
    phonon_batch_size
        Structures per phonon job.
    conductivity
        Lattice thermal conductivity (``conductivity_maker``) for the dynamically stable
        phonon results (or, without ``phonons``, for the candidates: the maker's fc2 check skips
        the unstable), in jobs of ``conductivity_batch_size`` added at run time.
    conductivity_maker
        Conductivity settings; its ``potential`` is replaced by this maker's.
    conductivity_batch_size
        Structures per conductivity job.
    deduplicate
        Inputs that match an earlier one (pymatgen ``StructureMatcher``, tolerances in
        ``esen_flows.analysis.duplicates``) are relaxed once: each gets the first one's result,
        with ``duplicate_of`` naming it. False relaxes every input.

    Examples
    --------
    >>> import tempfile
    >>> from ase.build import bulk
    >>> from jobflow import run_locally
    >>> from esen_flows.analysis import hull_table
    >>> from esen_flows.stores import default_store
    >>> store = default_store(tempfile.mkdtemp())
    >>> cu3au = bulk("Cu", "fcc", a=3.75, cubic=True)
    >>> cu3au[0].symbol = "Au"
    >>> cu3au.info["label"] = "Cu3Au"
    >>> flow = ScreeningMaker(potential="emt").make([cu3au])
    >>> _ = run_locally(flow, store=store, create_folders=False, log=False)
    >>> hull_table(store)[["label", "stable", "converged"]].to_dict("records")
    [{'label': 'Cu3Au', 'stable': True, 'converged': True}]

    Raises
    ------
    ValueError
        From ``make()``: bad batch sizes or relaxation settings, no structure, a label
        starting with ``ref-`` (reserved for the elemental references), an unknown
        compatibility or references it refuses.
    """

    name: str = "screen"
    potential: str = "emt"
    e_hull_max: float = 0.05
    batch_size: int = 100
    relax_maker: BatchRelaxMaker = field(default_factory=BatchRelaxMaker)
    reference_entries: list[ComputedEntry] | None = None
    compete: bool = True
    phonons: bool = False
    phonon_maker: PhononMaker = field(default_factory=PhononMaker)
    phonon_batch_size: int = 50
    conductivity: bool = False
    conductivity_maker: ThermalConductivityMaker = field(default_factory=ThermalConductivityMaker)
    conductivity_batch_size: int = 20
    deduplicate: bool = True
    compatibility: str | None = None

    def make(self, structures: StructureInput | list[StructureInput]) -> Flow:
        """The screening flow for ``structures`` (Structures, Atoms, files or folders)."""
        for name in ("batch_size", "phonon_batch_size", "conductivity_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name, maker, kind in (
            ("relax_maker", self.relax_maker, BatchRelaxMaker),
            ("phonon_maker", self.phonon_maker, PhononMaker),
            ("conductivity_maker", self.conductivity_maker, ThermalConductivityMaker),
        ):
            if not isinstance(maker, kind):
                raise TypeError(f"{name} must be a {kind.__name__}, got {type(maker).__name__}")
        check_scheme(self.compatibility)
        if self.compatibility is not None and self.reference_entries:
            corrected_references(self.reference_entries, self.compatibility)  # refused: now
        # an unknown potential fails here, as on the command line, not as a flow doing nothing
        check_potential(
            self.potential, device=self.relax_maker.device, dtype=self.relax_maker.dtype
        )
        items: list[Structure | UnreadableInput] = load_structures(structures)
        if not items:
            raise ValueError("nothing to screen: no structure was given")
        for item in items:
            if (get_label(item) or "").startswith(REFERENCE_PREFIX):
                raise ValueError(
                    f"label {get_label(item)!r}: labels starting with {REFERENCE_PREFIX!r} are "
                    "reserved for the elemental references a screen adds; rename the structure"
                )
        # the hull reads the relaxed documents from the results store: small job outputs
        relax = replace(self.relax_maker, potential=self.potential, output_keys=True)
        scale = relax.settings.relax_cell  # cells that will be relaxed match at any volume
        duplicate_of: dict[str, str] = {}
        if self.deduplicate:
            found = [s for s in items if isinstance(s, Structure)]
            for i, j in find_duplicates(found, scale=scale).items():
                duplicate_of[get_label(found[i])] = get_label(found[j])
        duplicates = [s for s in items if get_label(s) in duplicate_of]
        items = [s for s in items if get_label(s) not in duplicate_of]
        n_batches = math.ceil(len(items) / self.batch_size)
        jobs = []
        for b in range(n_batches):
            chunk = items[b * self.batch_size : (b + 1) * self.batch_size]
            jobs.append(replace(relax, name=f"relax {b + 1}/{n_batches}").make(chunk))
        ref_job = None
        if not self.reference_entries:
            labels = {get_label(s) for s in items}
            elements = {
                el.symbol
                for s in items
                if isinstance(s, Structure)
                for el in s.composition.elements
            }
            elemental = [
                s for s in items if isinstance(s, Structure) and len(s.composition) == 1
            ]  # no reference where an input already is that structure
            refs = [
                r
                for r in elemental_references(elements)
                if get_label(r) not in labels and matches_any(r, elemental, scale) is None
            ]
            if refs:
                ref_job = replace(relax, name="relax references").make(refs)
                jobs.append(ref_job)
        hull = stability_job(
            [j.output for j in jobs if j is not ref_job],
            references=ref_job.output if ref_job is not None else None,
            reference_entries=self.reference_entries,
            e_hull_max=self.e_hull_max,
            compete=self.compete,
            duplicates=duplicates,
            duplicate_of=duplicate_of,
            compatibility=self.compatibility,
        )
        hull.name = "hull"
        stages = [*jobs, hull]
        if self.phonons:
            phonon_maker = replace(self.phonon_maker, potential=self.potential)
            stage = phonon_stage(hull.output, phonon_maker, self.phonon_batch_size)
            stage.name = "phonon stage"
            stages.append(stage)
        if self.conductivity:
            kappa_maker = replace(self.conductivity_maker, potential=self.potential)
            previous = stages[-1].output  # the phonon stage's (once replaced) or the hull's
            kstage = conductivity_stage(previous, kappa_maker, self.conductivity_batch_size)
            kstage.name = "conductivity stage"
            stages.append(kstage)
        return Flow(stages, output=hull.output, name=self.name)
