"""A self-contained HTML report of a screen: summary first, then interactive figures, then
the results table.

``write_report`` writes one HTML file that needs no network: plotly.js is inlined once and every
figure (convex hulls with a system selector, the energy-above-hull histogram, phonon bands and
DOS, kappa(T), and with a reference the parity plot and confusion matrix) is a plotly figure
(``analysis.report_figures``). The summary and the tables are plain HTML, readable without
JavaScript; the results table sorts and filters with a few lines of inline script and comes with
a CSV download. ``plot_hull`` and ``plot_e_above_hull`` give static matplotlib figures on their
own. Energies are in eV/atom throughout.
"""

from __future__ import annotations

import base64
import html
import json
import numbers
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from jobflow import JobStore

from esen_flows.analysis.metrics import compare_labels
from esen_flows.analysis.query import (
    hull_frame,
    latest_documents,
)
from esen_flows.analysis.report_assets import CSS, FILTERS, SCRIPT
from esen_flows.analysis.report_figures import (
    figure_or_note,
    hull_figure,
    one_line,
    parity_figure,
    plotly_js,
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
from esen_flows.analysis.report_results import (  # noqa: F401 - MAX_PHONON_PLOTS re-exported
    MAX_PHONON_PLOTS,
    conductivity_html,
    phonons_html,
)
from esen_flows.analysis.store_hull import store_stability
from esen_flows.schemas import StabilityDocument
from esen_flows.stores import open_store

_UNITS = {
    "energy_per_atom": "energy_per_atom (eV/atom)",
    "e_form": "e_form (eV/atom)",
    "e_above_hull": "e_above_hull (eV/atom)",
}


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


def _cards_html(summary: Mapping[str, Any]) -> str:
    cards = [
        ("screened", summary["structures"]),
        ("converged", summary["ok"]),
        ("unconverged", summary["unconverged"]),
        ("failed", summary["failed"]),
        ("stable", summary["stable"]),
        ("candidates", summary["candidates"]),
    ]
    return (
        "<div class='cards'>"
        + "".join(f"<div class='card'><b>{v}</b>{html.escape(k)}</div>" for k, v in cards)
        + "</div>"
    )


def _provenance(store: JobStore, docs: Sequence[StabilityDocument]) -> list[tuple[str, str]]:
    """Rows of the summary about how the screen was made: potentials (with the checksum of
    their parameters), the relaxation and hull settings, and the compute time."""
    rows: list[tuple[str, str]] = []
    for name, checksum in sorted({(d.potential, d.checksum) for d in docs}):
        rows.append(("potential", f"{name} (parameters {checksum[:12]})"))
    relaxations = latest_documents(store, "relaxation")
    if relaxations:
        settings = relaxations[0].settings  # the newest
        shown = ", ".join(f"{k} {v}" for k, v in sorted(settings.items()) if k != "task")
        rows.append(("relaxation settings", shown))
        total = sum(d.wall_time or 0.0 for d in relaxations)  # type: ignore[attr-defined]
        rows.append(("relaxation time (sum over structures)", f"{total:.1f} s"))
    thresholds = sorted({d.e_hull_max for d in docs if d.e_hull_max is not None})
    rows.append(("candidate threshold e_hull_max", ", ".join(f"{x:g} eV/atom" for x in thresholds)))
    return rows


def _summary_html(store: JobStore, docs: Sequence[StabilityDocument]) -> str:
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{one_line(v) or '-'}</td></tr>"
        for k, v in _provenance(store, docs)
    )
    return (
        "<h2>Summary</h2>\n" + _cards_html(summarise(docs))
        + "<p>Converged: relaxed within the step limit. Unconverged structures get no stability "
        "verdict; stable means on the hull (1e-6 eV/atom), candidates lie within e_hull_max of "
        f"it.</p>\n<table class='summary'>{rows}</table>"
    )  # fmt: skip


def _format_number(value: Any) -> str:
    """Integers as they are, other numbers to 4 decimals, anything else as text."""
    if isinstance(value, bool) or not isinstance(value, numbers.Number):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    return f"{float(value):.4f}"


