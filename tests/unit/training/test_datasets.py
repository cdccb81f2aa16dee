"""Reading your own labelled frames: extxyz (ASE's labels or named keys), folders, ASE
databases; missing labels and implausible units named with file and frame."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.db import connect
from ase.io import write

from esen_flows.training.datasets import LabelKeys, read_labelled, split_by_structure


def emt_frames(n: int = 3) -> list:
    out = []
    for i in range(n):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
        atoms.symbols[0] = "Au"
        atoms.rattle(0.05, seed=i)
        atoms.calc = EMT()
        atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
        atoms.calc = SinglePointCalculator(atoms, **atoms.calc.results)
        out.append(atoms)
    return out


def test_ase_labels_from_extxyz_and_database_agree_with_emt(tmp_path):
    frames = emt_frames()
    write(tmp_path / "a.extxyz", frames)
    with connect(tmp_path / "b.db") as db:
        for atoms in frames:
            db.write(atoms)
    got, manifest = read_labelled(tmp_path)  # the folder: both files
    assert len(got) == 6 and manifest.frames == 6 and manifest.skipped == 0
    assert manifest.elements == ["Au", "Cu"] and all(len(f["sha256"]) == 64 for f in manifest.files)
    for a, b in zip(got, frames + frames, strict=True):
        ref = EMT()
        b = b.copy()
        b.calc = ref
        # extxyz keeps about 8 significant digits (a database keeps all)
        assert a.get_potential_energy() == pytest.approx(b.get_potential_energy(), rel=1e-7)
        np.testing.assert_allclose(a.get_forces(), b.get_forces(), rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(a.get_stress(), b.get_stress(), rtol=1e-6, atol=1e-10)
    assert got[0].info["source"] == "a.extxyz:0"


def test_named_keys_with_a_3x3_stress(tmp_path):
    frames = emt_frames(2)
    for atoms in frames:
        atoms.info["REF_energy"] = atoms.get_potential_energy() + 1.0
        atoms.arrays["REF_forces"] = atoms.get_forces() * 2
        atoms.info["REF_stress"] = atoms.get_stress(voigt=False).ravel()
        atoms.calc = None
    write(tmp_path / "named.extxyz", frames)
    keys = LabelKeys(energy="REF_energy", forces="REF_forces", stress="REF_stress")
    got, _ = read_labelled(tmp_path / "named.extxyz", keys)
    for a, b in zip(got, frames, strict=True):
        assert a.get_potential_energy() == pytest.approx(b.info["REF_energy"], rel=1e-7)
        np.testing.assert_allclose(a.get_forces(), b.arrays["REF_forces"], rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(
            a.get_stress(voigt=False).ravel(), b.info["REF_stress"], rtol=1e-6, atol=1e-10
        )


def test_a_missing_label_names_file_and_frame_or_is_skipped_and_counted(tmp_path):
    frames = emt_frames(3)
    frames[1].calc = SinglePointCalculator(frames[1], energy=-1.0)  # no forces, no stress
    write(tmp_path / "gap.extxyz", frames)
    with pytest.raises(ValueError, match=r"gap\.extxyz, frame 1: no forces or stress"):
        read_labelled(tmp_path / "gap.extxyz")
    got, manifest = read_labelled(tmp_path / "gap.extxyz", allow_missing=True)
    assert len(got) == 2 and manifest.skipped == 1
    got, _ = read_labelled(tmp_path / "gap.extxyz", need=("energy",))  # energy-only training
    assert len(got) == 3


def test_implausible_units_are_refused_even_with_allow_missing(tmp_path):
    frames = emt_frames(1)
    gpa = frames[0].get_stress() / 0.006241509  # the same stress in GPa
    frames[0].calc = SinglePointCalculator(
        frames[0], energy=frames[0].get_potential_energy(), forces=frames[0].get_forces(),
        stress=gpa * 100,  # kbar: up to hundreds
    )  # fmt: skip
    write(tmp_path / "kbar.extxyz", frames)
    with pytest.raises(ValueError, match=r"kbar\.extxyz, frame 0: stress .* GPa or kbar"):
        read_labelled(tmp_path / "kbar.extxyz", allow_missing=True)
    with pytest.raises(ValueError, match="no such file or folder"):
        read_labelled(tmp_path / "missing.extxyz")
    with pytest.raises(ValueError, match="unknown label"):
        read_labelled(tmp_path / "kbar.extxyz", need=("charges",))
    (tmp_path / "notes.json").write_text('{"not": "a database"}')
    with pytest.raises(ValueError, match=r"notes\.json: not readable as an ASE database"):
        read_labelled(tmp_path / "notes.json")


def test_split_keeps_each_structure_on_one_side():
    frames = []
    for i, symbols in enumerate(["Cu4", "Cu3Au", "Cu2Au2", "CuAu3", "Au4", "Cu3Ag"]):
        for k in range(5):  # five frames of one "trajectory" each
            atoms = bulk("Cu", "fcc", a=3.7, cubic=True)
            atoms.symbols = symbols
            atoms.rattle(0.02, seed=10 * i + k)
            frames.append(atoms)
    parts = split_by_structure(frames, (0.6, 0.2, 0.2), seed=3)
    assert sum(len(v) for v in parts.values()) == len(frames)
    sides = {side: {a.get_chemical_formula() for a in frames_} for side, frames_ in parts.items()}
    assert all(sides[s] for s in ("train", "val", "test"))
    assert not (sides["train"] & sides["val"] or sides["train"] & sides["test"])
    assert not sides["val"] & sides["test"]
    assert split_by_structure(frames, (0.6, 0.2, 0.2), seed=3) == parts  # same seed, same split
    with pytest.raises(ValueError, match="cannot be split three ways"):
        split_by_structure(frames[:5])
