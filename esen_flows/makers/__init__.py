"""jobflow makers: thin dataclasses over the science in ``dynamics``, ``tasks`` and ``analysis``."""

from esen_flows.makers.conductivity import ThermalConductivityMaker
from esen_flows.makers.conservation import EnergyConservationMaker
from esen_flows.makers.phonons import PhononMaker
from esen_flows.makers.relax import BatchRelaxMaker, RelaxMaker, StaticMaker
from esen_flows.makers.screening import ScreeningMaker, stability_job

__all__ = [
    "BatchRelaxMaker",
    "EnergyConservationMaker",
    "PhononMaker",
    "RelaxMaker",
    "ScreeningMaker",
    "StaticMaker",
    "ThermalConductivityMaker",
    "stability_job",
]
