"""The hull of a whole store, computed when asked.

A store may hold many screens, of one potential or several. The hull that ``hull_table``, the
report and ``esen-flows hull`` show is that of every finished, converged relaxation in the
store computed with the same potential (checksum) and the same relaxation settings: a *hull
set*. Adding structures to a store therefore updates every verdict, and two screens of
overlapping inputs in one store show the same hull as one screen of everything.

Reading is cheap: only the scalar fields of each document are read (no structure is decoded),
and each structure's distance to the hull is the height above the lower envelope of the
diagram's facets, evaluated for all structures of a diagram at once (one pymatgen
``PhaseDiagram`` per top-level chemical system, a ``PatchedPhaseDiagram`` beyond
``MAX_PLAIN_ELEMENTS`` elements).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from jobflow import JobStore
from monty.json import MontyDecoder
from pymatgen.analysis.phase_diagram import PatchedPhaseDiagram, PDEntry, PhaseDiagram
from pymatgen.core import Composition

from esen_flows.analysis.compatibility import (
    check_scheme,
    corrected_references,
    model_correction,
)
from esen_flows.schemas import RelaxationDocument, StabilityDocument, hash_key
from esen_flows.stores import open_store, read_rows

#: Stable means e_above_hull <= 0 within this tolerance, eV/atom (Matbench Discovery).
STABLE_TOL = 1e-6
#: Above this many elements, a chemical system's hull is a ``PatchedPhaseDiagram``.
MAX_PLAIN_ELEMENTS = 6
#: Labels of the elemental references a screen adds (reserved: inputs may not use it).
REFERENCE_PREFIX = "ref-"

#: The fields read from each relaxation (or reference) document to build the hull.
FIELDS = [
    "kind",
    "label",
    "key",
    "potential",
    "checksum",
    "settings",
    "status",
    "reason",
    "formula",
    "chemsys",
    "energy_per_atom",
    "converged",
    "n_steps",
    "max_force",
    "duplicate_of",
    "same_as",
    "created_at",
    "oxide_type",
    "sulfide_type",
    "entry",
    "compatibility",
]


def hull_set_id(checksum: str, settings: dict[str, Any], compatibility: str | None = None) -> str:
    """The identity of a hull set: hash of the potential checksum and relaxation settings
    (and of the compatibility scheme applied to its energies, when one is)."""
    if compatibility is None:
        return hash_key("hull-set", checksum, settings)[:16]
    return hash_key("hull-set", checksum, settings, compatibility)[:16]


#: (reference key, scheme) -> its correction, eV/atom: every hull read would otherwise decode
#: and reprocess every stored reference entry again (the key hashes the entry itself).
_REFERENCE_CORRECTIONS: dict[tuple[str, str], float] = {}


def _reference_correction(row: dict[str, Any], compatibility: str) -> float:
    """What ``compatibility`` adds (eV/atom) to a stored reference's given energy."""
    cache_key = (row["key"], compatibility)
    if cache_key not in _REFERENCE_CORRECTIONS:
        entry = MontyDecoder().process_decoded(row["entry"])
        (fixed,) = corrected_references([entry], compatibility, source=row["label"])
        correction = fixed.energy_per_atom - float(row["energy_per_atom"])
        _REFERENCE_CORRECTIONS[cache_key] = correction
    return _REFERENCE_CORRECTIONS[cache_key]


def corrected(row: dict[str, Any], compatibility: str | None) -> dict[str, Any]:
    """``row`` with its energy per atom under ``compatibility`` (a copy; ``row`` itself when
    none): a model relaxation gets the scheme's correction for its formula and anion type,
    a given reference is processed by the scheme (its own parameters). A row the scheme
    refuses becomes a failed one with the reason."""
    if compatibility is None or row.get("status") != "ok" or row.get("energy_per_atom") is None:
        return row
    out = dict(row)
    try:
        if row.get("kind") == "reference" and row.get("entry") is not None:
            out["energy_correction"] = _reference_correction(row, compatibility)
        else:
            out["energy_correction"] = model_correction(
                row["formula"], compatibility, row.get("oxide_type"), row.get("sulfide_type")
            )
    except ValueError as exc:
        out.update(status="failed", reason=str(exc), refused=True)
        return out
    out["energy_per_atom"] = float(row["energy_per_atom"]) + out["energy_correction"]
    return out


def _created(row: dict[str, Any]) -> datetime:
    value = row.get("created_at")
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.min.replace(tzinfo=UTC)


def _is_relax(row: dict[str, Any]) -> bool:
    return (row.get("settings") or {}).get("task") == "relax"


