"""The interactive figures of the report (plotly): convex hulls, the formation-energy parity
plot, phonon bands with DOS, and kappa(T).

Each builder returns a ``plotly.graph_objects.Figure``; ``figure_div`` turns one into an HTML
fragment that draws it with the plotly.js the page inlines once (``plotly_js``), so the report
needs no network. Energies in eV/atom, frequencies in THz, kappa in W/(m K).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.core import Composition

from esen_flows.analysis.report_plots import _elements, _within, hull_entries
from esen_flows.schemas import StabilityDocument

#: Colours of stable, unstable and unconverged structures.
COLOURS = {"stable": "#1a9641", "unstable": "#d7191c", "unconverged": "#7f7f7f"}
_LAYOUT: dict[str, Any] = dict(
    template="plotly_white", margin=dict(l=60, r=20, t=50, b=50), height=430
)


def plotly_js() -> str:
    """plotly.js itself (minified), to inline once per page."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def one_line(text: str) -> str:
    """``text`` escaped for HTML, on one line."""
    return html.escape(" ".join(str(text).split()))


def figure_or_note(fig_id: str, make: Any) -> str:
    """``make()``'s figure as a div with id ``fig_id`` (letters, digits and hyphens only), or a
    one-line note when building it fails."""
    try:
        return figure_div(make(), fig_id)
    except Exception as exc:
        note = f"{fig_id}: figure failed: {type(exc).__name__}: {exc}"
        return f"<p class='note'>{one_line(note)}</p>"


def figure_div(fig: go.Figure, div_id: str) -> str:
    """An HTML fragment that draws ``fig`` into ``<div id=div_id>`` with the page's
    plotly.js (none included here)."""
    return fig.to_html(
        full_html=False,
        include_plotlyjs=False,
        div_id=div_id,
        config={"displaylogo": False, "responsive": True},
    )


def _hover(doc: StabilityDocument) -> str:
    e_hull = "-" if doc.e_above_hull is None else f"{doc.e_above_hull:.4f} eV/atom"
    converged = {True: "yes", False: "no (step limit)", None: "-"}[doc.converged]
    return (
        f"<b>{html.escape(doc.label)}</b><br>{html.escape(doc.formula or '')}"
        f"<br>e_above_hull {e_hull}<br>converged {converged}"
    )


def _classes(
    docs: Sequence[StabilityDocument], diagram: PhaseDiagram
) -> dict[str, list[tuple[StabilityDocument, Composition, float]]]:
    """The documents of the diagram's system split into stable, unstable and unconverged,
    each with its composition and formation energy (eV/atom) on ``diagram``'s references."""
    out: dict[str, list[tuple[StabilityDocument, Composition, float]]] = {k: [] for k in COLOURS}
    elements = frozenset(str(e) for e in diagram.elements)
    for d in docs:
        if d.status != "ok" or d.energy_per_atom is None or not d.formula:
            continue
        if not _within(d, elements):
            continue
        comp = Composition(d.formula)
        entry = PDEntry(comp, d.energy_per_atom * comp.num_atoms, name=d.label)
        e_form = float(diagram.get_form_energy_per_atom(entry))
        kind = "unconverged" if d.converged is False else ("stable" if d.stable else "unstable")
        out[kind].append((d, comp.fractional_composition, e_form))
    return out


def _markers(kind: str, rows: list) -> dict[str, Any]:
    """The marker trace settings of one class of structures (colour, hover texts)."""
    return dict(
        mode="markers",
        name=kind,
        marker=dict(color=COLOURS[kind], size=9, line=dict(width=0.5, color="#222")),
        hovertext=[_hover(d) for d, _, _ in rows],
        hoverinfo="text",
    )


def hull_figure(docs: Sequence[StabilityDocument], chemsys: str) -> go.Figure:
    """The convex hull of a binary (formation energy against composition) or ternary
    (composition triangle with the hull's facets) system.

    Hover shows label, formula, energy above hull and whether the relaxation converged; the
    hull is rebuilt from the documents' energies and elemental references (``hull_entries``),
    stable and unstable structures are told apart by the documents' own verdicts (the
    store-wide hull), unconverged ones are drawn grey (no verdict).
    """
    elements = sorted(_elements(chemsys))
    if len(elements) not in (2, 3):
        raise ValueError(f"{chemsys}: hull figures are drawn for 2 or 3 elements")
    diagram = PhaseDiagram(hull_entries(docs, chemsys))
    classes = _classes(docs, diagram)
    fig = go.Figure()
    if len(elements) == 2:
        x_el = elements[1]
        hull = sorted(
            (e.composition.get_atomic_fraction(x_el), diagram.get_form_energy_per_atom(e))
            for e in diagram.stable_entries
        )
        fig.add_scatter(
            x=[p[0] for p in hull], y=[p[1] for p in hull], mode="lines",
            name="hull", line=dict(color="#444"), hoverinfo="skip",
        )  # fmt: skip
        for kind, rows in classes.items():
            if rows:
                fig.add_scatter(
                    x=[c.get_atomic_fraction(x_el) for _, c, _ in rows],
                    y=[e for _, _, e in rows],
                    **_markers(kind, rows),
                )
        fig.update_layout(
            title=f"{chemsys}", xaxis_title=f"x in {elements[0]}(1-x){x_el}(x)",
            yaxis_title="formation energy (eV/atom)", **_LAYOUT,
        )  # fmt: skip
        return fig
    a, b, c = elements
    for facet in diagram.facets:  # the hull's triangles, as edges on the composition triangle
        corners = [diagram.qhull_entries[i].composition for i in (*facet, facet[0])]
        fig.add_scatterternary(
            a=[k.get_atomic_fraction(a) for k in corners],
            b=[k.get_atomic_fraction(b) for k in corners],
            c=[k.get_atomic_fraction(c) for k in corners],
            mode="lines", line=dict(color="#999", width=1), hoverinfo="skip", showlegend=False,
        )  # fmt: skip
    for kind, rows in classes.items():
        if rows:
            fig.add_scatterternary(
                a=[k.get_atomic_fraction(a) for _, k, _ in rows],
                b=[k.get_atomic_fraction(b) for _, k, _ in rows],
                c=[k.get_atomic_fraction(c) for _, k, _ in rows],
                **_markers(kind, rows),
            )
    fig.update_layout(
        title=chemsys, ternary=dict(aaxis_title=a, baxis_title=b, caxis_title=c), **_LAYOUT
    )
    return fig


