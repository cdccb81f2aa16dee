"""Hull stability and classification metrics against pymatgen and hand counts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.core import Composition, Lattice, Structure

from esen_flows.analysis import classification_metrics, compute_stability
from esen_flows.schemas import RelaxationDocument


def _doc(label, species, energy_per_atom, status="ok", converged=True):
    n = len(species)
    structure = Structure(Lattice.cubic(3.0 * n), species, np.linspace(0, 0.9, 3 * n).reshape(n, 3))
    comp = structure.composition
    return RelaxationDocument(
        label=label,
        key=f"k-{label}",
        potential="test",
        checksum="c",
        status=status,
        reason=None if status == "ok" else "boom",
        formula=comp.reduced_formula,
        chemsys=comp.chemical_system,
        n_sites=n,
        structure=structure if status == "ok" else None,
        energy=energy_per_atom * n if status == "ok" else None,
        energy_per_atom=energy_per_atom if status == "ok" else None,
        converged=converged,
    )


def test_matches_phase_diagram_by_hand():
    rng = np.random.default_rng(3)
    docs = [
        _doc("Cu", ["Cu"], -3.0),
        _doc("Au", ["Au"], -2.0),
        _doc("Ag", ["Ag"], -1.5),
    ]
    species_sets = [
        ["Cu", "Au"],
        ["Cu", "Cu", "Au"],
        ["Au", "Au", "Ag"],
        ["Cu", "Au", "Ag"],
        ["Cu", "Ag"],
        ["Cu", "Cu", "Au", "Au"],
        ["Au", "Ag", "Ag", "Ag"],
    ]
    for i, species in enumerate(species_sets):
        mean = np.mean([{"Cu": -3.0, "Au": -2.0, "Ag": -1.5}[s] for s in species])
        docs.append(_doc(f"x{i}", species, mean + rng.uniform(-0.15, 0.1)))
    docs.append(_doc("bad", ["Cu", "Au"], 0.0, status="failed"))
    out = compute_stability(docs, e_hull_max=0.05)
    assert len(out) == len(docs)

    for d, s in zip(docs, out, strict=True):
        if d.status != "ok":
            assert s.status == "failed" and "relaxation failed" in s.reason
            continue
        # by hand: a diagram over the structure's own chemical system
        elements = set(d.chemsys.split("-"))
        members = [
            PDEntry(x.structure.composition, x.energy, name=x.label)
            for x in docs
            if x.status == "ok" and {e.symbol for e in x.structure.composition} <= elements
        ]
        pd = PhaseDiagram(members)
        me = next(m for m in members if m.name == d.label)
        assert s.e_above_hull == pytest.approx(pd.get_e_above_hull(me), abs=1e-9)
        assert s.e_form == pytest.approx(pd.get_form_energy_per_atom(me), abs=1e-9)
        assert s.stable == (pd.get_e_above_hull(me) <= 1e-6)
        assert s.candidate == (pd.get_e_above_hull(me) <= 0.05)


def test_missing_reference_fails_only_that_system():
    docs = [
        _doc("Cu", ["Cu"], -3.0),
        _doc("Au", ["Au"], -2.0),
        _doc("CuAu", ["Cu", "Au"], -2.6),
        _doc("CuPd", ["Cu", "Pd"], -3.0),
    ]
    out = {s.label: s for s in compute_stability(docs)}
    assert out["CuAu"].status == "ok" and out["CuAu"].stable
    assert out["CuPd"].status == "failed" and "no elemental reference for Pd" in out["CuPd"].reason


def test_user_reference_entries_used():
    from pymatgen.entries.computed_entries import ComputedEntry

    refs = [
        ComputedEntry(Composition("Cu"), -3.0),
        ComputedEntry(Composition("Au"), -2.0),
        ComputedEntry(Composition("CuAu"), -6.0),
    ]  # -3.0 eV/atom: far below the candidate
    (s,) = compute_stability([_doc("CuAu-x", ["Cu", "Au"], -2.6)], refs)
    assert s.e_above_hull == pytest.approx(0.4)
    assert not s.stable and not s.candidate


def test_classification_metrics_by_hand():
    pred = [True, True, False, False, True, False]
    ref = [True, False, False, True, True, False]
    m = classification_metrics(pred, ref)
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (2, 1, 2, 1)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["daf"] == pytest.approx((2 / 3) / (3 / 6))
    assert math.isnan(classification_metrics([False], [False])["precision"])
    with pytest.raises(ValueError, match="labels"):
        classification_metrics([True], [True, False])


def test_without_competition_matches_reference_hull():
    """compete=False: each structure against the references' own PhaseDiagram (MBD style)."""
    from pymatgen.entries.computed_entries import ComputedEntry

    refs = [
        ComputedEntry(Composition("Cu"), -3.0),
        ComputedEntry(Composition("Au"), -2.0),
        ComputedEntry(Composition("Cu3Au"), 4 * -2.8),
    ]
    docs = [_doc("a", ["Cu", "Au"], -2.4), _doc("b", ["Cu", "Cu", "Cu", "Au"], -2.85)]
    pd = PhaseDiagram(refs)
    out = compute_stability(docs, refs, compete=False)
    for d, s in zip(docs, out, strict=True):
        entry = PDEntry(d.structure.composition, d.energy)
        _, expected = pd.get_decomp_and_e_above_hull(entry, allow_negative=True)
        assert s.e_above_hull == pytest.approx(expected, abs=1e-9)
    assert out[1].e_above_hull < 0 and out[1].stable
    assert out[0].e_above_hull > 0 and not out[0].stable


def test_unconverged_structure_does_not_shape_the_hull():
    docs = [
        _doc("Cu", ["Cu"], -3.0),
        _doc("Au", ["Au"], -2.0),
        _doc("deep", ["Cu", "Au"], -3.5, converged=False),
        _doc("x", ["Cu", "Au"], -2.6),
    ]
    out = {s.label: s for s in compute_stability(docs)}
    assert out["x"].stable  # "deep" would bury it if it shaped the hull
    assert out["deep"].converged is False and out["deep"].e_above_hull < 0
    # below the hull, yet no verdict: its energy is not a minimum
    assert out["deep"].stable is False and out["deep"].candidate is False
    assert "did not converge" in out["deep"].reason
