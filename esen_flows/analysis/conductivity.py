"""Thermal-conductivity metrics exactly as Matbench Discovery defines them (after Pota,
Ahlawat, Csanyi and Simoncelli 2024, the k_SRME benchmark), tables and the kappa(T) plot.

- SRD = 2 (k_pred - k_ref) / (k_pred + k_ref) with k = (k_xx + k_yy + k_zz) / 3; a missing or
  NaN prediction counts as k_pred = 0, SRD = -2.
- SRE = |SRD|.
- SRME = 2 sum_{q,s} |k_pred(q,s) - k_ref(q,s)| / sum_q w_q / (k_pred + k_ref), the per-mode
  conductivities k(q,s) also averaged over xx, yy, zz and carrying their q-weights w_q. SRME is 2
  when the predicted structure has imaginary modes, its space group changed in the
  relaxation, or the calculation failed or gave NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from esen_flows.analysis.documents import latest_documents
from esen_flows.schemas import ConductivityDocument
from esen_flows.stores import load_mode_data

#: The metrics' worst value: what a failed, unstable or symmetry-broken prediction scores.
WORST = 2.0
#: Matbench Discovery's temperature, K.
MBD_TEMPERATURE = 300.0


def kappa_average(kappa: Any) -> np.ndarray:
    """Mean of the xx, yy, zz components over the last axis (Voigt order), W/(m K)."""
    return np.asarray(kappa, dtype=float)[..., :3].mean(axis=-1)


def srd(kappa_pred: float | None, kappa_ref: float) -> float:
    """Symmetric relative difference of two scalar conductivities; a missing or NaN prediction
    is a zero conductivity (-2)."""
    if kappa_ref is None or not math.isfinite(kappa_ref):
        raise ValueError(f"the reference conductivity must be a number, got {kappa_ref!r}")
    if kappa_pred is None or not math.isfinite(kappa_pred) or kappa_pred + kappa_ref == 0:
        return -WORST  # MBD: a NaN SRD (also 0 / 0) becomes -2
    return 2.0 * (kappa_pred - kappa_ref) / (kappa_pred + kappa_ref)


def sre(kappa_pred: float | None, kappa_ref: float) -> float:
    """Symmetric relative error |SRD|."""
    return abs(srd(kappa_pred, kappa_ref))


def srme(
    mode_kappa_pred: Any,
    weights_pred: Any,
    kappa_pred: float | None,
    mode_kappa_ref: Any,
    kappa_ref: float,
    imaginary: bool = False,
    symmetry_broken: bool = False,
) -> float:
    """Symmetric relative mean error of the mode-resolved conductivity at one temperature.

    Parameters
    ----------
    mode_kappa_pred, mode_kappa_ref
        (n_q, n_bands, 6) or (n_q, n_bands) per-mode conductivities, W/(m K), with their
        q-weights (``Conductivity.mode_kappa`` at one temperature), on the same q-points.
    weights_pred
        (n_q,) q-weights of the prediction (their sum is the number of mesh points).
    kappa_pred, kappa_ref
        Scalar conductivities (xx+yy+zz)/3, W/(m K).
    imaginary, symmetry_broken
        The prediction had imaginary modes / its relaxation changed the space group: 2.
    """
    if kappa_ref is None or not math.isfinite(kappa_ref):
        raise ValueError(f"the reference conductivity must be a number, got {kappa_ref!r}")
    if imaginary or symmetry_broken or mode_kappa_pred is None or kappa_pred is None:
        return WORST
    pred = np.asarray(mode_kappa_pred, dtype=float)
    weights = np.asarray(weights_pred, dtype=float)
    if not math.isfinite(kappa_pred) or np.isnan(pred).any() or np.isnan(weights).any():
        return WORST
    ref = np.asarray(mode_kappa_ref, dtype=float)
    if pred.ndim == 3:
        pred, ref = kappa_average(pred), kappa_average(ref)
    if pred.shape != ref.shape:
        raise ValueError(
            f"mode conductivities on different grids: {pred.shape} and {ref.shape} "
            "(the same mesh is needed)"
        )
    if kappa_pred + kappa_ref == 0:
        return WORST
    microscopic = np.abs(pred - ref).sum() / weights.sum()
    return float(2.0 * microscopic / (kappa_pred + kappa_ref))


@dataclass
class KappaRecord:
    """What the metrics need of one conductivity result at one temperature.

    Attributes
    ----------
    label
        The structure's label (``ConductivityDocument.label``); predictions and references are
        matched by it.
    kappa
        Scalar conductivity (xx + yy + zz) / 3 at the temperature, W/(m K); None when the
        result failed (``compare`` also ignores it whenever ``failed`` is set).
    mode_kappa
        (n_q, n_bands, 6) per-mode conductivities, W/(m K), with their q-weights, at the stored
        temperature nearest the one asked for (``load_mode_data``); None when failed.
    weights
        (n_q,) q-point weights (their sum is the number of mesh points); None when failed.
    imaginary
        The structure has imaginary modes (``dynamically_stable is False``); a prediction's
        SRME is then 2.
    symmetry_broken
        The relaxation changed the space group (False when unknown); a prediction's SRME is
        then 2.
    failed
        The document failed or has no conductivity, its mode data or temperature could not be
        read, or (built by ``kappa_metrics``) the prediction was never computed.
    reason
        Why it failed or is unstable (the document's reason, the read error, or
        ``"not computed"``); None otherwise.
    """

    label: str
    kappa: float | None
    mode_kappa: np.ndarray | None
    weights: np.ndarray | None
    imaginary: bool
    symmetry_broken: bool
    failed: bool
    reason: str | None

    @classmethod
    def from_document(
        cls, doc: ConductivityDocument, store: Any, temperature: float = MBD_TEMPERATURE
    ) -> KappaRecord:
        """The record of ``doc`` at ``temperature`` (K), its mode arrays read from ``store``."""
        failed = doc.status == "failed" or not doc.kappa_mean
        reason = doc.reason if failed or doc.dynamically_stable is False else None
        kappa = mode = weights = None
        if not failed:
            try:
                kappa = doc.kappa_at(temperature)
                data = load_mode_data(doc, store)
                t = int(np.argmin(np.abs(data["temperatures"] - temperature)))
                mode, weights = data["mode_kappa"][t], data["weights"]
            except (ValueError, KeyError) as exc:
                failed, reason = True, str(exc)
        return cls(
            label=doc.label,
            kappa=kappa,
            mode_kappa=mode,
            weights=weights,
            imaginary=doc.dynamically_stable is False,
            symmetry_broken=bool(doc.symmetry_broken),
            failed=failed,
            reason=reason,
        )


def compare(pred: KappaRecord, ref: KappaRecord) -> dict[str, Any]:
    """SRD, SRE and SRME of one prediction against its reference."""
    if ref.kappa is None or ref.mode_kappa is None:
        raise ValueError(f"{ref.label}: the reference has no conductivity ({ref.reason})")
    kappa = None if pred.failed else pred.kappa
    d = srd(kappa, ref.kappa)
    return {
        "label": pred.label,
        "kappa": kappa,
        "kappa_ref": ref.kappa,
        "srd": d,
        "sre": abs(d),
        "srme": srme(
            None if pred.failed else pred.mode_kappa,
            pred.weights,
            kappa,
            ref.mode_kappa,
            ref.kappa,
            imaginary=pred.imaginary,
            symmetry_broken=pred.symmetry_broken,
        ),
        "note": pred.reason or ("space group changed" if pred.symmetry_broken else ""),
    }


def kappa_metrics(
    store: Any,
    predicted: str,
    reference: str,
    temperature: float = MBD_TEMPERATURE,
    labels: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Per-structure SRD, SRE and SRME of one potential's conductivities against another's,
    both read from ``store``, matched by label.

    Parameters
    ----------
    store
        A ``JobStore`` or an embedded store's folder.
    predicted, reference
        Potential names (``ConductivityDocument.potential``).
    temperature
        K (Matbench Discovery: 300).
    labels
        Restrict to these structures (default: every label the reference has).

    Returns
    -------
    pandas.DataFrame
        label, kappa, kappa_ref (W/(m K)), srd, sre, srme, note; a structure the prediction
        lacks scores SRE = SRME = 2; one whose reference has no conductivity (unstable or
        failed) gets NaN metrics and a note, and pandas' ``df.sre.mean()`` and
        ``df.srme.mean()`` leave it out.
    """
    refs = {d.label: d for d in latest_documents(store, "conductivity", potential=reference)}
    preds = {d.label: d for d in latest_documents(store, "conductivity", potential=predicted)}
    rows = []
    for label in labels if labels is not None else sorted(refs):
        if label not in refs:
            raise ValueError(f"{label}: no reference conductivity from {reference!r}")
        ref = KappaRecord.from_document(refs[label], store, temperature)  # type: ignore[arg-type]
        if label in preds:
            pred = KappaRecord.from_document(preds[label], store, temperature)  # type: ignore[arg-type]
        else:
            pred = KappaRecord(label, None, None, None, False, False, True, "not computed")
        try:
            rows.append(compare(pred, ref))
        except ValueError as exc:  # nothing to score against (unstable or failed reference)
            nan = float("nan")
            rows.append(
                {
                    "label": label,
                    "kappa": pred.kappa,
                    "kappa_ref": ref.kappa,
                    "srd": nan,
                    "sre": nan,
                    "srme": nan,
                    "note": str(exc),
                }
            )
    return pd.DataFrame(rows, columns=["label", "kappa", "kappa_ref", "srd", "sre", "srme", "note"])


