"""The esen-flows command line: exit codes, JSON, a real small screen."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ase.io import write
from conftest import alloy_structures

from esen_flows.cli import main


@pytest.fixture
def inputs(tmp_path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    write(folder / "alloys.extxyz", alloy_structures(5, seed=11), format="extxyz")
    return folder


def test_screen_then_hull_json_and_report(tmp_path, inputs, capsys):
    store = tmp_path / "store"
    (inputs / "junk.cif").write_text("not a cif\n")
    code = main(
        ["screen", str(inputs), "--potential", "emt", "--store", str(store), "--batch-size", "2"]
    )
    assert code == 0
    capsys.readouterr()
    assert main(["hull", "--store", str(store), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    labels = {r["label"] for r in rows}
    assert {f"alloy-{i:03d}" for i in range(5)} <= labels and "junk" in labels
    for row in rows:
        assert {"label", "formula", "energy_per_atom", "e_form", "e_above_hull", "stable"} <= set(
            row
        )
        if row["status"] == "ok":
            assert isinstance(row["stable"], bool)
            assert row["e_above_hull"] >= 0
            assert row["stable"] == (row["e_above_hull"] <= 1e-6)
    junk = next(r for r in rows if r["label"] == "junk")
    assert junk["status"] == "failed" and junk["e_above_hull"] is None

    binary = next(
        r["chemsys"] for r in rows if r["status"] == "ok" and r["chemsys"].count("-") == 1
    )
    assert main(["hull", "--store", str(store), "--chemsys", binary, "--json"]) == 0
    sub = json.loads(capsys.readouterr().out)
    assert sub and len(sub) < len(rows)
    assert all(set(r["chemsys"].split("-")) <= set(binary.split("-")) for r in sub)

    assert main(["hull", "--store", str(store), "--potential", "other", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []

    out = tmp_path / "report.html"
    assert main(["report", "--store", str(store), "--out", str(out)]) == 0
    assert "alloy-000" in out.read_text()


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["screen", "missing.cif", "--store", "{tmp}/s"], 2, "missing.cif: no such file"),
        (["screen", "{tmp}/bad.cif", "--store", "{tmp}/s"], 1, "no readable structure"),
        (
            ["screen", "{tmp}/in", "--store", "{tmp}/s", "--potential", "nope"],
            2,
            "unknown potential 'nope'",
        ),
        (["hull", "--store", "{tmp}/absent"], 2, "does not exist"),
        (["report", "--store", "{tmp}/absent"], 2, "does not exist"),
    ],
)
def test_errors_are_one_line_with_exit_code(tmp_path, inputs, capsys, argv, code, message):
    (tmp_path / "bad.cif").write_text("garbage\n")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize(
    "argv", [["screen", "x.cif", "--store", "s", "--batch-size", "0"], ["hull"], ["frobnicate"]]
)
def test_bad_arguments_exit_2(argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2


def test_console_script_installed(tmp_path):
    exe = shutil.which("esen-flows", path=str(Path(sys.executable).parent))
    assert exe, "the esen-flows console script is not installed"
    proc = subprocess.run(
        [exe, "hull", "--store", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "does not exist" in proc.stderr


def test_screen_with_phonons_and_conductivity(tmp_path):
    """``screen --phonons --conductivity``: Matbench Discovery's kappa protocol for the
    dynamically stable candidates, a table of kappa at 300 K, and ``export`` of its files."""
    from ase.build import bulk

    cu3au = bulk("Cu", "fcc", a=3.75, cubic=True)
    cu3au.symbols[0] = "Au"
    folder = tmp_path / "in"
    folder.mkdir()
    write(folder / "Cu3Au.extxyz", cu3au, format="extxyz")
    store = tmp_path / "store"
    args = ["screen", str(folder), "--potential", "emt", "--store", str(store), "--phonons"]
    args += ["--phonon-min-length", "6", "--conductivity", "--kappa-mesh", "4"]
    assert main(args) == 0
    from esen_flows.analysis import conductivity_table

    table = conductivity_table(str(store))
    assert list(table.label) == ["Cu3Au"] and table.kappa.iloc[0] > 0
    assert table.kappa_coherence.iloc[0] > 0 and table.mesh.iloc[0] == "4x4x4"  # Wigner, 4^3
    assert main(["export", "--store", str(store), "--out", str(tmp_path / "x")]) == 0
    written = {p.name for p in (tmp_path / "x" / "Cu3Au").iterdir()}
    assert {"phonopy_params.yaml", "phono3py_params.yaml", "fc2.hdf5", "fc3.hdf5"} <= written
