"""File names that are not UTF-8, and documents the store cannot hold: each fails alone."""

from __future__ import annotations

import json
import os

from ase.build import bulk
from ase.io import write
from pymatgen.core import Structure

from esen_flows.analysis.query import query
from esen_flows.cli import main
from esen_flows.io import get_label, load_structures, to_structure
from esen_flows.potentials import get_potential
from esen_flows.stores import default_store
from esen_flows.tasks import RelaxSettings, run_relaxations


def _cu3au(a=3.75):
    atoms = bulk("Cu", "fcc", a=a, cubic=True)
    atoms.symbols[0] = "Au"
    return atoms


def test_a_folder_with_a_non_utf8_file_name_screens_to_the_end(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    write(folder / "Cu3Au.extxyz", _cu3au(), format="extxyz")
    raw = os.fsencode(folder) + b"/CuAu\xff.extxyz"  # Latin-1 bytes: not UTF-8
    write(os.fsdecode(raw), _cu3au(3.85)[[0, 1, 2, 3]], format="extxyz")
    (bad,) = [
        s
        for s in load_structures(folder)
        if "CuAu" in get_label(s) and s.properties.get("source_file_hex")
    ]
    assert get_label(bad) == "CuAu\\xff"  # the undecodable byte written out
    assert bytes.fromhex(bad.properties["source_file_hex"]) == raw  # the exact name kept

    store = tmp_path / "store"
    assert main(["screen", str(folder), "--store", str(store)]) == 0
    capsys.readouterr()
    assert main(["hull", "--store", str(store), "--json"]) == 0
    rows = {r["label"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"Cu3Au", "CuAu\\xff"}
    assert all(r["status"] == "ok" for r in rows.values())


def test_an_unstorable_document_fails_alone(tmp_path):
    store = default_store(tmp_path / "s")
    good = to_structure(_cu3au())
    good.properties = {"label": "good"}
    other = to_structure(bulk("Cu", "fcc", a=3.7))
    other.properties = {"label": "other"}
    bad = to_structure(bulk("Au", "fcc", a=4.1))
    bad.properties = {"label": "bad", "comment": "bytes \udcff no encoder can write"}
    docs = run_relaxations([good, bad, other], get_potential("emt"), RelaxSettings(), store=store)
    by_label = {d.label: d for d in docs}
    assert by_label["good"].status == "ok" and by_label["other"].status == "ok"
    assert by_label["bad"].status == "failed" and "cannot be stored" in by_label["bad"].reason
    stored = {d.label: d.status for d in query(store, "relaxation")}
    assert stored == {"good": "ok", "other": "ok", "bad": "failed"}
    assert isinstance(docs[0].structure, Structure)
