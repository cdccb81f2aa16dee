"""Per-batch work shared by the makers: skip what the store has, compute the rest, persist each
result as soon as it exists. These functions know documents and stores (a ``JobStore``) but no
jobs or flows, so they run the same inside a job, a FireWorks launch or a plain script.

- ``relax``: relaxations, static evaluations and NVE energy conservation.
- ``phonons``: phonopy force constants and the phonon analysis.
- ``conductivity``: phono3py fc2/fc3 and the lattice thermal conductivity.
- ``batch``: the skeleton every task shares (keys, reuse, failures, persistence, progress).
- ``relaxed_cells``: what phonons and conductivity share: the batch and its relaxation under
  symmetry.
- ``settings``: every task's settings, declared once (makers hold them);
  ``conductivity_settings``: ``ConductivitySettings``.
"""

from esen_flows.tasks.conductivity import run_conductivity
from esen_flows.tasks.conductivity_settings import ConductivitySettings
from esen_flows.tasks.phonons import run_phonons
from esen_flows.tasks.relax import input_key, precision, run_conservation, run_relaxations
from esen_flows.tasks.settings import NVESettings, PhononSettings, RelaxSettings, SymmetricRelax

__all__ = [
    "ConductivitySettings",
    "NVESettings",
    "PhononSettings",
    "RelaxSettings",
    "SymmetricRelax",
    "input_key",
    "precision",
    "run_conductivity",
    "run_conservation",
    "run_phonons",
    "run_relaxations",
]
