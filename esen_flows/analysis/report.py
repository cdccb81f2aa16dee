"""A self-contained HTML report of a screen: summary, hull table, metrics and hull plots.

``write_report`` writes one HTML file with no external resources and no JavaScript: the plots
are embedded as base64 PNG. ``plot_hull`` and ``plot_e_above_hull`` give the figures on their
own. Energies are in eV/atom throughout.
"""

from __future__ import annotations

import base64
import html
import io
import numbers
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from jobflow import JobStore
from matplotlib.figure import Figure
from pymatgen.analysis.phase_diagram import PDEntry, PDPlotter, PhaseDiagram
from pymatgen.core import Composition

from esen_flows.analysis.query import (
    hull_table,
    latest_documents,
    phonon_documents,
    phonon_frame,
)
from esen_flows.analysis.store_hull import store_stability
from esen_flows.schemas import ResultDocument, StabilityDocument
from esen_flows.stores import open_store

#: Largest number of elements of a chemical system that gets a hull plot.
MAX_PLOT_ELEMENTS = 3
#: Unstable structures up to this distance above the hull (eV/atom) are drawn.
SHOW_UNSTABLE = 0.2
#: Largest number of phonon band-structure/DOS plots in a report (unstable ones first).
MAX_PHONON_PLOTS = 24
#: Resolution of the embedded PNG images, dots per inch.
DPI = 100

_UNITS = {
    "energy_per_atom": "energy_per_atom (eV/atom)",
    "e_form": "e_form (eV/atom)",
    "e_above_hull": "e_above_hull (eV/atom)",
}

