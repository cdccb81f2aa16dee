"""Duplicates judged alike: the screen's hull against pymatgen's PhaseDiagram on the same
structures relaxed by ASE's FIRE(FrechetCellFilter) directly, duplicates included."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.filters import FrechetCellFilter
from ase.optimize import FIRE
from jobflow import run_locally
from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.core import Composition

from esen_flows.analysis.duplicates import find_duplicates
from esen_flows.analysis.query import hull_table, query
from esen_flows.io import to_structure
from esen_flows.makers import ScreeningMaker
from esen_flows.stores import default_store


def _fcc(symbols, a, rep=(1, 1, 1)):
    atoms = bulk("Cu", "fcc", a=a, cubic=True).repeat(rep)
    atoms.set_chemical_symbols(symbols)
    return atoms


def _inputs() -> tuple[dict, dict[str, str]]:
    """Labelled Atoms: fcc, bcc and hcp of Cu and Au (so the screen needs no reference of its
    own), some alloys, and duplicates of both elements and alloys (another cell, another
    lattice constant, a rotation). Returns them and {duplicate: the input it repeats}."""
    cu3au = _fcc(["Au", "Cu", "Cu", "Cu"], 3.75)
    rotated = cu3au.copy()
    rotated.rotate(30, "z", rotate_cell=True)
    rotated.positions += 0.2
    atoms = {
        "Au-fcc": bulk("Au", "fcc", a=4.0),
        "Au-bcc": bulk("Au", "bcc", a=3.3),
        "Au-hcp": bulk("Au", "hcp", a=2.9, c=4.8),
        "Cu-fcc": bulk("Cu", "fcc", a=3.6),
        "Cu-bcc": bulk("Cu", "bcc", a=2.9),
        "Cu-hcp": bulk("Cu", "hcp", a=2.6, c=4.2),
        "Cu3Au-L12": cu3au,
        "CuAu-L10": _fcc(["Cu", "Cu", "Au", "Au"], 3.85),
        "Au3Cu-L12": _fcc(["Cu", "Au", "Au", "Au"], 3.95),
        "CuAu-8": _fcc(["Au", "Au", "Cu", "Cu", "Cu", "Au", "Cu", "Au"], 3.85, (1, 1, 2)),
        # duplicates
        "Au-fcc-cubic": bulk("Au", "fcc", a=4.15, cubic=True),
        "Cu-hcp-2x": bulk("Cu", "hcp", a=2.55, c=4.16).repeat((2, 1, 1)),
        "Cu3Au-rotated": rotated,
        "Cu3Au-2x": _fcc(["Au", "Cu", "Cu", "Cu"] * 2, 3.8, (2, 1, 1)),
    }
    for label, a in atoms.items():
        a.info["label"] = label
    dups = {
        "Au-fcc-cubic": "Au-fcc",
        "Cu-hcp-2x": "Cu-hcp",
        "Cu3Au-rotated": "Cu3Au-L12",
        "Cu3Au-2x": "Cu3Au-L12",
    }
    return atoms, dups


def test_find_duplicates_matches_copies_not_other_decorations():
    atoms, dups = _inputs()
    labels = list(atoms)
    found = find_duplicates([to_structure(a) for a in atoms.values()])
    assert {labels[i]: labels[j] for i, j in found.items()} == dups
    # without a cell relaxation, another lattice constant is another structure
    strict = find_duplicates(
        [to_structure(atoms["Au-fcc"]), to_structure(atoms["Au-fcc-cubic"])], scale=False
    )
    assert strict == {}


def _ase_energies(atoms: dict) -> dict[str, float]:
    out = {}
    for label, a in atoms.items():
        a = a.copy()
        a.calc = EMT()
        FIRE(FrechetCellFilter(a), logfile=None).run(fmax=0.05, steps=500)
        out[label] = a.get_potential_energy()
    return out


def test_screen_hull_equals_pymatgen_on_ase_relaxations(tmp_path):
    atoms, dups = _inputs()
    store = default_store(tmp_path / "s")
    run_locally(
        ScreeningMaker(potential="emt").make(list(atoms.values())),
        store=store,
        create_folders=False,
        log=False,
    )
    relaxations = {d.label: d for d in query(store, "relaxation")}
    assert not [label for label in relaxations if label.startswith("ref-")]  # inputs hold them
    for dup, rep in dups.items():
        assert relaxations[dup].duplicate_of == rep
        assert relaxations[dup].energy_per_atom == relaxations[rep].energy_per_atom

    energies = _ase_energies(atoms)
    entries = {
        label: PDEntry(Composition(a.get_chemical_formula()), energies[label], name=label)
        for label, a in atoms.items()
    }
    pd = PhaseDiagram(list(entries.values()))
    on_hull = {k for k, e in entries.items() if pd.get_e_above_hull(e) <= 1e-6}
    group = {k: dups.get(k, k) for k in atoms}
    stable_groups = {group[k] for k in on_hull}
    expected = {k for k in atoms if group[k] in stable_groups}

    table = hull_table(store)
    assert set(table.label) == set(atoms)
    assert set(table.label[table.stable]) == expected
    assert {"Au-fcc", "Au-fcc-cubic"} & expected  # fcc Au and its duplicate are on the hull
    # the screen relaxes as ASE does: same energies
    for label, doc in relaxations.items():
        if label not in dups:
            n = len(atoms[label])
            assert doc.energy_per_atom == pytest.approx(energies[label] / n, abs=1e-6)
    # duplicates share one verdict
    by_label = table.set_index("label")
    for dup, rep in dups.items():
        assert by_label.stable[dup] == by_label.stable[rep]
        assert by_label.duplicate_of[dup] == rep
        assert np.isclose(by_label.e_above_hull[dup], by_label.e_above_hull[rep], atol=1e-12)


def test_a_label_of_a_builtin_reference_is_refused():
    """``ref-Cu-fcc`` would replace the screen's own elemental reference: a clear error."""
    atoms = bulk("Cu", "fcc", a=3.7)
    atoms.info["label"] = "ref-Cu-fcc"
    with pytest.raises(ValueError, match=r"label 'ref-Cu-fcc'.*reserved"):
        ScreeningMaker(potential="emt").make([atoms])