#: Columns of ``conductivity_frame``.
CONDUCTIVITY_COLUMNS = [
    "label",
    "formula",
    "status",
    "dynamically_stable",
    "kappa",
    "kappa_particle",
    "kappa_coherence",
    "mesh",
    "n_fc3_displacements",
    "symmetry_broken",
    "reason",
]


def conductivity_frame(
    docs: Sequence[ConductivityDocument], temperature: float = MBD_TEMPERATURE
) -> pd.DataFrame:
    """One row per conductivity document: kappa, its particle and coherence parts at
    ``temperature`` (W/(m K), (xx+yy+zz)/3), the stability verdict and the grid."""
    rows = []
    for d in docs:
        row = {c: getattr(d, c, None) for c in CONDUCTIVITY_COLUMNS}
        for name, source in (
            ("kappa", d.kappa),
            ("kappa_particle", d.kappa_particle),
            ("kappa_coherence", d.kappa_coherence),
        ):
            row[name] = None
            if source and d.temperatures and temperature in d.temperatures:
                row[name] = float(kappa_average(source[d.temperatures.index(temperature)]))
        row["mesh"] = "x".join(map(str, d.mesh)) if d.mesh else None
        rows.append(row)
    return pd.DataFrame(rows, columns=CONDUCTIVITY_COLUMNS)


