"""eSEN in torch + e3nn: smooth, conservative, batched (nothing about workflows)."""

from esen_flows.model.config import ESENConfig
from esen_flows.model.esen import ESEN, AtomsBatch, CheckpointError

__all__ = ["ESEN", "AtomsBatch", "CheckpointError", "ESENConfig"]
