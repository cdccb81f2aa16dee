"""Duplicate structures, found with pymatgen's ``StructureMatcher``.

A screen relaxes each group of matching inputs once and gives every member the result (its
documents say ``duplicate_of``), and adds no elemental reference that an input already is.

Tolerances (pymatgen's defaults, kept so that a strained or rattled copy of a cell, a
supercell or a rotated setting all match): ``ltol = 0.2`` (fractional length tolerance),
``stol = 0.3`` (site tolerance, in units of (V / n_sites)^(1/3)), ``angle_tol = 5`` degrees,
both cells reduced to primitive first. With a cell relaxation (``scale=True``) the volumes are
scaled to each other before matching: an fcc cell with a = 3.6 A and one with a = 3.7 A relax
to the same cell. Without one (``scale=False``) the cells must agree to 1 % in length and
1 degree (``FIXED_CELL_TOLERANCES``): a fixed cell of another size is another result.
"""

from __future__ import annotations

from collections.abc import Sequence

from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure

from esen_flows.schemas import RelaxationDocument

#: ``StructureMatcher`` tolerances used to call two inputs the same structure.
MATCH_TOLERANCES: dict[str, float] = {"ltol": 0.2, "stol": 0.3, "angle_tol": 5.0}
#: The tolerances when cells are not relaxed (``scale=False``).
FIXED_CELL_TOLERANCES: dict[str, float] = {"ltol": 0.01, "stol": 0.3, "angle_tol": 1.0}
#: Relaxed structures further apart in energy than this (eV/atom) are not compared.
RELAXED_ENERGY_WINDOW = 1e-3


def matcher(scale: bool = True, **tolerances: float) -> StructureMatcher:
    """The ``StructureMatcher`` of a screen: ``MATCH_TOLERANCES`` unless given, primitive
    cells compared, volumes scaled to each other when ``scale`` (cells that will be relaxed)."""
    tol = {**(MATCH_TOLERANCES if scale else FIXED_CELL_TOLERANCES), **tolerances}
    return StructureMatcher(primitive_cell=True, scale=scale, attempt_supercell=False, **tol)


def _matchable(s: Structure) -> bool:
    """Only sound structures are compared: a bad one fails on its own in the relaxation."""
    from esen_flows.io import structure_problem

    return structure_problem(s) is None


def _fit(sm: StructureMatcher, a: Structure, b: Structure) -> bool:
    try:
        return bool(sm.fit(a, b))
    except Exception:  # the matcher's own numerical failures: not shown to be the same
        return False


def find_duplicates(
    structures: Sequence[Structure], scale: bool = True, **tolerances: float
) -> dict[int, int]:
    """Which structures repeat an earlier one.

    Parameters
    ----------
    structures
        Ordered structures.
    scale, tolerances
        As ``matcher``.

    Returns
    -------
    dict
        ``{index: index of the first structure it matches}`` for every structure that matches
        an earlier one; the first of each group is its representative (not a key).
    """
    sm = matcher(scale, **tolerances)
    reps: dict[tuple[str, int], list[int]] = {}
    out: dict[int, int] = {}
    for i, s in enumerate(structures):
        if not _matchable(s):
            continue
        group = reps.setdefault((s.composition.reduced_formula, len(s.composition)), [])
        for j in group:
            if _fit(sm, structures[j], s):
                out[i] = j
                break
        else:
            group.append(i)
    return out


def matches_any(
    structure: Structure, candidates: Sequence[Structure], scale: bool = True
) -> Structure | None:
    """The first of ``candidates`` (same reduced formula) that matches ``structure``."""
    sm = matcher(scale)
    formula = structure.composition.reduced_formula
    for c in candidates:
        same = c.composition.reduced_formula == formula and _matchable(c)
        if same and _fit(sm, c, structure):
            return c
    return None


def relaxed_duplicates(
    docs: Sequence[RelaxationDocument], window: float = RELAXED_ENERGY_WINDOW
) -> dict[str, str]:
    """Converged relaxations that ended in the same structure, though their inputs differed
    (a distorted cell that relaxed back, a Bain-path cell that became fcc).

    Within one formula, relaxations whose energies lie within ``window`` (eV/atom) of each
    other have their relaxed cells compared with ``FIXED_CELL_TOLERANCES`` (same cell to 1 %,
    both from the same potential). Each group's lowest-energy member (then first label) is
    its representative: the others share its verdict on the hull.

    Returns
    -------
    dict
        ``{label: representative's label}`` for every member that is not a representative.
    """
    done = [
        d
        for d in docs
        if d.status == "ok"
        and d.converged
        and d.duplicate_of is None  # a copy of another input's result: already shares it
        and d.structure is not None
        and _matchable(d.structure)
    ]
    done.sort(key=lambda d: (d.formula or "", d.energy_per_atom, d.label))
    sm = matcher(scale=False)
    reps: dict[str, list[RelaxationDocument]] = {}
    out: dict[str, str] = {}
    for d in done:
        group = reps.setdefault(d.formula or "", [])
        for rep in group:
            close = d.energy_per_atom - rep.energy_per_atom <= window
            if close and _fit(sm, rep.structure, d.structure):
                out[d.label] = rep.label
                break
        else:
            group.append(d)
    return out
