"""Deprecated: the eSEN potential is ``esen_flows.potentials.esen`` (``ESENPotential``,
``ESENCalculator``, ``load_potential`` are also importable from ``esen_flows.potentials``).
This module goes in the next release."""

import warnings
from typing import Any

from esen_flows.potentials import esen as _esen
from esen_flows.potentials.esen import ESENCalculator, ESENPotential, load_potential  # noqa: F401
from esen_flows.potentials.zoo import SHIPPED, ZOO  # noqa: F401


def __getattr__(name: str) -> Any:
    """Every other old name (``CPU_BATCH_BYTES``, ``resolve_device``, ...) read from where it
    lives now, so reading it here sees what the module itself uses."""
    return getattr(_esen, name)


warnings.warn(
    "esen_flows.esen_potential is deprecated: import from esen_flows.potentials",
    DeprecationWarning,
    stacklevel=2,
)