def parity_figure(
    predicted: Mapping[str, float],
    reference: Mapping[str, float],
    names: tuple[str, str],
    title: str = "formation energy (eV/atom)",
    log: bool = False,
) -> go.Figure:
    """A quantity of the model against the reference, matched by label (default: formation
    energies, eV/atom; ``log``: both axes logarithmic, for conductivities)."""
    labels = sorted(set(predicted) & set(reference))
    x = [reference[k] for k in labels]
    y = [predicted[k] for k in labels]
    lo, hi = (min(x + y), max(x + y)) if labels else (0.0, 1.0)
    fig = go.Figure()
    fig.add_scatter(
        x=[lo, hi], y=[lo, hi], mode="lines", line=dict(color="#999", dash="dash"),
        hoverinfo="skip", showlegend=False,
    )  # fmt: skip
    fig.add_scatter(
        x=x, y=y, mode="markers", marker=dict(size=7, color="#2b83ba"), showlegend=False,
        hovertext=[html.escape(k) for k in labels], hoverinfo="text+x+y",
    )  # fmt: skip
    fig.update_layout(
        title=title, xaxis_title=f"{names[1]} (reference)", yaxis_title=f"{names[0]} (model)",
        **_LAYOUT,
    )  # fmt: skip
    if log:
        fig.update_xaxes(type="log")
        fig.update_yaxes(type="log")
    return fig


_SUBSCRIPTS = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


def _tick(name: str) -> str:
    """A band-path label in plain text: ``$\\Sigma_0$`` -> ``Σ₀``, ``\\Gamma`` -> ``Γ``."""
    name = name.replace("$", "").replace("\\Gamma", "Γ").replace("\\Sigma", "Σ")
    name = name.replace("\\Delta", "Δ").replace("\\Lambda", "Λ").replace("GAMMA", "Γ")
    head, _, sub = name.partition("_")
    return head + sub.translate(_SUBSCRIPTS) if sub.isdigit() else name


def phonon_figure(bs: Any, dos: Any, title: str) -> go.Figure:
    """Band structure (THz along the path, imaginary frequencies negative) and, beside it on
    the same frequency axis, the DOS."""
    from plotly.subplots import make_subplots
    from pymatgen.phonon.plotter import PhononBSPlotter

    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, column_widths=[0.78, 0.22])
    if bs is not None:
        data = PhononBSPlotter(bs).bs_plot_data()
        xs: list[float | None] = []
        ys: list[float | None] = []
        for dist, freq in zip(data["distances"], data["frequency"], strict=True):
            for band in np.asarray(freq):  # every band of every segment in one trace
                xs += [round(float(x), 5) for x in dist] + [None]
                ys += [round(float(y), 5) for y in band] + [None]
        fig.add_scatter(
            x=xs, y=ys, mode="lines", line=dict(color="#2b83ba", width=1), showlegend=False,
            hovertemplate="%{y:.3f} THz<extra></extra>", row=1, col=1,
        )  # fmt: skip
        ticks, names = [], []
        for d, name in zip(data["ticks"]["distance"], data["ticks"]["label"], strict=True):
            name = _tick(name)
            if ticks and abs(d - ticks[-1]) < 1e-8:
                names[-1] = names[-1] if name == names[-1] else f"{names[-1]}|{name}"
                continue
            ticks.append(d)
            names.append(name)
        fig.update_xaxes(tickvals=ticks, ticktext=names, showgrid=True, row=1, col=1)
    if dos is not None:
        fig.add_scatter(
            x=list(dos.densities), y=list(dos.frequencies), mode="lines", fill="tozerox",
            line=dict(color="#444", width=1), showlegend=False, row=1, col=2,
            hovertemplate="%{y:.3f} THz: %{x:.3f}<extra></extra>",
        )  # fmt: skip
        fig.update_xaxes(title_text="DOS", row=1, col=2)
    fig.update_yaxes(title_text="frequency (THz)", row=1, col=1)
    fig.update_layout(title=title, **_LAYOUT)
    return fig


def kappa_figure(docs: Sequence[Any]) -> go.Figure:
    """kappa(T) (W/(m K), (xx+yy+zz)/3) of every conductivity document that has one."""
    fig = go.Figure()
    for d in docs:
        if d.kappa_mean and d.temperatures:
            fig.add_scatter(
                x=list(d.temperatures), y=list(d.kappa_mean), mode="lines+markers",
                name=f"{d.label} ({d.potential})",
                hovertemplate="%{x:.0f} K: %{y:.3f} W/(m K)<extra>" + html.escape(d.label)
                + "</extra>",
            )  # fmt: skip
    fig.update_layout(
        title="lattice thermal conductivity", xaxis_title="T (K)",
        yaxis_title="kappa (W/(m K))", **_LAYOUT,
    )  # fmt: skip
    return fig