def _metrics_html(
    docs: Sequence[StabilityDocument],
    chemsys: str | None,
    metrics: Mapping[str, Any] | None,
    reference: JobStore | str | Path | None,
) -> str:
    """Against a reference: the classification metrics (given, or computed from the two
    stores' hulls, converged structures matched by label) as a small table, the confusion
    matrix and the parity plot of formation energies."""
    if metrics is None and reference is None:
        return ""
    parts = ["<h2>Against the reference</h2>"]
    figures = []
    if reference is not None:
        ref_docs = stability_documents(open_store(reference), chemsys)  # its hull, once
        ours, ref = (hull_frame(d, include_failed=False) for d in (docs, ref_docs))
        if metrics is None:
            metrics = compare_labels(
                dict(zip(ours.label, ours.stable.astype(bool), strict=True)),
                dict(zip(ref.label, ref.stable.astype(bool), strict=True)),
            )
        e_form, ref_e = (
            {r.label: float(r.e_form) for r in t.itertuples() if pd.notna(r.e_form)}
            for t in (ours, ref)
        )
        names = tuple(
            ", ".join(sorted({d.potential for d in group})) or name
            for group, name in ((docs, "model"), (ref_docs, "reference"))
        )
        figures.append(figure_or_note("parity", lambda: parity_figure(e_form, ref_e, names)))
    metrics = metrics or {}  # given, or computed above
    body = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_format_number(v))}</td></tr>"
        for k, v in metrics.items()
    )
    parts.append(f"<table class='metrics'>{body}</table>")
    if all(k in metrics for k in ("tp", "fp", "tn", "fn")):
        figures.insert(0, _confusion_html(metrics))
    parts.append(f"<div class='grid'>{''.join(figures)}</div>")
    return "\n".join(parts)


def _confusion_html(metrics: Mapping[str, Any]) -> str:
    """The stable/unstable confusion matrix as a table (counts)."""
    cells = [("tp", "fn"), ("fp", "tn")]
    rows = "".join(
        f"<tr><th>reference {name}</th>"
        + "".join(f"<td class='count'>{int(metrics[k])}</td>" for k in keys)
        + "</tr>"
        for name, keys in zip(("stable", "unstable"), cells, strict=True)
    )
    return (
        "<table class='confusion'><caption>confusion matrix</caption><tr><th></th>"
        f"<th>model stable</th><th>model unstable</th></tr>{rows}</table>"
    )


def _hulls_html(docs: Sequence[StabilityDocument]) -> str:
    """Hull figures of every (potential, binary or ternary system), one shown at a time
    through a selector; then the energy-above-hull histogram."""
    import plotly.graph_objects as go

    parts = ["<h2>Convex hulls</h2>"]
    systems = [
        (f"{system} ({potential})", potential, system)
        for potential in sorted({d.potential for d in docs})
        for system in hull_systems([d for d in docs if d.potential == potential])
    ]
    if systems:
        options = "".join(
            f"<option value='{html.escape(name, quote=True)}'>{html.escape(name)}</option>"
            for name, _, _ in systems
        )
        parts.append(
            f"<p><label>System ({len(systems)}): <select id='hull-system' "
            f"onchange='esenShow(this.value)'>{options}</select></label></p>"
        )
    for i, (name, potential, system) in enumerate(systems):
        mine = [d for d in docs if d.potential == potential]
        fig = figure_or_note(f"hull-{i}", lambda m=mine, s=system: hull_figure(m, s))
        parts.append(f"<div data-system='{html.escape(name, quote=True)}'>{fig}</div>")
    if not systems:
        parts.append("<p>No binary or ternary system with successful structures.</p>")
    values = [d.e_above_hull for d in docs if d.status == "ok" and d.e_above_hull is not None]
    if values:

        def histogram() -> Any:
            fig = go.Figure(go.Histogram(x=values, nbinsx=30, marker_color="#2b83ba"))
            fig.update_layout(
                title="energy above hull", xaxis_title="e_above_hull (eV/atom)",
                yaxis_title="structures", template="plotly_white", height=330,
            )  # fmt: skip
            return fig

        parts.append(figure_or_note("e-above-hull", histogram))
    return "\n".join(parts)


#: CSV files up to this many characters are a data: link; larger ones a Blob made on click.
CSV_INLINE_LIMIT = 1_000_000


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, float | np.floating):
        return f"{value:.4f}"
    return html.escape(" ".join(str(value).split()))