@dataclass
class HullSet:
    """The relaxations of one potential checksum and one set of relaxation settings.

    Attributes
    ----------
    id
        ``hull_set_id(checksum, settings)``.
    rows
        The newest document of each label (scalar fields only), failed ones included, their
        energies corrected by ``compatibility``.
    compatibility
        The correction scheme applied (``"mp2020"``), or None.
    """

    id: str
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    compatibility: str | None = None
    _diagrams: dict[frozenset[str], Any] = field(default_factory=dict, repr=False)

    @property
    def pool(self) -> list[dict[str, Any]]:
        """The rows that shape the hull: finished (``ok``) and converged, with an energy."""
        return [r for r in self.rows.values() if _shapes(r)]

    def digest(self) -> str:
        """A hash of the pool (labels, formulas, energies): which hull a verdict faced."""
        rows = sorted(
            (r["label"], r["formula"], round(float(r["energy_per_atom"]), 8)) for r in self.pool
        )
        return hash_key(rows)[:16]

    def refs(self) -> dict[str, float]:
        """The lowest energy per atom (eV/atom) of each pure element in the pool."""
        best: dict[str, float] = {}
        for r in self.pool:
            if "-" not in r["chemsys"]:
                el = r["chemsys"]
                best[el] = min(best.get(el, np.inf), float(r["energy_per_atom"]))
        return best


def _shapes(row: dict[str, Any]) -> bool:
    return (
        row.get("status") == "ok"
        and row.get("converged") is True
        and row.get("energy_per_atom") is not None
        and bool(row.get("chemsys"))
        and np.isfinite(float(row["energy_per_atom"]))
    )


def load_hull_sets(
    store: JobStore | str | Path, potential: str | None = None, compatibility: str | None = None
) -> dict[str, HullSet]:
    """Every hull set of a store (relaxations of ``task == "relax"``), optionally of one
    potential (its name); the newest document of each label in each set, its energy
    corrected by ``compatibility`` (``"mp2020"``) when given, else by the scheme the set's
    references were given with (a screen run with ``--compatibility``)."""
    check_scheme(compatibility)
    store = open_store(store)
    criteria: dict[str, Any] = {"kind": {"$in": ["relaxation", "reference"]}}
    if potential is not None:
        criteria["potential"] = potential
    rows = [r for r in read_rows(store, criteria, FIELDS) if _is_relax(r)]
    rows.sort(key=_created, reverse=True)
    stated: dict[str, str] = {}  # set -> the scheme its references were given with
    for r in rows:
        if compatibility is None and r.get("kind") == "reference" and r.get("compatibility"):
            stated.setdefault(hull_set_id(r["checksum"], r["settings"]), r["compatibility"])
    sets: dict[str, HullSet] = {}
    for r in rows:
        scheme = compatibility or stated.get(hull_set_id(r["checksum"], r["settings"]))
        sid = hull_set_id(r["checksum"], r["settings"], scheme)
        hs = sets.setdefault(sid, HullSet(sid, compatibility=scheme))
        name = f"{r.get('kind')}:{r['label']}"
        if name not in hs.rows:
            hs.rows[name] = corrected(r, scheme)
    return sets


def row_of(doc: RelaxationDocument, compatibility: str | None = None) -> dict[str, Any]:
    """The scalar fields of a relaxation document, as ``load_hull_sets`` reads them."""
    row = {f: getattr(doc, f, None) for f in FIELDS}
    row["kind"] = "relaxation"
    return corrected(row, compatibility)


def _envelope(diagram: PhaseDiagram) -> tuple[list[str], np.ndarray]:
    """The diagram's elements and its facets' planes: rows ``(w_1..w_{d-1}, b)`` with
    ``e_hull(x) = max over rows of (w . x + b)`` for fractions ``x`` of elements 2..d."""
    data = np.asarray(diagram.qhull_data)[:, :]
    planes = []
    for facet in diagram.facets:
        pts = data[list(facet)]
        a = np.hstack([pts[:, :-1], np.ones((len(pts), 1))])
        coef, *_ = np.linalg.lstsq(a, pts[:, -1], rcond=None)
        planes.append(coef)
    return [el.symbol for el in diagram.elements], np.asarray(planes)


def _entry(r: dict[str, Any]) -> PDEntry:
    """A ``PDEntry`` of a row: its reduced formula at its energy per atom."""
    comp = Composition(r["formula"])
    return PDEntry(comp, float(r["energy_per_atom"]) * comp.num_atoms, name=r["label"])


