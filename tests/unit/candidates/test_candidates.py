"""The candidate generator: deterministic, distinct, ordered binaries and ternaries."""

from __future__ import annotations

import pytest
from pymatgen.analysis.structure_matcher import StructureMatcher

from esen_flows.candidates import FCC_LATTICE_CONSTANTS, generate_candidates


@pytest.mark.slow
def test_candidates_are_deterministic_distinct_alloys():
    first = generate_candidates(max_candidates=24)
    again = generate_candidates(max_candidates=24)
    assert [s.properties["label"] for s in first] == [s.properties["label"] for s in again]
    assert all(s == t for s, t in zip(first, again, strict=True))
    assert len({s.properties["label"] for s in first}) == 24
    for s in first:
        elements = {el.symbol for el in s.composition.elements}
        assert 2 <= len(elements) <= 3 and elements <= set(FCC_LATTICE_CONSTANTS)
    matcher = StructureMatcher()
    by_formula: dict[str, list] = {}
    for s in first:
        by_formula.setdefault(s.composition.reduced_formula, []).append(s)
    for group in by_formula.values():
        assert len(matcher.group_structures(group)) == len(group)  # no two the same crystal