_CSS = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f0f0f0; }
td:first-child, th:first-child { text-align: left; }
figure { display: inline-block; margin: 1em; vertical-align: top; }
figcaption { text-align: center; font-weight: bold; }
.note { color: #a00; }
"""


# --------------------------------------------------------------------------------------------
# Documents
# --------------------------------------------------------------------------------------------


def _elements(chemsys: str) -> frozenset[str]:
    """The element symbols of a chemical system written ``"Au-Cu"`` or ``"Au,Cu"``."""
    return frozenset(s.strip() for s in chemsys.replace(",", "-").split("-") if s.strip())


def _within(doc: ResultDocument, elements: frozenset[str]) -> bool:
    """True when all the document's elements lie in ``elements`` (its chemsys is known)."""
    chemsys = getattr(doc, "chemsys", None)
    return bool(chemsys) and _elements(chemsys) <= elements


def _plottable(doc: ResultDocument) -> bool:
    """A successful stability document of a converged relaxation, with a formula and an energy
    (an unconverged one is left off the hull plots)."""
    return (
        isinstance(doc, StabilityDocument)
        and doc.status == "ok"
        and doc.converged is not False
        and bool(doc.formula)
        and doc.energy_per_atom is not None
        and bool(doc.chemsys)
    )


def stability_documents(
    store: JobStore | str | Path, chemsys: str | None = None
) -> list[StabilityDocument]:
    """The stability of every structure of a store against the store's whole hull (computed
    now, ``store_stability``), optionally within a chemical system.

    Parameters
    ----------
    store
        A ``JobStore`` or the folder of an embedded store.
    chemsys
        ``"Cu-Au"`` keeps the documents whose elements all lie in that system (as
        ``hull_table`` does); documents without a chemsys are then dropped.

    Returns
    -------
    list of StabilityDocument
        Newest first, ok and failed alike.
    """
    docs = store_stability(store)
    if chemsys is not None:
        elements = _elements(chemsys)
        docs = [d for d in docs if _within(d, elements)]
    return docs


def hull_systems(docs: Iterable[StabilityDocument]) -> list[str]:
    """The binary and ternary chemical systems that have successful structures in ``docs``.

    Returns
    -------
    list of str
        ``"Au-Cu"``-style names (elements sorted), binaries first, then alphabetical.
    """
    systems = {
        "-".join(sorted(_elements(d.chemsys)))
        for d in docs
        if _plottable(d) and 2 <= len(_elements(d.chemsys)) <= MAX_PLOT_ELEMENTS
    }
    return sorted(systems, key=lambda s: (len(_elements(s)), s))


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------


def _pyplot() -> Any:
    """``matplotlib.pyplot``, on the non-interactive Agg backend unless a backend was chosen.

    pymatgen's ``PDPlotter`` draws through pyplot's global state, so pyplot is needed; a
    backend the user already selected (Jupyter, a desktop session) is left alone.
    """
    import matplotlib

    try:
        chosen = matplotlib.get_backend(auto_select=False)
    except TypeError:  # matplotlib < 3.10 has no auto_select: leave the backend alone
        chosen = "unknown"
    if chosen is None:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def hull_entries(docs: Iterable[StabilityDocument], chemsys: str) -> list[PDEntry]:
    """Phase-diagram entries of a chemical system: its screened structures and elements.

    Parameters
    ----------
    docs
        Stability documents; the successful ones whose elements lie in ``chemsys`` are used.
    chemsys
        ``"Au-Cu"`` or ``"Ag-Au-Cu"``.

    Returns
    -------
    list of PDEntry
        One ``PDEntry`` per structure (its reduced formula at ``energy_per_atom``, eV/atom;
        ``name`` = label), then one ``PDEntry`` per
        element at the reference energy (eV/atom) the documents record, the lowest if they
        disagree.

    Raises
    ------
    ValueError
        When no structure lies in the system, the documents mix potentials, or an element has
        no reference energy.
    """
    elements = _elements(chemsys)
    members = [d for d in docs if _plottable(d) and _within(d, elements)]
    if not members:
        raise ValueError(f"no successful structure in {chemsys}")
    potentials = sorted({d.potential for d in members})
    if len(potentials) > 1:
        raise ValueError(
            f"{chemsys}: documents of several potentials ({', '.join(potentials)}); "
            "pass one potential's documents"
        )
    entries: list[PDEntry] = []
    for d in members:
        comp = Composition(d.formula)
        entries.append(PDEntry(comp, d.energy_per_atom * comp.num_atoms, name=d.label))
    refs: dict[str, float] = {}
    for d in members:
        for el, e in (d.references or {}).items():
            if el in elements and (el not in refs or e < refs[el]):
                refs[el] = float(e)
    missing = sorted(elements - set(refs))
    if missing:
        raise ValueError(f"{chemsys}: no elemental reference energy for {', '.join(missing)}")
    entries += [PDEntry(Composition({el: 1}), e, name=el) for el, e in sorted(refs.items())]
    return entries


def plot_hull(docs: Sequence[StabilityDocument], chemsys: str) -> Figure:
    """The convex hull of one binary or ternary system, drawn by pymatgen's ``PDPlotter``.

    The hull is rebuilt from the documents' energies and elemental reference
    energies only; competing phases given to the screen as ``reference_entries`` are not in
    the documents and so are not drawn. Pass one document per label (``latest_per_label``).

    Parameters
    ----------
    docs
        Stability documents (of one potential); see ``hull_entries``.
    chemsys
        ``"Au-Cu"`` or ``"Ag-Au-Cu"``.

    Returns
    -------
    Figure
        A pyplot-managed figure: formation energy (eV/atom) against composition, unstable
        structures up to ``SHOW_UNSTABLE`` eV/atom above the hull. Close it
        (``plt.close(fig)``) when done.
    """
    n = len(_elements(chemsys))
    if not 2 <= n <= MAX_PLOT_ELEMENTS:
        raise ValueError(f"{chemsys}: hull plots are drawn for 2 or 3 elements, not {n}")
    diagram = PhaseDiagram(hull_entries(docs, chemsys))
    plt = _pyplot()
    before = set(plt.get_fignums())
    try:
        plotter = PDPlotter(diagram, backend="matplotlib", show_unstable=SHOW_UNSTABLE)
        ax = plotter.get_plot()
    except Exception:
        for num in set(plt.get_fignums()) - before:
            plt.close(num)
        raise
    fig = ax.figure
    ax.set_title("-".join(sorted(_elements(chemsys))), fontsize=18, pad=12)
    if n == 2:
        _label_binary_axes(ax, plotter)
    return fig


def _label_binary_axes(ax: Any, plotter: PDPlotter) -> None:
    """Axis labels of a binary hull: fraction of the element drawn at x = 1, eV/atom."""
    _lines, labels, _unstable = plotter.pd_plot_data
    right = [e for (x, _y), e in labels.items() if abs(x - 1.0) < 1e-9]
    if right:
        ax.set_xlabel(f"atomic fraction of {right[0].composition.elements[0]}", fontsize=16)
    ax.set_ylabel("formation energy (eV/atom)", fontsize=16)


def plot_e_above_hull(docs: Iterable[StabilityDocument], bins: int = 30) -> Figure:
    """Histogram of the energy above hull (eV/atom) of the successful documents.

    A dashed vertical line marks each candidate threshold ``e_hull_max`` (eV/atom) found in
    the documents. The figure is not managed by pyplot (nothing to close).
    """
    docs = [d for d in docs if d.status == "ok" and d.e_above_hull is not None]
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    values = [d.e_above_hull for d in docs]
    thresholds = sorted({d.e_hull_max for d in docs if d.e_hull_max is not None})
    if values:
        lo = min(0.0, *values)
        hi = max(*values, *thresholds, lo + 1e-3)
        ax.hist(values, bins=np.linspace(lo, hi, bins + 1), color="tab:blue", edgecolor="k")
    for e_max in thresholds:
        ax.axvline(e_max, color="tab:red", linestyle="--", label=f"e_hull_max = {e_max:g}")
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    ax.set_xlabel("energy above hull (eV/atom)")
    ax.set_ylabel("structures")
    fig.tight_layout()
    return fig


def figure_to_data_uri(fig: Figure, dpi: int = DPI) -> str:
    """A ``data:image/png;base64,...`` URI of the figure; pyplot's hold on it is released."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        if "matplotlib.pyplot" in sys.modules:
            sys.modules["matplotlib.pyplot"].close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# --------------------------------------------------------------------------------------------
# HTML sections
# --------------------------------------------------------------------------------------------


def _one_line(text: str) -> str:
    """``text`` escaped for HTML, on one line."""
    return html.escape(" ".join(str(text).split()))


def summarise(docs: Sequence[StabilityDocument]) -> dict[str, Any]:
    """Counts of a screen from its stability documents (one per label).

    Returns
    -------
    dict
        ``structures``, ``ok``, ``unconverged`` (relaxed but stopped at the step limit: never
        stable nor candidates), ``failed``, ``stable``, ``candidates`` (int), ``potentials``
        (sorted names) and ``e_hull_max`` (sorted thresholds, eV/atom).
    """
    return {
        "structures": len(docs),
        "ok": sum(d.status == "ok" and d.converged is not False for d in docs),
        "unconverged": sum(d.status == "ok" and d.converged is False for d in docs),
        "failed": sum(d.status != "ok" for d in docs),
        "stable": sum(bool(d.stable) for d in docs),
        "candidates": sum(bool(d.candidate) for d in docs),
        "potentials": sorted({d.potential for d in docs}),
        "e_hull_max": sorted({d.e_hull_max for d in docs if d.e_hull_max is not None}),
    }


def _summary_html(summary: Mapping[str, Any]) -> str:
    rows = [
        ("Structures", summary["structures"]),
        ("OK", summary["ok"]),
        ("Unconverged (step limit; no verdict)", summary["unconverged"]),
        ("Failed", summary["failed"]),
        ("Stable (on the hull)", summary["stable"]),
        ("Candidates (within e_hull_max)", summary["candidates"]),
        ("Potential(s)", ", ".join(summary["potentials"]) or "-"),
        ("e_hull_max (eV/atom)", ", ".join(f"{x:g}" for x in summary["e_hull_max"]) or "-"),
    ]
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{_one_line(v)}</td></tr>" for k, v in rows)
    return f"<h2>Summary</h2>\n<table class='summary'>{body}</table>"


def _format_number(value: Any) -> str:
    """Integers as they are, other numbers to 4 decimals, anything else as text."""
    if isinstance(value, bool) or not isinstance(value, numbers.Number):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    return f"{float(value):.4f}"


def _metrics_html(metrics: Mapping[str, float]) -> str:
    body = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_format_number(v))}</td></tr>"
        for k, v in metrics.items()
    )
    return f"<h2>Classification metrics</h2>\n<table class='metrics'>{body}</table>"


def _table_html(table: pd.DataFrame) -> str:
    """The hull table as HTML: energies (eV/atom) to 4 decimals, empty cells for missing."""
    if table.empty:
        return "<h2>Hull table</h2>\n<p>No stability documents.</p>"
    shown = table.rename(columns=_UNITS)
    for col in shown.select_dtypes(include="object").columns:
        shown[col] = shown[col].map(lambda v: "" if v is None else v)
    rendered = shown.to_html(
        index=False,
        float_format=lambda x: f"{x:.4f}",
        na_rep="",
        border=0,
        classes="hull",
        escape=True,
    )
    return f"<h2>Hull table</h2>\n{rendered}"


def _figure_html(caption: str, make: Any) -> str:
    """A ``<figure>`` with ``make()``'s plot, or a one-line note when plotting fails."""
    try:
        uri = figure_to_data_uri(make())
    except Exception as exc:
        note = f"{caption}: plot failed: {type(exc).__name__}: {exc}"
        return f"<p class='note'>{_one_line(note)}</p>"
    return (
        f'<figure><img src="{uri}" alt="{html.escape(caption)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _plots_html(docs: Sequence[StabilityDocument]) -> str:
    """One hull plot per (potential, binary or ternary system), then the e_above_hull histogram."""
    parts = ["<h2>Convex hulls</h2>"]
    potentials = sorted({d.potential for d in docs})
    for potential in potentials:
        mine = [d for d in docs if d.potential == potential]
        for system in hull_systems(mine):
            caption = f"{system} ({potential})"
            parts.append(_figure_html(caption, lambda m=mine, s=system: plot_hull(m, s)))
    if len(parts) == 1:
        parts.append("<p>No binary or ternary system with successful structures.</p>")
    parts.append("<h2>Energy above hull</h2>")
    if any(d.status == "ok" and d.e_above_hull is not None for d in docs):
        parts.append(_figure_html("e_above_hull (eV/atom)", lambda: plot_e_above_hull(docs)))
    else:
        parts.append("<p>No energy above hull to show.</p>")
    return "\n".join(parts)


def _phonons_html(store: JobStore, chemsys: str | None) -> str:
    """Dynamic-stability table and band structure + DOS plots of the phonon results."""
    from esen_flows.analysis.phonons import plot_phonons

    all_docs = phonon_documents(store, chemsys=chemsys)  # read and decoded once
    if not all_docs:
        return ""
    table = phonon_frame(all_docs)
    shown = table.drop(columns=["reason"]).copy()
    for col in ("min_frequency", "max_frequency", "free_energy", "entropy", "heat_capacity"):
        shown[col] = shown[col].map(lambda v: "" if pd.isna(v) else f"{v:.4f}")
    parts = [
        "<h2>Phonons</h2>",
        "<p>Frequencies in THz; free energy (kJ/mol), entropy and heat capacity (J/K/mol) at "
        "300 K per mole of primitive cells. Dynamically stable: acoustic modes at Gamma above "
        "-0.01 THz, every other mode non-negative.</p>",
        shown.to_html(index=False, border=0, na_rep="", escape=True),
    ]
    docs = [d for d in all_docs if d.status == "ok"]
    docs.sort(key=lambda d: (bool(d.dynamically_stable), d.label))
    for doc in docs[:MAX_PHONON_PLOTS]:
        verdict = "stable" if doc.dynamically_stable else "UNSTABLE"
        caption = f"{doc.label} ({doc.formula}, {doc.potential}): {verdict}"
        parts.append(
            _figure_html(
                caption, lambda d=doc: plot_phonons(d.band_structure, d.dos, title=d.label)
            )
        )
    if len(docs) > MAX_PHONON_PLOTS:
        parts.append(f"<p>{len(docs) - MAX_PHONON_PLOTS} more phonon results not plotted.</p>")
    return "\n".join(parts)


def _conductivity_html(store: JobStore, chemsys: str | None) -> str:
    """Conductivity table at 300 K and the kappa(T) plot."""
    from esen_flows.analysis.conductivity import conductivity_frame, plot_kappa

    docs = latest_documents(store, "conductivity", chemsys=chemsys)
    if not docs:
        return ""
    table = conductivity_frame(docs).drop(columns=["reason"])  # type: ignore[arg-type]
    for col in ("kappa", "kappa_particle", "kappa_coherence"):
        table[col] = table[col].map(lambda v: "" if pd.isna(v) else f"{v:.3f}")
    parts = [
        "<h2>Lattice thermal conductivity</h2>",
        "<p>kappa at 300 K in W/(m K), (xx+yy+zz)/3 (phono3py); the coherence part is that of "
        "the Wigner equation when it was included. Structures with imaginary modes get no "
        "kappa.</p>",
        table.to_html(index=False, border=0, na_rep="", escape=True),
    ]
    if any(d.kappa_mean for d in docs):  # type: ignore[attr-defined]
        parts.append(
            _figure_html("kappa against temperature", lambda: plot_kappa(docs).figure)  # type: ignore[arg-type]
        )
    return "\n".join(parts)


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def write_report(
    store: JobStore | str | Path,
    out: str | Path,
    chemsys: str | None = None,
    metrics: dict[str, float] | None = None,
    title: str = "esen-flows screen",
) -> Path:
    """Write a self-contained HTML report of the screen in ``store``.

    Parameters
    ----------
    store
        A ``JobStore`` or the folder of an embedded store.
    out
        The HTML file to write (parent folders are created).
    chemsys
        ``"Cu-Au"`` restricts the summary, table and plots to structures within that system.
    metrics
        Classification metrics (``precision``, ``recall``, ``f1``, ``daf``, ``tp``, ...) to
        show as given; integers as they are, other numbers to 4 decimals.
    title
        Page title and heading.

    Returns
    -------
    Path
        The file written. Summary and plots come from the newest stability document of each
        label; the table from ``hull_table(store, chemsys)``. A plot that fails leaves a
        one-line note in its place.
    """
    store = open_store(store)
    if chemsys is not None:  # "Cu, Au" -> "Au-Cu", the form hull_table matches
        chemsys = "-".join(sorted(_elements(chemsys)))
    docs = stability_documents(store, chemsys)
    heading = html.escape(title)
    scope = f"<p>Chemical system: {html.escape(chemsys)}</p>" if chemsys else ""
    sections = [
        _summary_html(summarise(docs)),
        _table_html(hull_table(store, chemsys, include_unconverged=True)),
        _metrics_html(metrics) if metrics is not None else "",
        _plots_html(docs),
        _phonons_html(store, chemsys),
        _conductivity_html(store, chemsys),
    ]
    page = (
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        f"<title>{heading}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>{heading}</h1>\n{scope}\n"
        + "\n".join(s for s in sections if s)
        + "\n</body>\n</html>\n"
    )
    path = Path(out).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
