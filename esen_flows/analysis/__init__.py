"""Pure functions on documents and stores: hull stability, metrics, queries, reports."""

from esen_flows.analysis.conductivity import kappa_metrics, plot_kappa, srd, sre, srme
from esen_flows.analysis.hull import compute_stability, elemental_references
from esen_flows.analysis.metrics import classification_metrics, compare_labels
from esen_flows.analysis.query import conductivity_table, hull_table, phonon_table, query

__all__ = [
    "classification_metrics",
    "compare_labels",
    "compute_stability",
    "conductivity_table",
    "elemental_references",
    "hull_table",
    "kappa_metrics",
    "phonon_table",
    "plot_kappa",
    "query",
    "srd",
    "sre",
    "srme",
]
