"""The models shipped with esen-flows, in ``esen_flows/zoo`` (no torch needed to list them)."""

from pathlib import Path

#: The folder of the shipped models and their model card.
ZOO = Path(__file__).resolve().parent.parent / "zoo"

#: The shipped models: potential name -> file in ``ZOO``.
SHIPPED = {
    "esen-emt-tiny": "esen-emt-tiny.pt",
    "esen-emt-tiny-direct": "esen-emt-tiny-direct.pt",  # its direct-force twin (NVE studies)
}
