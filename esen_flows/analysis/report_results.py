"""The phonon and conductivity sections of the HTML report (``analysis.report``): tables
and interactive figures of the phonon and conductivity results in a store."""

from __future__ import annotations

import html

import pandas as pd
from jobflow import JobStore

from esen_flows.analysis.query import latest_documents, phonon_documents, phonon_frame
from esen_flows.analysis.report_figures import (
    figure_or_note,
    kappa_figure,
    parity_figure,
    phonon_figure,
)
from esen_flows.stores import load_band_structure

#: Largest number of phonon band-structure/DOS plots in a report (unstable ones first).
MAX_PHONON_PLOTS = 24


def _section(title: str, text: str, table: pd.DataFrame, digits: dict[str, int]) -> list[str]:
    """A heading, its explanation and ``table`` (without ``reason``; the ``digits`` columns
    rounded, missing values empty) as the first parts of a section."""
    shown = table.drop(columns=["reason"]).copy()
    for col, n in digits.items():
        shown[col] = shown[col].map(lambda v, n=n: "" if pd.isna(v) else f"{v:.{n}f}")
    return [
        f"<h2>{title}</h2>",
        f"<p>{text}</p>",
        shown.to_html(index=False, border=0, na_rep="", escape=True),
    ]


def phonons_html(store: JobStore, chemsys: str | None) -> str:
    """Dynamic-stability table and interactive band structure + DOS of the phonon results."""
    all_docs = phonon_documents(store, chemsys=chemsys)  # read and decoded once
    if not all_docs:
        return ""
    numbers = ("min_frequency", "max_frequency", "free_energy", "entropy", "heat_capacity")
    parts = _section(
        "Phonons",
        "Frequencies in THz (imaginary ones negative); free energy (kJ/mol), entropy and heat "
        "capacity (J/K/mol) at 300 K per mole of primitive cells. Dynamically stable: acoustic "
        "modes at Gamma above -0.01 THz, every other mode non-negative.",
        phonon_frame(all_docs),
        {col: 4 for col in numbers},
    )
    docs = [d for d in all_docs if d.status == "ok"]
    docs.sort(key=lambda d: (bool(d.dynamically_stable), d.label))
    figures = []
    for i, doc in enumerate(docs[:MAX_PHONON_PLOTS]):
        verdict = "stable" if doc.dynamically_stable else "UNSTABLE"
        title = f"{doc.label} ({doc.formula}, {doc.potential}): {verdict}"
        figures.append(
            figure_or_note(
                f"phonon-{i}",
                lambda d=doc, t=title: phonon_figure(load_band_structure(d, store), d.dos, t),
            )
        )
    parts.append(f"<div class='grid'>{''.join(figures)}</div>")
    if len(docs) > MAX_PHONON_PLOTS:
        parts.append(f"<p>{len(docs) - MAX_PHONON_PLOTS} more phonon results not plotted.</p>")
    return "\n".join(parts)


def conductivity_html(store: JobStore, chemsys: str | None, reference: str | None) -> str:
    """Conductivity table at 300 K, kappa(T), and against a reference potential the SRE/SRME
    table (Matbench Discovery's definitions)."""
    from esen_flows.analysis.conductivity import conductivity_frame, kappa_metrics

    docs = latest_documents(store, "conductivity", chemsys=chemsys)
    if not docs:
        return ""
    parts = _section(
        "Lattice thermal conductivity",
        "kappa at 300 K in W/(m K), (xx+yy+zz)/3 (phono3py); the coherence part is that of the "
        "Wigner equation when it was included. Structures with imaginary modes get no kappa.",
        conductivity_frame(docs),  # type: ignore[arg-type]
        {col: 3 for col in ("kappa", "kappa_particle", "kappa_coherence")},
    )
    if any(d.kappa_mean for d in docs):  # type: ignore[attr-defined]
        parts.append("<p>kappa against temperature:</p>")
        parts.append(figure_or_note("kappa", lambda: kappa_figure(docs)))
    if reference is not None:
        labels = sorted({d.label for d in docs})
        others = sorted({d.potential for d in docs} - {reference})
        if reference not in {d.potential for d in docs}:
            parts.append(
                f"<p class='note'>No conductivity of the reference potential "
                f"{html.escape(reference)} in this store.</p>"
            )
            others = []
        for k, potential in enumerate(others):
            scores = kappa_metrics(store, potential, reference, labels=labels)
            parts.append(
                f"<p>{html.escape(potential)} against {html.escape(reference)}: mean SRE "
                f"{scores.sre.mean():.3f}, mean SRME {scores.srme.mean():.3f}</p>"
                + scores.to_html(index=False, border=0, na_rep="", float_format="{:.3f}".format)
            )
            ok = scores.dropna(subset=["kappa", "kappa_ref"])
            ok = ok[(ok.kappa > 0) & (ok.kappa_ref > 0)]
            if ok.empty:
                continue
            pred = dict(zip(ok.label, ok.kappa, strict=True))
            ref = dict(zip(ok.label, ok.kappa_ref, strict=True))
            parts.append(
                figure_or_note(
                    f"kappa-parity-{k}",
                    lambda p=pred, r=ref, n=(potential, reference): parity_figure(
                        p, r, n, title="kappa at 300 K (W/(m K))", log=True
                    ),
                )
            )
    return "\n".join(parts)
