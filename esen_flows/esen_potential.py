"""Deprecated: the eSEN potential is ``esen_flows.potentials.esen`` (``ESENPotential``,
``ESENCalculator``, ``load_potential`` are also importable from ``esen_flows.potentials``).
This module goes in the next release."""

import warnings

from esen_flows.potentials.esen import (  # noqa: F401 - the old names
    CPU_BATCH_BYTES,
    ESENCalculator,
    ESENPotential,
    load_potential,
)
from esen_flows.potentials.zoo import SHIPPED, ZOO  # noqa: F401

warnings.warn(
    "esen_flows.esen_potential is deprecated: import from esen_flows.potentials",
    DeprecationWarning,
    stacklevel=2,
)
