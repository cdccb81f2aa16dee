"""esen-emt-tiny as an ASE calculator that atomate2 can build from an import path.

atomate2 (0.1.5) turns ``force_field_name={"@module": ..., "@callable": ...}`` into the string
``"module.Class"`` and builds the calculator with ``Class(**calculator_kwargs)``
(``atomate2.forcefields.utils.ase_calculator``), so the class must be importable and take no
required arguments. This is how a user plugs a force field that atomate2 does not know into
``ForceFieldRelaxMaker``. The benchmark puts ``benchmarks/`` on ``sys.path``.
"""

from __future__ import annotations

from typing import Any

from esen_flows.potentials import get_potential
from esen_flows.potentials.esen import ESENCalculator

#: what ``ForceFieldRelaxMaker(force_field_name=...)`` is given
CALCULATOR_META = {"@module": "_atomate2_calc", "@callable": "ESENEmtTinyCalculator"}


class ESENEmtTinyCalculator(ESENCalculator):
    """``ESENCalculator`` over ``get_potential("esen-emt-tiny", device, dtype)``.

    ``get_potential`` caches the potential per process, so every job's calculator shares one
    loaded model: atomate2 is not charged for re-reading the checkpoint in each job.

    Parameters
    ----------
    device
        ``"cpu"``, ``"cuda"``, ...; atomate2 passes it from ``calculator_kwargs``.
    dtype
        ``"float32"`` (the model's default) or ``"float64"`` (phonons), also from
        ``calculator_kwargs``.
    """

    def __init__(self, device: str | None = None, dtype: str | None = None, **kwargs: Any):
        super().__init__(get_potential("esen-emt-tiny", device=device, dtype=dtype), **kwargs)
