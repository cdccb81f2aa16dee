"""Unconverged relaxations get no verdict: never stable nor a candidate, anywhere shown."""

from __future__ import annotations

import json

import pytest
from ase.build import bulk
from ase.io import write

from esen_flows.analysis.query import hull_table
from esen_flows.cli import EXIT_UNCONVERGED, main
from esen_flows.dynamics.relax import relax_structures
from esen_flows.makers import BatchRelaxMaker, RelaxMaker, ScreeningMaker
from esen_flows.potentials import get_potential
from esen_flows.tasks import RelaxSettings


def _inputs(folder):
    folder.mkdir()
    cu = bulk("Cu", "fcc", a=3.9)  # 8 % strained: one FIRE step cannot relax it
    cu3au = bulk("Cu", "fcc", a=3.95, cubic=True)
    cu3au.symbols[0] = "Au"
    write(folder / "Cu.extxyz", cu, format="extxyz")
    write(folder / "Cu3Au.extxyz", cu3au, format="extxyz")
    return folder


def test_screen_with_one_step_calls_nothing_stable(tmp_path, capsys):
    inputs = _inputs(tmp_path / "in")
    store = tmp_path / "store"
    argv = ["screen", str(inputs), "--store", str(store), "--max-steps", "1"]
    assert main(argv) == EXIT_UNCONVERGED
    captured = capsys.readouterr()
    assert "did not converge" in captured.err  # the warning
    assert "unconverged" in captured.out  # the summary's column and rows

    assert main(["hull", "--store", str(store), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []  # off the hull by default

    assert main(["hull", "--store", str(store), "--json", "--include-unconverged"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["label"] for r in rows} == {"Cu", "Cu3Au"}
    for row in rows:
        assert row["converged"] is False and row["n_steps"] == 1
        assert row["stable"] is False and row["candidate"] is False
        assert "did not converge" in row["reason"]

    table = hull_table(str(store), include_unconverged=True)
    assert not table.stable.any() and not table.candidate.any()
    assert {"converged", "n_steps"} <= set(table.columns)

    out = tmp_path / "report.html"
    assert main(["report", "--store", str(store), "--out", str(out)]) == 0
    text = out.read_text()
    assert "Unconverged" in text and "Cu3Au" in text


def test_converged_screen_exits_0_with_converged_column(tmp_path, capsys):
    inputs = _inputs(tmp_path / "in")
    store = tmp_path / "store"
    assert main(["screen", str(inputs), "--store", str(store)]) == 0
    capsys.readouterr()
    assert main(["hull", "--store", str(store), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["label"] for r in rows} == {"Cu", "Cu3Au"}
    assert all(r["converged"] is True and r["n_steps"] >= 1 for r in rows)
    assert any(r["stable"] for r in rows)


@pytest.mark.parametrize(
    "extra", [["--fmax", "0"], ["--fmax", "-1"], ["--max-steps", "0"], ["--fmax", "nan"]]
)
def test_bad_relaxation_arguments_exit_2(tmp_path, extra):
    with pytest.raises(SystemExit) as exc:
        main(["screen", str(tmp_path), "--store", str(tmp_path / "s"), *extra])
    assert exc.value.code == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fmax": 0.0}, "fmax must be a positive number"),
        ({"fmax": -1.0}, "fmax must be a positive number"),
        ({"max_steps": 0}, "max_steps must be an integer of at least 1"),
    ],
)
def test_bad_relaxation_settings_raise_in_python(kwargs, message):
    atoms = bulk("Cu", "fcc", a=3.7)
    with pytest.raises(ValueError, match=message):
        ScreeningMaker(relax_maker=BatchRelaxMaker(**kwargs)).make([atoms])
    with pytest.raises(ValueError, match=message):
        BatchRelaxMaker(**kwargs).make([atoms])
    with pytest.raises(ValueError, match=message):
        RelaxMaker(**kwargs).make(atoms)
    with pytest.raises(ValueError, match=message):
        RelaxSettings(**kwargs)
    with pytest.raises(ValueError, match=message):
        relax_structures(get_potential("emt"), [atoms], **kwargs)
