"""A self-contained HTML report of a screen: summary, hull table, metrics and hull plots.

``write_report`` writes one HTML file with no external resources and no JavaScript: the plots
are embedded as base64 PNG. ``plot_hull`` and ``plot_e_above_hull`` give the figures on their
own. Energies are in eV/atom throughout.
"""

from __future__ import annotations

import html
import numbers
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from jobflow import JobStore

from esen_flows.analysis.query import (
    hull_table,
    latest_documents,
    phonon_documents,
    phonon_frame,
)
from esen_flows.analysis.report_plots import (  # noqa: F401 - re-exported
    DPI,
    MAX_PLOT_ELEMENTS,
    SHOW_UNSTABLE,
    _elements,
    _plottable,
    _within,
    figure_to_data_uri,
    hull_entries,
    plot_e_above_hull,
    plot_hull,
    pyplot,
)
from esen_flows.analysis.store_hull import store_stability
from esen_flows.schemas import StabilityDocument
from esen_flows.stores import load_band_structure, open_store

#: Largest number of phonon band-structure/DOS plots in a report (unstable ones first).
MAX_PHONON_PLOTS = 24

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
                caption,
                lambda d=doc: plot_phonons(load_band_structure(d, store), d.dos, title=d.label),
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