def _heights(diagram: Any, rows: Sequence[dict[str, Any]]) -> np.ndarray:
    """Energy above the hull (eV/atom) of each row on ``diagram`` (negative when below)."""
    if isinstance(diagram, PatchedPhaseDiagram):
        out = []
        for r in rows:
            out.append(diagram.get_e_above_hull(_entry(r), allow_negative=True))
        return np.asarray(out, dtype=float)
    elements, planes = _envelope(diagram)
    x = np.zeros((len(rows), len(elements) - 1))
    for i, r in enumerate(rows):
        comp = Composition(r["formula"]).fractional_composition
        x[i] = [comp[el] for el in elements[1:]]
    hull = np.max(x @ planes[:, :-1].T + planes[:, -1], axis=1)
    return np.asarray([float(r["energy_per_atom"]) for r in rows]) - hull


def _diagram(hs: HullSet, elements: frozenset[str], refs: dict[str, float]) -> Any:
    """The diagram of the smallest already-built superset of ``elements``, else a new one."""
    for have, diagram in hs._diagrams.items():
        if elements <= have:
            return diagram
    # only the lowest entry of each composition can touch the hull: pymatgen's own sorting of
    # 10,000 entries would take seconds
    lowest: dict[str, dict[str, Any]] = {}
    for r in hs.pool:
        if set(r["chemsys"].split("-")) <= elements:
            f = r["formula"]
            if f not in lowest or float(r["energy_per_atom"]) < float(lowest[f]["energy_per_atom"]):
                lowest[f] = r
    entries = [_entry(r) for r in lowest.values()]
    cls = PatchedPhaseDiagram if len(elements) > MAX_PLAIN_ELEMENTS else PhaseDiagram
    diagram = cls(entries)
    hs._diagrams[elements] = diagram
    return diagram


def place(
    hs: HullSet,
    rows: Sequence[dict[str, Any]],
    e_hull_max: float = 0.05,
    details: bool = False,
) -> list[StabilityDocument]:
    """Stability documents for ``rows`` (relaxations of this set) on the set's hull.

    Parameters
    ----------
    hs
        The hull set (its pool shapes the hull).
    rows
        Relaxations to place (``row_of`` of documents, or rows of ``hs``).
    e_hull_max
        A converged structure within this distance of the hull (eV/atom) is a ``candidate``.
    details
        Also give each document its decomposition (pymatgen, one call per structure).

    Returns
    -------
    list of StabilityDocument
        In the order of ``rows``; ``settings["hull_set"]`` names the set and
        ``settings["hull"]`` hashes its pool. An unconverged relaxation is placed but never
        ``stable`` nor ``candidate``; a failed one, or one whose chemical system lacks an
        elemental reference in the set, gets a failed document with the reason.
    """
    refs = hs.refs()
    digest = hs.digest()
    settings = {"task": "stability", "e_hull_max": e_hull_max, "hull_set": hs.id, "hull": digest}
    if hs.compatibility is not None:
        settings["compatibility"] = hs.compatibility
    docs: list[StabilityDocument | None] = [None] * len(rows)
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        base = _base(r, settings, e_hull_max)
        if r.get("status") != "ok" or r.get("energy_per_atom") is None or not r.get("chemsys"):
            why = r.get("reason") if r.get("refused") else f"relaxation failed: {r.get('reason')}"
            docs[i] = StabilityDocument(**base, status="failed", reason=why)
            continue
        elements = frozenset(r["chemsys"].split("-"))
        missing = sorted(elements - set(refs))
        if missing:
            reason = f"{r['label']}: no elemental reference for {', '.join(missing)}"
            if r.get("converged") is not True:  # no verdict either way: say both
                reason = f"{_unconverged(r)}; no elemental reference for {', '.join(missing)}"
                docs[i] = StabilityDocument(
                    **base, status="ok", stable=False, candidate=False, reason=reason
                )
            else:
                docs[i] = StabilityDocument(**base, status="failed", reason=reason)
            continue
        groups.setdefault(r["chemsys"], []).append(i)
    # one diagram of every element with a reference: a subsystem's hull is a face of it
    everything = frozenset(refs)
    for members in groups.values():
        diagram = _diagram(hs, everything, refs)
        # a relaxation that ended in another's structure is judged by that one's energy
        heights = _heights(diagram, [_judged_by(hs, rows[i]) for i in members])
        for i, e_hull in zip(members, heights, strict=True):
            docs[i] = _verdict(rows[i], float(e_hull), refs, settings, e_hull_max, diagram, details)
    return [d for d in docs if d is not None]


