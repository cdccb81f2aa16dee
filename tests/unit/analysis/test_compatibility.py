"""Screening against Materials Project references with MP2020 corrections, checked against
pymatgen's ``MaterialsProject2020Compatibility`` and ``PhaseDiagram`` run directly."""

from __future__ import annotations

import json

import pytest
from ase.build import bulk
from jobflow import run_locally
from monty.serialization import dumpfn
from pymatgen.analysis.compatibility import MaterialsProject2020Compatibility
from pymatgen.analysis.phase_diagram import PhaseDiagram
from pymatgen.core import Lattice, Structure
from pymatgen.entries.computed_entries import ComputedStructureEntry
from pymatgen.io.vasp.sets import MPRelaxSet

from esen_flows.analysis.compatibility import corrected_references, model_correction
from esen_flows.analysis.query import hull_table, query
from esen_flows.cli import main
from esen_flows.io import to_structure
from esen_flows.makers import BatchRelaxMaker, ScreeningMaker
from esen_flows.stores import default_store

POTCARS = MPRelaxSet.CONFIG["POTCAR"]
U_NI_OXIDE = MPRelaxSet.CONFIG["INCAR"]["LDAUU"]["O"]["Ni"]


def mp_entry(structure: Structure, energy: float, entry_id: str, u_ni: float | None = None):
    """A ComputedStructureEntry as the Materials Project serves it: its DFT parameters
    (run type, U values, POTCAR titles) and MP2020 corrections already applied."""
    elements = {el.symbol for el in structure.composition.elements}
    hubbards = {"Ni": U_NI_OXIDE if u_ni is None else u_ni} if elements == {"Ni", "O"} else {}
    parameters = {
        "run_type": "GGA+U" if hubbards else "GGA",
        "hubbards": hubbards,
        "potcar_spec": [{"titel": f"PAW_PBE {POTCARS[el]}", "hash": None} for el in elements],
    }
    entry = ComputedStructureEntry(structure, energy, parameters=parameters, entry_id=entry_id)
    if u_ni is None:
        (entry,) = MaterialsProject2020Compatibility().process_entries([entry], clean=True)
    return entry


def rocksalt(a: float = 4.17) -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Ni", "O"], [[0, 0, 0], [0.5] * 3])


@pytest.fixture
def references() -> list[ComputedStructureEntry]:
    ni = to_structure(bulk("Ni", "fcc", a=3.52))
    o2 = Structure(Lattice.cubic(8.0), ["O", "O"], [[0, 0, 0], [0.15, 0, 0]])
    return [
        mp_entry(ni, -0.05, "mp-23"),
        mp_entry(o2, -2.0, "mp-12957"),
        mp_entry(rocksalt(), -1.4, "mp-19009"),  # NiO: the DFT phase the model's competes with
    ]


def test_model_correction_is_mp2020_on_an_entry_with_mp_parameters():
    """The correction of a model energy equals what MP2020 gives the same composition
    computed the MP way (GGA+U, MP's U on Ni, MP's POTCARs)."""
    entry = mp_entry(rocksalt(), -10.0, "x")
    assert entry.correction != 0.0
    assert model_correction("NiO", "mp2020") == pytest.approx(entry.correction_per_atom, abs=1e-12)
    assert model_correction("Ni", "mp2020") == 0.0


def test_a_reference_with_the_wrong_u_is_refused_by_name(references):
    bad = mp_entry(rocksalt(), -1.4, "mp-bad", u_ni=5.0)
    with pytest.raises(ValueError, match=r"refuses 1 of 1 entries: mp-bad \(NiO\)"):
        corrected_references([bad], "mp2020")
    maker = ScreeningMaker(reference_entries=[*references, bad], compatibility="mp2020")
    with pytest.raises(ValueError, match="mp-bad"):
        maker.make([rocksalt()])


def expected(relaxed: Structure, energy: float, references, compete: bool = True):
    """Correction, formation energy and e_above_hull (eV/atom) of the model's NiO from pymatgen
    directly: the model's energy on an MP-parameter entry, all processed by MP2020; the model
    in the hull (``compete``) or facing the references alone."""
    model = mp_entry(relaxed, energy, "model")
    pool = MaterialsProject2020Compatibility().process_entries(references, clean=True)
    diagram = PhaseDiagram([*pool, model] if compete else pool)
    return (
        model.correction_per_atom,
        diagram.get_form_energy_per_atom(model),
        diagram.get_e_above_hull(model, allow_negative=True),
    )


@pytest.mark.parametrize("compete", [True, False])
def test_screen_against_mp_references_equals_pymatgen(tmp_path, references, compete):
    store = default_store(tmp_path / "store")
    start = rocksalt(4.3)
    start.properties["label"] = "NiO-model"
    maker = ScreeningMaker(
        potential="emt",
        relax_maker=BatchRelaxMaker(fmax=0.01),
        reference_entries=references,
        compatibility="mp2020",
        compete=compete,
    )
    run_locally(maker.make([start]), store=store, create_folders=False, log=False)
    (relaxed,) = query(store, "relaxation", label="NiO-model")
    (doc,) = query(store, "stability", label="NiO-model")
    assert relaxed.converged and doc.settings["compatibility"] == "mp2020"
    corr, e_form, e_hull = expected(relaxed.structure, relaxed.energy, references, compete)
    assert doc.energy_correction == pytest.approx(corr, abs=1e-9)
    assert doc.e_form == pytest.approx(e_form, abs=1e-6)
    assert doc.e_above_hull == pytest.approx(e_hull, abs=1e-6)
    if compete:  # the store-wide hull shows the same numbers
        row = hull_table(store, compatibility="mp2020").set_index("label").loc["NiO-model"]
        assert row.energy_correction == pytest.approx(corr, abs=1e-9)
        assert row.e_above_hull == pytest.approx(doc.e_above_hull, abs=1e-6)
        # the screen's references say how they were corrected: the hull applies it unasked
        plain = hull_table(store).set_index("label").loc["NiO-model"]
        assert plain.e_above_hull == pytest.approx(doc.e_above_hull, abs=1e-6)
        assert plain.e_form == pytest.approx(e_form, abs=1e-6)


def test_cli_reads_mp_entries_from_json_gz(tmp_path, references, capsys):
    refs = tmp_path / "mp_entries.json.gz"
    dumpfn(references, refs)
    start = rocksalt(4.3)
    start.to(filename=str(tmp_path / "NiO.cif"))
    store = str(tmp_path / "store")
    argv = ["screen", str(tmp_path / "NiO.cif"), "--store", store, "--fmax", "0.01"]
    code = main([*argv, "--references", str(refs), "--compatibility", "mp2020"])
    assert code == 0
    capsys.readouterr()
    assert main(["hull", "--store", store, "--json", "--compatibility", "mp2020"]) == 0
    rows = {r["label"]: r for r in json.loads(capsys.readouterr().out)}
    (relaxed,) = query(default_store(store), "relaxation", label="NiO")
    corr, _, e_hull = expected(relaxed.structure, relaxed.energy, references)
    assert rows["NiO"]["energy_correction"] == pytest.approx(corr, abs=1e-9)
    assert rows["NiO"]["e_above_hull"] == pytest.approx(max(e_hull, 0.0), abs=1e-6)
    not_entries = tmp_path / "bad.json"
    not_entries.write_text(json.dumps([{"energy": 1.0}]))
    assert main([*argv, "--references", str(not_entries)]) == 2
    assert "bad.json: entry 0 is a dict, not a pymatgen ComputedEntry" in capsys.readouterr().err
