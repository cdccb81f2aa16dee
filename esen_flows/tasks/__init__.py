"""Per-batch work shared by the makers: skip what the store has, compute the rest, persist each
result as soon as it exists. These functions know documents and stores but nothing of jobflow,
so they run the same inside a job, a FireWorks launch or a plain script.

- ``relax``: relaxations, static evaluations and NVE energy conservation.
- ``phonons``: phonopy force constants and the phonon analysis.
"""

from esen_flows.tasks.phonons import PhononSettings, run_phonons
from esen_flows.tasks.relax import (
    NVESettings,
    RelaxSettings,
    input_key,
    precision,
    run_conservation,
    run_relaxations,
)

__all__ = [
    "NVESettings",
    "PhononSettings",
    "RelaxSettings",
    "input_key",
    "precision",
    "run_conservation",
    "run_phonons",
    "run_relaxations",
]