def _judged_by(hs: HullSet, r: dict[str, Any]) -> dict[str, Any]:
    """The row whose distance to the hull ``r`` takes: its ``same_as`` when that is in the
    set and shapes the hull, else ``r`` itself."""
    target = hs.rows.get(f"relaxation:{r.get('same_as')}") if r.get("same_as") else None
    same = target is not None and target.get("formula") == r.get("formula")
    if same and _shapes(target) and r.get("converged") is True:
        return target
    return r


def _base(r: dict[str, Any], settings: dict[str, Any], e_hull_max: float) -> dict[str, Any]:
    return {
        "label": r["label"],
        "key": hash_key(r["key"], settings["hull_set"], r["label"]),
        "potential": r["potential"],
        "checksum": r["checksum"],
        "settings": settings,
        "formula": r.get("formula"),
        "chemsys": r.get("chemsys"),
        "relaxation_key": r["key"],
        "e_hull_max": e_hull_max,
        "converged": r.get("converged"),
        "n_steps": r.get("n_steps"),
        "duplicate_of": r.get("duplicate_of"),
        "same_as": r.get("same_as"),
        "energy_correction": r.get("energy_correction"),
    }


def _unconverged(r: dict[str, Any]) -> str:
    force = r.get("max_force")
    return f"{r['label']}: relaxation did not converge in {r.get('n_steps')} steps" + (
        f", largest force {force:.3g} eV/A" if force is not None else ""
    )


def _verdict(r, e_hull, refs, settings, e_hull_max, diagram, details) -> StabilityDocument:
    if -STABLE_TOL < e_hull < 0.0:
        e_hull = 0.0
    comp = Composition(r["formula"]).fractional_composition
    e = float(r["energy_per_atom"])
    e_form = e - sum(comp[el] * refs[el] for el in map(str, comp.elements))
    converged = r.get("converged") is True
    reason = None if converged else f"{_unconverged(r)}; not stable nor a candidate"
    decomposition = None
    if details and not isinstance(diagram, PatchedPhaseDiagram):
        decomp, _ = diagram.get_decomp_and_e_above_hull(_entry(r), allow_negative=True)
        decomposition = {
            f"{ph.composition.reduced_formula} ({ph.name})": float(x) for ph, x in decomp.items()
        }
    return StabilityDocument(
        **_base(r, settings, e_hull_max),
        energy_per_atom=e,
        e_form=float(e_form),
        e_above_hull=e_hull,
        stable=converged and e_hull <= STABLE_TOL,
        candidate=converged and e_hull <= e_hull_max,
        reason=reason,
        decomposition=decomposition,
        references={el: refs[el] for el in map(str, comp.elements)},
    )


def store_stability(
    store: JobStore | str | Path,
    potential: str | None = None,
    e_hull_max: float = 0.05,
    labels: Iterable[str] | None = None,
    include_references: bool = False,
    compatibility: str | None = None,
) -> list[StabilityDocument]:
    """The stability of every structure in a store against the hull of its hull set.

    Parameters
    ----------
    store
        A ``JobStore`` or the folder of an embedded store.
    potential
        Only relaxations of this potential (its name).
    e_hull_max
        Candidate threshold, eV/atom.
    labels
        Only these labels (all by default).
    include_references
        Also the elemental references a screen added (``ref-<El>-<lattice>``).
    compatibility
        Correct model energies and given references with this scheme (``"mp2020"``, see
        ``esen_flows.analysis.compatibility``) before building the hulls.

    Returns
    -------
    list of StabilityDocument
        One per label: its newest relaxation, placed on the hull of that relaxation's set.
    """
    sets = load_hull_sets(store, potential, compatibility)
    wanted = None if labels is None else set(labels)
    newest: dict[str, tuple[datetime, str]] = {}
    for sid, hs in sets.items():
        for name, r in hs.rows.items():
            if not name.startswith("relaxation:"):
                continue
            label = r["label"]
            if wanted is not None and label not in wanted:
                continue
            if label.startswith(REFERENCE_PREFIX) and not include_references:
                continue
            if label not in newest or _created(r) > newest[label][0]:
                newest[label] = (_created(r), sid)
    out: list[StabilityDocument] = []
    by_set: dict[str, list[dict[str, Any]]] = {}
    for label, (_, sid) in newest.items():
        by_set.setdefault(sid, []).append(sets[sid].rows[f"relaxation:{label}"])
    for sid, rows in by_set.items():
        out.extend(place(sets[sid], rows, e_hull_max))
    return out
