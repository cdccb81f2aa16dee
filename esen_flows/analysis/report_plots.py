"""The figures of the report: hull plots (pymatgen ``PDPlotter``) and the e_above_hull
histogram, as matplotlib figures or base64 PNG data URIs. Energies in eV/atom."""

from __future__ import annotations

import base64
import io
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from pymatgen.analysis.phase_diagram import PDEntry, PDPlotter, PhaseDiagram
from pymatgen.core import Composition

from esen_flows.schemas import ResultDocument, StabilityDocument

#: Largest number of elements of a chemical system that gets a hull plot.
MAX_PLOT_ELEMENTS = 3
#: Unstable structures up to this distance above the hull (eV/atom) are drawn.
SHOW_UNSTABLE = 0.2
#: Resolution of the embedded PNG images, dots per inch.
DPI = 100


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


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------


def pyplot() -> Any:
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
    plt = pyplot()
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