def test_inputs_that_relax_into_one_structure_share_one_verdict(tmp_path):
    """fcc Au and a rattled 2x2x2 supercell of it (too rattled to match before relaxing) end
    in the same structure at energies a hair apart: both are stable, the second ``same_as``
    the first, in the screen's documents and in the store-wide hull."""
    fcc = bulk("Au", "fcc", a=4.0)
    fcc.info["label"] = "Au-fcc"
    rattled = bulk("Au", "fcc", a=4.15, cubic=True).repeat((2, 2, 2))
    rattled.rattle(0.25, seed=3)
    rattled.info["label"] = "Au-rattled"
    structures = [to_structure(fcc), to_structure(rattled)]
    assert not find_duplicates(structures)  # different inputs, as far as the matcher can tell
    store = default_store(tmp_path / "store")
    flow = ScreeningMaker(potential="emt").make(structures)
    run_locally(flow, store=store, create_folders=False, log=False)
    relaxed = {d.label: d for d in query(store, "relaxation") if d.label.startswith("Au-")}
    gap = relaxed["Au-rattled"].energy_per_atom - relaxed["Au-fcc"].energy_per_atom
    assert gap > 1e-6  # without sharing, the rattled one would be off the hull
    assert relaxed["Au-rattled"].same_as == "Au-fcc" and relaxed["Au-fcc"].same_as is None
    screened = {d.label: d for d in query(store, "stability")}
    table = hull_table(store).set_index("label")
    for verdicts in (screened, table.to_dict("index")):
        fcc_row, rattled_row = verdicts["Au-fcc"], verdicts["Au-rattled"]
        get = dict.get if isinstance(fcc_row, dict) else getattr
        assert get(fcc_row, "stable") and get(rattled_row, "stable")
        assert get(rattled_row, "e_above_hull") == get(fcc_row, "e_above_hull") == 0.0
