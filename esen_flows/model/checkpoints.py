"""One entry point for every checkpoint format esen-flows reads, and conversion to its own.

``load_model`` reads a file once, as data, and dispatches on what it holds: an esen-flows
checkpoint (``ESEN.save``), a fairchem 1.x trainer checkpoint or a fairchem 2.x inference
checkpoint (``esen_flows.model.fairchem``). ``convert`` writes esen-flows' own plain-data
checkpoint of any of them, with the provenance of the source.
"""

from __future__ import annotations

from pathlib import Path

from esen_flows import __version__
from esen_flows.model.esen import ESEN, CheckpointError, check_checkpoint
from esen_flows.model.fairchem import detect_format, load_fairchem
from esen_flows.model.safe_load import load_data


def load_model(
    path: str | Path, task: str | None = None, charge: int = 0, spin: int | None = None
) -> ESEN:
    """The ``ESEN`` of a checkpoint file of any supported format (see the module docstring).

    ``task``, ``charge`` and ``spin`` apply to fairchem 2.x files (``load_fairchem``).

    Raises
    ------
    CheckpointError
        Missing, unreadable, unsafe (names code) or unsupported files, with the reason.
    """
    path = Path(path).expanduser()
    try:
        data = load_data(path)
    except (FileNotFoundError, ValueError) as exc:
        raise CheckpointError(str(exc)) from None
    kind = detect_format(data)
    if kind == "esen-flows":
        return ESEN.from_checkpoint(check_checkpoint(data, path), path)
    if kind.startswith("fairchem"):
        return load_fairchem(path, task=task, charge=charge, spin=spin, data=data)
    raise CheckpointError(
        f"{path}: neither an esen-flows nor a fairchem eSEN checkpoint (a dict with "
        "'format' or 'config'+'state_dict', or fairchem 2.x's MLIPInferenceCheckpoint)"
    )


def convert(
    source: str | Path,
    target: str | Path,
    task: str | None = None,
    charge: int = 0,
    spin: int | None = None,
) -> ESEN:
    """Write esen-flows' plain-data checkpoint of ``source`` to ``target``.

    The metadata keep the source's provenance (format, head, weights used, normalizers, its
    sha256 and the fairchem backbone fields) under ``"source"``.
    """
    source, target = Path(source).expanduser(), Path(target).expanduser()
    if source.resolve() == target.resolve():
        raise CheckpointError(f"{target}: the output would overwrite the input")
    model = load_model(source, task=task, charge=charge, spin=spin)
    metadata = dict(getattr(model, "metadata", {}) or {})
    metadata["converted_by"] = f"esen-flows {__version__}"
    model.save(target, metadata=metadata)
    model.metadata = metadata
    return model