def plot_kappa(docs: Sequence[ConductivityDocument], ax: Any = None, max_lines: int = 12) -> Any:
    """kappa(T), (xx+yy+zz)/3 in W/(m K) on a log axis, one line per structure (the
    ``max_lines`` highest at 300 K, or the nearest temperature); returns the matplotlib axes."""
    from matplotlib.figure import Figure

    if ax is None:  # no pyplot: works headless and in threads
        ax = Figure(figsize=(6, 4), layout="constrained").add_subplot()
    done = [d for d in docs if d.kappa_mean and d.temperatures]

    def rank(d: ConductivityDocument) -> float:
        temps = np.asarray(d.temperatures)
        i = int(np.argmin(np.abs(temps - MBD_TEMPERATURE)))
        return float(d.kappa_mean[i])  # at 300 K, or the nearest temperature computed

    done.sort(key=lambda d: -rank(d))
    for d in done[:max_lines]:
        temps = np.asarray(d.temperatures)
        kappa = np.asarray(d.kappa_mean)
        keep = (temps > 0) & (kappa > 0)
        style = "o-" if keep.sum() < 5 else "-"
        ax.plot(temps[keep], kappa[keep], style, label=f"{d.label} ({d.formula})", ms=4)
    ax.set_yscale("log")
    ax.set_xlabel("temperature (K)")
    ax.set_ylabel(r"$\kappa$ (W m$^{-1}$ K$^{-1}$), (xx+yy+zz)/3")
    if done:
        ax.legend(fontsize=7)
    ax.set_title("lattice thermal conductivity")
    return ax
