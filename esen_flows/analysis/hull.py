"""Convex-hull stability with pymatgen ``PhaseDiagram``, one diagram per chemical system."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Sequence

from pymatgen.analysis.phase_diagram import PhaseDiagram
from pymatgen.core import Element, Lattice, Structure
from pymatgen.entries.computed_entries import ComputedEntry, ComputedStructureEntry

from esen_flows.analysis.compatibility import model_correction
from esen_flows.schemas import RelaxationDocument, StabilityDocument, make_key

#: Matbench Discovery: stable means e_above_hull <= 0, within this numerical tolerance (eV/atom).
STABLE_TOL = 1e-6

PROTOTYPES = ("fcc", "bcc", "hcp")


def elemental_references(elements: Iterable[str]) -> list[Structure]:
    """fcc, bcc and hcp cells of each element, labelled ``ref-<El>-<lattice>``.

    The starting lattice constants come from the metallic (else atomic) radius; the
    relaxation with the cell filter finds the potential's own.
    """
    out = []
    for symbol in sorted(set(elements)):
        el = Element(symbol)
        radius = el.metallic_radius or el.atomic_radius or 1.4
        radius = float(radius)
        cells = {
            "fcc": Structure(
                Lattice.cubic(2 * math.sqrt(2) * radius),
                [symbol] * 4,
                [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
            ),
            "bcc": Structure(
                Lattice.cubic(4 * radius / math.sqrt(3)), [symbol] * 2, [[0, 0, 0], [0.5, 0.5, 0.5]]
            ),
            "hcp": Structure(
                Lattice.hexagonal(2 * radius, 2 * radius * math.sqrt(8 / 3)),
                [symbol] * 2,
                [[1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]],
            ),
        }
        for proto in PROTOTYPES:
            s = cells[proto]
            s.properties = {"label": f"ref-{symbol}-{proto}"}
            out.append(s)
    return out


def entry_from_document(
    doc: RelaxationDocument, compatibility: str | None = None
) -> ComputedStructureEntry:
    """A pymatgen entry (total energy, eV) for a successful relaxation, id = its label; its
    energy corrected by ``compatibility`` (``"mp2020"``) when given (``ValueError`` when the
    scheme refuses the composition)."""
    energy = doc.energy
    if compatibility is not None:
        energy += len(doc.structure) * correction_of(doc, compatibility)
    return ComputedStructureEntry(doc.structure, energy, entry_id=doc.label, data={"key": doc.key})


def correction_of(doc: RelaxationDocument, compatibility: str) -> float:
    """The correction (eV/atom) ``compatibility`` adds to a relaxation's energy."""
    return model_correction(doc.formula, compatibility, doc.oxide_type, doc.sulfide_type)


def lowest_elemental(entries: Iterable[ComputedEntry]) -> dict[str, ComputedEntry]:
    """The lowest-energy (per atom) entry of each pure element among ``entries``."""
    best: dict[str, ComputedEntry] = {}
    for e in entries:
        if len(e.composition.elements) != 1:
            continue
        el = e.composition.elements[0].symbol
        if el not in best or e.energy_per_atom < best[el].energy_per_atom:
            best[el] = e
    return best


def unconverged_reason(doc: RelaxationDocument) -> str:
    """Why an unconverged relaxation gets no verdict (one line, naming the structure)."""
    force = f", largest force {doc.max_force:.3g} eV/A" if doc.max_force is not None else ""
    return (
        f"{doc.label}: relaxation did not converge in {doc.n_steps} steps{force}; "
        "not stable nor a candidate"
    )


def _hull_hash(entries: Sequence[ComputedEntry]) -> str:
    rows = sorted(
        (str(e.entry_id), e.composition.formula, round(e.energy_per_atom, 8)) for e in entries
    )
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]


