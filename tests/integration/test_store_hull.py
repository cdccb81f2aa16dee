"""One hull per store: every converged relaxation of a potential and settings, whichever screen
wrote it, computed when asked; checked against pymatgen's PhaseDiagram."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from jobflow import run_locally
from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.core import Composition

from esen_flows.analysis.query import hull_table, latest_per_label, query
from esen_flows.analysis.store_hull import HullSet, hull_set_id, place
from esen_flows.makers import ScreeningMaker
from esen_flows.stores import default_store

LATTICE = {"Cu": 3.61, "Au": 4.08}
CELLS = {  # label -> symbols of a cubic fcc cell (1x1x1) or of two stacked (1x1x2)
    "Cu3Au-L12": ["Au", "Cu", "Cu", "Cu"],
    "CuAu-L10": ["Cu", "Cu", "Au", "Au"],
    "Au3Cu-L12": ["Cu", "Au", "Au", "Au"],
    "Cu3Au-8": ["Au", "Cu", "Cu", "Cu", "Cu", "Au", "Cu", "Cu"],
    "CuAu-8": ["Au", "Au", "Cu", "Cu", "Cu", "Au", "Cu", "Au"],
}
HULL_DEFINING = ("Cu3Au-L12", "CuAu-L10")


def _structures(labels):
    out = []
    for label in labels:
        symbols = CELLS[label]
        a = sum(LATTICE[s] for s in symbols) / len(symbols)
        atoms = bulk("Cu", "fcc", a=a, cubic=True).repeat((1, 1, len(symbols) // 4))
        atoms.set_chemical_symbols(symbols)
        atoms.info["label"] = label
        out.append(atoms)
    return out


def _screen(store, labels):
    flow = ScreeningMaker(potential="emt").make(_structures(labels))
    run_locally(flow, store=store, create_folders=False, log=False)


def _verdicts(store):
    table = hull_table(store)
    return {r.label: (r.stable, r.e_above_hull) for r in table.itertuples()}


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("hulls")
    everything, subset = list(CELLS), [c for c in CELLS if c not in HULL_DEFINING]
    one = default_store(root / "one")
    _screen(one, everything)
    grown = default_store(root / "grown")  # the subset first, then everything
    _screen(grown, subset)
    alone = _verdicts(grown)
    _screen(grown, everything)
    shrunk = default_store(root / "shrunk")  # everything first, then the subset
    _screen(shrunk, everything)
    _screen(shrunk, subset)
    return one, grown, shrunk, alone


def test_overlapping_screens_show_the_hull_of_one_screen_of_everything(stores):
    one, grown, shrunk, alone = stores
    expected = _verdicts(one)
    assert set(expected) == set(CELLS)
    # without the hull-defining compounds, others are on the (smaller) hull: a real change
    changed = {k for k, (stable, _) in alone.items() if stable and not expected[k][0]}
    assert changed, "the subset alone should put some structure on the hull"
    for store in (grown, shrunk):
        got = _verdicts(store)
        assert set(got) == set(expected)
        for label, (stable, e_hull) in expected.items():
            assert got[label][0] == stable, label
            assert got[label][1] == pytest.approx(e_hull, abs=1e-9)


def test_documents_a_screen_writes_use_the_store_hull_and_name_it(stores):
    _, _, shrunk, _ = stores
    expected = _verdicts(stores[0])
    stability = {d.label: d for d in latest_per_label(query(shrunk, "stability"))}
    relaxations = {d.label: d for d in query(shrunk, "relaxation")}
    for label, doc in stability.items():
        assert doc.stable == expected[label][0], label  # second screen, store-wide verdict
        relax = relaxations[label]
        assert doc.settings["hull_set"] == hull_set_id(relax.checksum, relax.settings)


def test_store_hull_equals_pymatgen_on_the_stored_relaxations(stores):
    one = stores[0]
    docs = [d for d in query(one, "relaxation") if d.status == "ok" and d.converged]
    entries = [PDEntry(d.structure.composition, d.energy, name=d.label) for d in docs]
    pd = PhaseDiagram(entries)
    got = _verdicts(one)
    for e in entries:
        if e.name in got:
            expected = pd.get_e_above_hull(e, allow_negative=True)
            assert got[e.name][1] == pytest.approx(max(expected, 0.0), abs=1e-9)


def test_place_matches_pymatgen_on_a_random_ternary():
    """The facet-envelope heights against pymatgen's decomposition, many entries at once."""
    rng = np.random.default_rng(5)
    refs = {"Cu": -3.0, "Au": -2.0, "Ag": -1.5}
    rows = []
    for el, e in refs.items():
        rows.append(_row(el, {el: 1}, e))
    for i in range(300):
        counts = {el: int(n) for el, n in zip(refs, rng.integers(0, 4, 3), strict=True) if n}
        if not counts:
            continue
        comp = Composition(counts)
        mean = sum(comp.get_atomic_fraction(el) * e for el, e in refs.items())
        rows.append(_row(f"x{i}", counts, mean + rng.uniform(-0.2, 0.1)))
    hs = HullSet("test", {r["label"]: r for r in rows})
    docs = place(hs, rows)
    pd = PhaseDiagram(
        [
            PDEntry(
                Composition(r["formula"]),
                r["energy_per_atom"] * Composition(r["formula"]).num_atoms,
                name=r["label"],
            )
            for r in rows
        ]
    )
    for r, d in zip(rows, docs, strict=True):
        comp = Composition(r["formula"])
        entry = PDEntry(comp, r["energy_per_atom"] * comp.num_atoms)
        expected = pd.get_e_above_hull(entry, allow_negative=True)
        assert d.e_above_hull == pytest.approx(
            max(expected, 0.0) if expected > -1e-6 else expected, abs=1e-9
        )
        assert d.stable == (expected <= 1e-6)


def _row(label, counts, e):
    comp = Composition(counts)
    return {
        "kind": "relaxation",
        "label": label,
        "key": f"k-{label}",
        "potential": "test",
        "checksum": "c",
        "settings": {"task": "relax"},
        "status": "ok",
        "formula": comp.reduced_formula,
        "chemsys": comp.chemical_system,
        "energy_per_atom": float(e),
        "converged": True,
        "n_steps": 3,
    }


def test_given_reference_entries_join_the_store_hull(tmp_path):
    """``reference_entries`` are kept in the store, in the screen's hull set: the hull shown
    later still has them, at the energies given."""
    from ase.calculators.emt import EMT
    from pymatgen.entries.computed_entries import ComputedEntry

    energies = {}
    for el, a in (("Cu", 3.59), ("Au", 4.06)):
        atoms = bulk(el, "fcc", a=a)
        atoms.calc = EMT()
        energies[el] = atoms.get_potential_energy()
    refs = [ComputedEntry(Composition(el), e, entry_id=f"given-{el}") for el, e in energies.items()]
    store = default_store(tmp_path / "s")
    flow = ScreeningMaker(potential="emt", reference_entries=refs).make(_structures(["Cu3Au-L12"]))
    run_locally(flow, store=store, create_folders=False, log=False)
    assert not [d for d in query(store, "relaxation") if d.label.startswith("ref-")]
    (row,) = hull_table(store).itertuples()
    assert row.status == "ok" and row.label == "Cu3Au-L12"
    comp = Composition("Cu3Au")
    expected = row.energy_per_atom - sum(
        comp.get_atomic_fraction(el) * e for el, e in energies.items()
    )
    assert row.e_form == pytest.approx(expected, abs=1e-9)
    assert len(query(store, "reference")) == 2
