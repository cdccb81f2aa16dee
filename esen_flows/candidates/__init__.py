"""Ordered Cu-Au-Ag-Pd candidate crystals for a screen: derivative superstructures of fcc, bcc
and hcp, decorated with two or three elements, deterministic (``generate_candidates``).
``python -m esen_flows.candidates --out FILE`` writes them as extxyz."""

from esen_flows.candidates.enumeration import FCC_LATTICE_CONSTANTS, PARENTS
from esen_flows.candidates.generate import generate_candidates, main, vegard_volume_per_atom

__all__ = [
    "FCC_LATTICE_CONSTANTS",
    "PARENTS",
    "generate_candidates",
    "main",
    "vegard_volume_per_atom",
]
