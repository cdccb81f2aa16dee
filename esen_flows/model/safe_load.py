"""Read torch checkpoint files as data: no pickle in them ever runs code.

Every file goes through ``torch.load(weights_only=True)``, which rebuilds tensors and plain
containers only. fairchem 2.x pickles a dataclass (``MLIPInferenceCheckpoint``) holding
OmegaConf containers; for exactly those classes an allow-list maps the names in the file onto
the inert stand-ins below, which only keep the data they are given (``__setstate__`` stores a
dict, nothing is called). ``to_plain`` then turns them into dicts, lists and scalars. Any other
global named in a file is refused with its name.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch


class UnsafeCheckpointError(ValueError):
    """A checkpoint file names code (a global) that is not on the allow-list."""


class _Inert:
    """Holds the pickled state of an allow-listed class; runs nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.__dict__["_args"] = args

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
            merged = {**(state[0] or {}), **(state[1] or {})}
            self.__dict__["_state"] = merged
        else:
            self.__dict__["_state"] = state

    @property
    def state(self) -> Any:
        return self.__dict__.get("_state", {})


class InferenceCheckpoint(_Inert):
    """Stand-in for fairchem 2.x ``MLIPInferenceCheckpoint`` (model_config, model_state_dict,
    ema_state_dict, tasks_config)."""


class ConfigNode(_Inert):
    """Stand-in for OmegaConf's ``DictConfig``, ``ListConfig`` and value nodes."""


class _Sentinel(_Inert):
    """Stand-in for type objects and metadata the file names (typing.Any, Metadata, ...)."""


def _plain_dict(*_args: Any) -> dict:
    """Stand-in for ``collections.defaultdict(factory)``: an empty dict (the factory unused)."""
    return {}


_NODES = ("AnyNode", "StringNode", "IntegerNode", "FloatNode", "BooleanNode", "BytesNode")
ALLOWED: list[tuple[Any, str]] = [
    (InferenceCheckpoint, "fairchem.core.units.mlip_unit.api.inference.MLIPInferenceCheckpoint"),
    (ConfigNode, "omegaconf.dictconfig.DictConfig"),
    (ConfigNode, "omegaconf.listconfig.ListConfig"),
    *[(ConfigNode, f"omegaconf.nodes.{name}") for name in _NODES],
    (_Sentinel, "omegaconf.base.ContainerMetadata"),
    (_Sentinel, "omegaconf.base.Metadata"),
    (_Sentinel, "typing.Any"),
    (_plain_dict, "collections.defaultdict"),
    (dict, "builtins.dict"),
    (list, "builtins.list"),
    (int, "builtins.int"),
    (float, "builtins.float"),
    (str, "builtins.str"),
    (bool, "builtins.bool"),
]


def load_data(path: str | Path, map_location: Any = "cpu") -> Any:
    """The content of a torch file, loaded with ``weights_only=True`` and the allow-list.

    Raises
    ------
    FileNotFoundError
        When there is no such file.
    UnsafeCheckpointError
        When the file names a global outside the allow-list (its name is given).
    ValueError
        When the file is not a torch checkpoint at all.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    try:
        with torch.serialization.safe_globals(ALLOWED):
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        text = str(exc)
        if re.search(r"GLOBAL [\w.]+|[Uu]nsupported global", text):
            names = _named_globals(path) or re.findall(r"GLOBAL ([\w.]+)", text)
            raise UnsafeCheckpointError(
                f"{path}: refused: the file asks to run or build {', '.join(names)}, which is "
                "not plain checkpoint data (esen-flows reads checkpoints as data only and never "
                "runs code from a file)"
            ) from None
        found = re.search(r"WeightsUnpickler error: \s*(.+)", text)
        detail = found.group(1).strip() if found else (text.strip().splitlines() or ["?"])[0]
        if "weights_only" in detail:  # torch's advice to unpickle unsafely is not passed on
            detail = type(exc).__name__
        raise ValueError(
            f"{path}: not an esen-flows checkpoint, nor a fairchem one it reads ({detail})"
        ) from None


def _named_globals(path: Path) -> list[str]:
    """Every global the file names that is not on the allow-list (read, never run)."""
    allowed = {name for _, name in ALLOWED}
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:
        return []
    return [n for n in names if n not in allowed]


def to_plain(obj: Any) -> Any:
    """OmegaConf stand-ins (and containers of them) as plain dicts, lists and scalars."""
    if isinstance(obj, ConfigNode):
        state = obj.state if isinstance(obj.state, dict) else {}
        if "_content" in state:
            return to_plain(state["_content"])
        return to_plain(state.get("_val"))
    if isinstance(obj, InferenceCheckpoint):
        return {k: to_plain(v) for k, v in obj.state.items()}
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_plain(v) for v in obj]
    if isinstance(obj, _Sentinel):
        return None
    return obj
