"""The HTML report: a real (EMT) screen of a few fcc alloys, written and read back."""

from __future__ import annotations

import re

import pytest
from ase.build import bulk
from jobflow import run_locally
from matplotlib.figure import Figure

from esen_flows.analysis import report
from esen_flows.analysis.query import latest_per_label, query
from esen_flows.analysis.report import plot_e_above_hull, plot_hull, write_report
from esen_flows.makers import ScreeningMaker
from esen_flows.stores import default_store

LATTICE = {"Cu": 3.61, "Ag": 4.09, "Au": 4.08}

#: label -> symbols of a cubic 4-atom fcc cell (corner, then the three face centres).
CELLS = {
    "Cu3Au-L12": ["Au", "Cu", "Cu", "Cu"],
    "CuAu-L10": ["Cu", "Cu", "Au", "Au"],
    "Au3Cu-L12": ["Cu", "Au", "Au", "Au"],
    "Ag3Au-L12": ["Au", "Ag", "Ag", "Ag"],
    "AgAu-L10": ["Ag", "Ag", "Au", "Au"],
}
SYSTEMS = ("Au-Cu", "Ag-Au")


def _structures():
    out = []
    for label, symbols in CELLS.items():
        a = sum(LATTICE[s] for s in symbols) / len(symbols)
        atoms = bulk("Cu", "fcc", a=a, cubic=True)
        atoms.set_chemical_symbols(symbols)
        atoms.info["label"] = label
        out.append(atoms)
    return out


@pytest.fixture(scope="module")
def screened(tmp_path_factory):
    """A store holding one finished EMT screen of the five alloys."""
    store = default_store(tmp_path_factory.mktemp("report") / "st")
    flow = ScreeningMaker(potential="emt", batch_size=10).make(_structures())
    run_locally(flow, store=store, create_folders=False, log=False)
    return store


@pytest.fixture(scope="module")
def docs(screened):
    return latest_per_label(query(screened, "stability"))


def test_report_has_labels_figures_and_metrics(screened, tmp_path):
    path = write_report(screened, tmp_path / "out" / "report.html", metrics={"f1": 0.5, "tp": 3})
    assert path.is_file()
    text = path.read_text(encoding="utf-8")
    for label in CELLS:
        assert label in text
    # one interactive hull figure per binary system (behind a selector), then the histogram
    for system in SYSTEMS:
        assert f"data-system='{system} (emt)'" in text
    assert text.count("data-system=") == len(SYSTEMS)
    assert 'id="e-above-hull"' in text
    assert re.search(r"<th>f1</th><td>0\.5000</td>", text)
    assert re.search(r"<th>tp</th><td>3</td>", text)
    # summary first, results table last; plotly.js inlined once; no resource outside scripts
    assert text.index("<h2>Summary</h2>") < text.index("Convex hulls") < text.index("id='results'")
    assert text.count(report.plotly_js()[:300]) == 1
    markup = re.sub(r"<script.*?</script>", "", text, flags=re.S)
    assert not re.search(r"(src|href)=.https?:", markup)
    assert "download='esen-flows-results.csv'" in markup


def test_report_summary_and_chemsys_filter(screened, docs, tmp_path):
    n_ok = sum(d.status == "ok" for d in docs)
    assert n_ok == len(CELLS)
    text = write_report(screened, tmp_path / "r.html", chemsys="Cu, Au").read_text()
    assert "Cu3Au-L12" in text and "AgAu-L10" not in text
    assert text.count("data-system=") == 1 and 'id="e-above-hull"' in text
    assert "Against the reference" not in text
    assert "<div class='card'><b>3</b>screened</div>" in text
    assert text.count("<td>Au-Cu</td>") == 3  # hull table rows


def test_report_notes_a_failing_figure(screened, tmp_path, monkeypatch):
    def broken(docs, chemsys):
        raise RuntimeError(f"cannot draw {chemsys}\nsecond line")

    monkeypatch.setattr(report, "hull_figure", broken)
    text = write_report(screened, tmp_path / "r.html").read_text()
    for system in SYSTEMS:
        assert f"figure failed: RuntimeError: cannot draw {system} second line" in text
    assert 'id="e-above-hull"' in text  # the histogram still made it


def test_plot_hull_returns_a_figure(docs):
    import matplotlib.pyplot as plt

    before = len(plt.get_fignums())
    fig = plot_hull(docs, "Au-Cu")
    try:
        assert isinstance(fig, Figure)
        assert len(fig.axes) >= 1
    finally:
        plt.close(fig)
    assert len(plt.get_fignums()) == before


def test_plot_hull_rejects_empty_system(docs):
    with pytest.raises(ValueError, match="no successful structure"):
        plot_hull(docs, "Pd-Pt")


def test_histogram_is_a_plain_figure(docs):
    fig = plot_e_above_hull(docs)
    assert isinstance(fig, Figure)
    assert fig.axes[0].get_xlabel() == "energy above hull (eV/atom)"