def compute_stability(
    relaxations: Sequence[RelaxationDocument],
    reference_entries: Sequence[ComputedEntry] = (),
    e_hull_max: float = 0.05,
    compete: bool = True,
    compatibility: str | None = None,
) -> list[StabilityDocument]:
    """Formation energy, energy above hull, ``stable`` and ``candidate`` for each relaxation.

    Parameters
    ----------
    relaxations
        Screened structures; failed ones give failed stability documents. One that hit the
        step limit is placed on the hull without shaping it (``converged=False``) and is
        never ``stable`` nor a ``candidate``: its energy is not a minimum.
    reference_entries
        Competing phases computed with the same potential: at least one entry per element of
        every chemical system screened (the lowest per element is its reference). Taken as
        given: process DFT references with ``corrected_references`` first.
    e_hull_max
        A structure within this distance of the hull (eV/atom) is a ``candidate``.
    compete
        True: the hull is built from the references AND all screened structures, so a
        structure is stable when nothing screened or known beats it (e_above_hull >= 0).
        False: the hull of the references alone, as Matbench Discovery scores predictions
        against the Materials Project hull (e_above_hull may be negative).
    compatibility
        Correct the relaxations' energies with this scheme (``"mp2020"``) before placing them.

    Returns
    -------
    list of StabilityDocument
        One per relaxation, in order. Each structure is placed on the diagram of its own
        chemical system (all entries whose elements are a subset of its elements).
    """
    ok = [d for d in relaxations if d.status == "ok" and d.structure is not None]
    refused: dict[str, str] = {}
    candidate_entries = {}
    for d in ok:
        try:
            candidate_entries[d.label] = entry_from_document(d, compatibility)
        except ValueError as exc:
            refused[d.label] = f"{d.label}: {exc}"
    ok = [d for d in ok if d.label in candidate_entries]
    pool: list[ComputedEntry] = list(reference_entries)
    if compete:  # an unconverged relaxation is placed on the hull but does not shape it
        pool += [candidate_entries[d.label] for d in ok if d.converged]
    refs = lowest_elemental(pool)
    diagrams: dict[str, tuple[PhaseDiagram | None, str, str | None]] = {}

    def diagram(chemsys: str) -> tuple[PhaseDiagram | None, str, str | None]:
        if chemsys not in diagrams:
            elements = set(chemsys.split("-"))
            missing = sorted(elements - set(refs))
            members = [e for e in pool if {el.symbol for el in e.composition.elements} <= elements]
            if missing:
                diagrams[chemsys] = (None, "", f"no elemental reference for {', '.join(missing)}")
            else:
                diagrams[chemsys] = (PhaseDiagram(members), _hull_hash(members), None)
        return diagrams[chemsys]

    out = []
    for d in relaxations:
        base = {
            "label": d.label,
            "potential": d.potential,
            "checksum": d.checksum,
            "formula": d.formula,
            "chemsys": d.chemsys,
            "relaxation_key": d.key,
            "e_hull_max": e_hull_max,
            "converged": d.converged,
            "n_steps": d.n_steps,
        }
        if d.label in refused:
            settings = {
                "task": "stability",
                "e_hull_max": e_hull_max,
                "compatibility": compatibility,
            }
            out.append(
                StabilityDocument(
                    **base,
                    key=f"{d.key}-stability",
                    settings=settings,
                    status="failed",
                    reason=refused[d.label],
                )
            )
            continue
        if d.status != "ok" or d.structure is None:
            settings = {"task": "stability", "e_hull_max": e_hull_max}
            out.append(
                StabilityDocument(
                    **base,
                    key=f"{d.key}-stability",
                    settings=settings,
                    status="failed",
                    reason=f"relaxation failed: {d.reason}",
                )
            )
            continue
        pd, hull_hash, problem = diagram(d.chemsys)
        settings = {
            "task": "stability",
            "e_hull_max": e_hull_max,
            "hull": hull_hash,
            "compete": compete,
        }
        if compatibility is not None:
            settings["compatibility"] = compatibility
        key = make_key(d.structure, d.checksum, {**settings, "relaxation_key": d.key})
        if pd is None:
            out.append(
                StabilityDocument(
                    **base,
                    key=key,
                    settings=settings,
                    status="failed",
                    reason=f"{d.label}: {problem}",
                    structure=d.structure,
                )
            )
            continue
        entry = candidate_entries[d.label]
        decomp, e_hull = pd.get_decomp_and_e_above_hull(entry, allow_negative=True)
        e_hull = float(e_hull)
        if -STABLE_TOL < e_hull < 0.0:
            e_hull = 0.0
        el_refs = {el.symbol: refs[el.symbol].energy_per_atom for el in entry.composition}
        out.append(
            StabilityDocument(
                **base,
                key=key,
                settings=settings,
                energy_per_atom=entry.energy_per_atom,
                energy_correction=(
                    None if compatibility is None else correction_of(d, compatibility)
                ),
                e_form=float(pd.get_form_energy_per_atom(entry)),
                e_above_hull=e_hull,
                stable=d.converged and e_hull <= STABLE_TOL,
                candidate=d.converged and e_hull <= e_hull_max,
                reason=None if d.converged else unconverged_reason(d),
                decomposition={
                    f"{ph.composition.reduced_formula} ({ph.entry_id})": float(x)
                    for ph, x in decomp.items()
                },
                references=el_refs,
                structure=d.structure,
            )
        )
    return _share_verdicts(relaxations, out)


def _share_verdicts(
    relaxations: Sequence[RelaxationDocument], out: list[StabilityDocument]
) -> list[StabilityDocument]:
    """A converged relaxation whose ``same_as`` names another placed here takes that one's
    distance to the hull and verdict (its own energy and formation energy are kept)."""
    by_label = {o.label: o for o in out}
    for i, d in enumerate(relaxations):
        rep = by_label.get(d.same_as) if d.same_as else None
        if rep is None or rep.e_above_hull is None or not d.converged or out[i].status != "ok":
            continue
        out[i] = out[i].model_copy(
            update={
                "same_as": d.same_as,
                "e_above_hull": rep.e_above_hull,
                "stable": rep.stable,
                "candidate": rep.candidate,
            }
        )
    return out
