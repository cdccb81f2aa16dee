"""Structure input and label rules."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.io import write
from pymatgen.core import Lattice, Structure

from esen_flows.io import UnreadableInput, get_label, load_structures, structure_problem


def test_labels_from_structure_atoms_and_fallback():
    s = Structure(Lattice.cubic(3.6), ["Cu"], [[0, 0, 0]])
    s.properties = {"label": "my-cu"}
    atoms = bulk("Au", "fcc", a=4.08)
    atoms.info["label"] = "my-au"
    bare = Structure(Lattice.cubic(4.0), ["Ag"], [[0, 0, 0]])
    out = load_structures([s, atoms, bare])
    assert [get_label(x) for x in out] == ["my-cu", "my-au", "Ag-2"]
    assert all(isinstance(x, Structure) for x in out)


def test_file_labels(tmp_path):
    frames = [bulk("Cu", "fcc", a=3.6), bulk("Au", "fcc", a=4.1), bulk("Ag", "fcc", a=4.1)]
    frames[1].info["label"] = "named-au"
    write(tmp_path / "many.extxyz", frames, format="extxyz")
    write(tmp_path / "single.extxyz", bulk("Pd", "fcc", a=3.9), format="extxyz")
    Structure(Lattice.cubic(3.6), ["Cu"], [[0, 0, 0]]).to(filename=str(tmp_path / "cu.cif"))
    Structure(Lattice.cubic(4.0), ["Au"], [[0, 0, 0]]).to(filename=str(tmp_path / "POSCAR"))
    labels = [get_label(x) for x in load_structures(tmp_path)]  # a folder
    assert sorted(labels) == sorted(["many-0", "named-au", "many-2", "single", "cu", "POSCAR"])


def test_duplicate_labels_rejected():
    a = bulk("Cu", "fcc", a=3.6)
    a.info["label"] = "x"
    b = bulk("Au", "fcc", a=4.1)
    b.info["label"] = "x"
    with pytest.raises(ValueError, match="duplicate label 'x'"):
        load_structures([a, b])


def test_unreadable_file_becomes_placeholder(tmp_path):
    bad = tmp_path / "broken.cif"
    bad.write_text("data_nothing\n_cell_length_a oops\n")
    (out,) = load_structures([bad])
    assert isinstance(out, UnreadableInput)
    assert out.label == "broken" and "broken.cif" in out.reason


def test_missing_path_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        load_structures([tmp_path / "nope.cif"])


@pytest.mark.parametrize(
    ("structure", "expected"),
    [
        (Structure(Lattice.cubic(4.0), [], []), "empty"),
        (Structure(Lattice.cubic(4.0), ["Cu", "Cu"], [[0, 0, 0], [0.01, 0, 0]]), "overlapping"),
        (Structure(Lattice.cubic(4.0), ["Cu"], [[np.nan, 0, 0]]), "non-finite"),
        (Structure(Lattice.cubic(3.6), ["Cu"], [[0, 0, 0]]), None),
    ],
)
def test_structure_problem(structure, expected):
    problem = structure_problem(structure)
    if expected is None:
        assert problem is None
    else:
        assert expected in problem
