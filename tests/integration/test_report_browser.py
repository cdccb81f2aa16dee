"""The report of a small screen opened as a reader opens it: in headless Chromium (Debian's
``chromium``; ``.ci/run`` installs it when missing), offline. A screenshot is kept in
``test-artifacts/``."""

from __future__ import annotations

import os
import re

import pytest
from ase.build import bulk
from conftest import TESTS
from jobflow import run_locally
from report_browser import chromium, open_report

from esen_flows.analysis import report
from esen_flows.analysis.metrics import compare_labels
from esen_flows.analysis.query import hull_table
from esen_flows.analysis.report import write_report
from esen_flows.makers import PhononMaker, ScreeningMaker
from esen_flows.stores import default_store
from esen_flows.tasks import PhononSettings

#: .ci/run sets this once chromium is installed: then the test must run, not skip
REQUIRED = os.environ.get("ESEN_FLOWS_REQUIRE_BROWSER") == "1"
pytestmark = pytest.mark.skipif(
    chromium() is None and not REQUIRED,
    reason="no chromium on this machine (.ci/run installs Debian's)",
)

#: label -> symbols of a cubic 4-atom fcc cell: two binary systems and a ternary
CELLS = {
    "Cu3Au": ["Au", "Cu", "Cu", "Cu"],
    "CuAu": ["Cu", "Cu", "Au", "Au"],
    "Ag3Au": ["Au", "Ag", "Ag", "Ag"],
    "AgAu": ["Ag", "Ag", "Au", "Au"],
    "Cu2AgAu": ["Au", "Cu", "Cu", "Ag"],
}
LATTICE = {"Cu": 3.61, "Ag": 4.09, "Au": 4.08}


def structures():
    out = []
    for label, symbols in CELLS.items():
        atoms = bulk("Cu", "fcc", a=sum(LATTICE[s] for s in symbols) / 4, cubic=True)
        atoms.set_chemical_symbols(symbols)
        atoms.info["label"] = label
        out.append(atoms)
    return out


def screen(potential: str, folder):
    store = default_store(folder)
    flow = ScreeningMaker(potential=potential, batch_size=10).make(structures())
    run_locally(flow, store=store, create_folders=False, log=False)
    return store


def test_report_opens_offline_in_chromium_with_interactive_figures(tmp_path, monkeypatch):
    store = screen("esen-emt-tiny", tmp_path / "model")
    reference = screen("emt", tmp_path / "reference")
    phonons = PhononMaker(potential="emt", settings=PhononSettings(relax=None, min_length=5.0))
    run_locally(phonons.make(structures()[:1]), store=store, create_folders=False, log=False)
    ours, ref = (hull_table(s, include_failed=False) for s in (store, reference))
    expected = compare_labels(
        dict(zip(ours.label, ours.stable.astype(bool), strict=True)),
        dict(zip(ref.label, ref.stable.astype(bool), strict=True)),
    )
    # metrics computed by the report itself from the reference store
    path = write_report(store, tmp_path / "report.html", reference=reference)
    markup = re.sub(r"<script.*?</script>", "", path.read_text(encoding="utf-8"), flags=re.S)
    assert not re.search(r"(src|href)=.https?:", markup)  # no resource outside the scripts

    seen = open_report(path, TESTS.parent / "test-artifacts" / "report-chromium.png")

    assert seen["errors"] == []
    assert all(url.startswith(("file:", "data:")) for url in seen["requests"]), seen["requests"]
    order = seen["order"]
    assert order[0] == "Summary" and order[-1] == "results"
    assert order.index("Convex hulls") < order.index("results")
    # two binaries and one ternary, one shown at a time; parity, histogram, one phonon result
    assert seen["hidden_systems"] == 2
    assert len(seen["figures"]) == 3 + 3 and all(n > 0 for n in seen["figures"])
    assert seen["interactive"] == len(seen["figures"])
    assert seen["rows"] == len(CELLS)
    for label in CELLS:  # hover names each structure, its energy above hull and convergence
        assert any(label in h and "e_above_hull" in h and "converged" in h for h in seen["hover"])
    assert "confusion matrix" in markup
    for key in ("tp", "fp", "tn", "fn"):
        assert f"<th>{key}</th><td>{expected[key]}</td>" in markup
    assert all(n > 0 for n in seen["points"])  # every figure has data, not only a frame
    # each system of the selector shows exactly one figure, of non-zero size
    assert len(seen["shown_widths"]) == 3
    assert all(len(w) == 1 and w[0] > 100 for w in seen["shown_widths"])
    assert seen["csv_lines"] == len(CELLS) + 1  # the download: header and one line a row
    up, down = ([float(v) for v in column if v] for column in seen["sorted"])
    assert up == sorted(up) and down == sorted(down, reverse=True) and len(up) == len(CELLS)
    assert up != down  # the clicks really sort (the values are not all equal)
    # a table too large for a data: link downloads through a Blob made on click
    monkeypatch.setattr(report, "CSV_INLINE_LIMIT", 10)
    big = open_report(write_report(store, tmp_path / "big.html", reference=reference))
    assert big["errors"] == [] and big["csv_lines"] == len(CELLS) + 1
    assert seen["stable_rows"] == int(ours.stable.sum())
