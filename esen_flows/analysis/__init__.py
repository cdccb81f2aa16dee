"""Pure functions on documents and stores: hull stability, metrics, queries, reports."""

from esen_flows.analysis.hull import compute_stability, elemental_references
from esen_flows.analysis.metrics import classification_metrics, compare_labels
from esen_flows.analysis.query import hull_table, phonon_table, query

__all__ = [
    "classification_metrics",
    "compare_labels",
    "compute_stability",
    "elemental_references",
    "hull_table",
    "phonon_table",
    "query",
]
