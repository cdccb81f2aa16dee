"""Classification metrics for stability predictions, as Matbench Discovery reports them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def classification_metrics(
    predicted: Sequence[bool] | np.ndarray, reference: Sequence[bool] | np.ndarray
) -> dict[str, float]:
    """Precision, recall, F1, accuracy and DAF of predicted stability against reference labels.

    DAF (discovery acceleration factor) = precision / prevalence of stable structures in the
    reference. Undefined ratios (a zero denominator) are NaN.

    Parameters
    ----------
    predicted, reference
        Booleans per structure, True = stable.

    Returns
    -------
    dict
        ``tp``, ``fp``, ``tn``, ``fn``, ``precision``, ``recall``, ``f1``, ``accuracy``,
        ``prevalence``, ``daf``.
    """
    pred = np.asarray(predicted, dtype=bool)
    ref = np.asarray(reference, dtype=bool)
    if pred.shape != ref.shape:
        raise ValueError(f"predicted has {pred.size} labels but reference has {ref.size}")
    if pred.size == 0:
        raise ValueError("no labels to compare")
    tp = int(np.sum(pred & ref))
    fp = int(np.sum(pred & ~ref))
    tn = int(np.sum(~pred & ~ref))
    fn = int(np.sum(~pred & ref))

    def ratio(a: float, b: float) -> float:
        return a / b if b else float("nan")

    precision = ratio(tp, tp + fp)
    recall = ratio(tp, tp + fn)
    f1 = ratio(2 * precision * recall, precision + recall) if tp else (0.0 if fp + fn else np.nan)
    prevalence = ratio(tp + fn, pred.size)
    return {
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "precision": precision,
        "recall": recall,
        "f1": float(f1),
        "accuracy": ratio(tp + tn, pred.size),
        "prevalence": prevalence,
        "daf": ratio(precision, prevalence),
    }


def compare_labels(
    predicted: Mapping[str, bool], reference: Mapping[str, bool]
) -> dict[str, float]:
    """``classification_metrics`` over the labels both mappings share (label -> stable)."""
    common = sorted(set(predicted) & set(reference))
    if not common:
        raise ValueError("the two label sets share no structure")
    return classification_metrics(
        [predicted[k] for k in common], [reference[k] for k in common]
    ) | {"n": len(common)}