def _results_html(table: pd.DataFrame) -> str:
    """The hull table, collapsed: sortable (click a heading), filterable, with a CSV file."""
    if table.empty:
        return "<h2>Results</h2>\n<p>No stability documents.</p>"
    text = table.to_csv(index=False)
    if len(text) < CSV_INLINE_LIMIT:  # a data: link works without JavaScript
        link = f"href='data:text/csv;base64,{base64.b64encode(text.encode()).decode()}'"
        csv = ""
    else:  # browsers cap data: URLs (Chromium at 2 MB): a Blob made on click instead
        link = "href='#' onclick='return esenCsv(this)'"
        csv = f"<script type='text/csv' id='results-csv'>{html.escape(text)}</script>"
    filters = []
    for col, name in FILTERS.items():
        if col in table:
            values = sorted({_cell(v) for v in table[col]} - {""})  # escaped already
            options = "".join(f"<option value='{v}'>{v}</option>" for v in values)
            filters.append(
                f"<label>{name} <select data-filter='{col}' onchange='esenFilter()'>"
                f"<option value=''>all</option>{options}</select></label>"
            )
    filters.append(
        "<label>contains <input data-filter='*' oninput='esenFilter()' size='12'></label>"
    )
    head = "".join(
        f"<th data-col='{html.escape(c, quote=True)}' onclick='esenSort(this)'>"
        f"{html.escape(_UNITS.get(c, c))}</th>"
        for c in table.columns
    )
    rows = "".join(
        "<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>"
        for row in table.itertuples(index=False)
    )
    return (
        f"<details id='results-section'><summary>Results ({len(table)} structures; "
        "click to open)</summary>\n"
        f"<div class='filters'>{''.join(filters)}<span><b id='shown'>{len(table)}</b> shown"
        f"</span><a download='esen-flows-results.csv' {link}>"
        "download CSV</a></div>\n"
        f"<table id='results'><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>{csv}"
        "</details>"
    )


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def write_report(
    store: JobStore | str | Path,
    out: str | Path,
    chemsys: str | None = None,
    metrics: dict[str, float] | None = None,
    title: str = "esen-flows screen",
    reference: JobStore | str | Path | None = None,
    kappa_reference: str | None = None,
) -> Path:
    """Write a self-contained HTML report of the screen in ``store``.

    Parameters
    ----------
    store
        A ``JobStore`` or the folder of an embedded store.
    out
        The HTML file to write (parent folders are created).
    chemsys
        ``"Cu-Au"`` restricts the summary, table and figures to structures within that system.
    metrics
        Classification metrics (``precision``, ``recall``, ``f1``, ``daf``, ``tp``, ...) to
        show as given (integers as they are, other numbers to 4 decimals); with ``tp``, ``fp``,
        ``tn`` and ``fn`` also as a confusion matrix.
    title
        Page title and heading.
    reference
        The store of the same structures screened with a reference potential: the metrics
        (computed when not given: stable = on the hull, converged structures matched by label),
        a confusion matrix and a parity plot of formation energies (eV/atom).
    kappa_reference
        A potential whose conductivities in ``store`` are the reference: SRE and SRME of the
        others against it.

    Returns
    -------
    Path
        The file written: summary, reference comparison, hulls, phonons and conductivity, then
        the results table (collapsed). Summary and figures come from the newest stability
        document of each label; the table holds ``hull_table(store, chemsys)``'s rows. A figure that
        fails leaves a one-line note in its place.
    """
    store = open_store(store)
    if chemsys is not None:  # "Cu, Au" -> "Au-Cu", the form hull_table matches
        chemsys = "-".join(sorted(_elements(chemsys)))
    docs = stability_documents(store, chemsys)  # the store's hull, computed once here
    table = hull_frame(docs, include_unconverged=True)
    heading = html.escape(title)
    scope = f"<p>Chemical system: {html.escape(chemsys)}</p>" if chemsys else ""
    sections = [
        _summary_html(store, docs),
        _metrics_html(docs, chemsys, metrics, reference),
        _hulls_html(docs),
        phonons_html(store, chemsys),
        conductivity_html(store, chemsys, kappa_reference),
        _results_html(table),
    ]
    page = (
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        f"<title>{heading}</title>\n<style>{CSS}</style>\n"
        f"<script>{plotly_js()}</script>\n<script>{SCRIPT}</script>\n</head>\n<body>\n"
        f"<h1>{heading}</h1>\n{scope}\n"
        + "\n".join(s for s in sections if s)
        + f"\n<script type='application/json' id='esen-flows-meta'>"
        f"{json.dumps({'structures': len(docs)})}</script>\n</body>\n</html>\n"
    )
    path = Path(out).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
