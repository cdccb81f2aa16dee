"""The recipe that makes ``esen-emt-tiny``: reference data, two-stage training, test errors.

``run_recipe(Recipe(), out_dir)`` is what ``esen-flows train --out DIR`` runs: it generates the
EMT dataset (unless ``DIR/data`` already holds one), pretrains with the direct-force head,
fine-tunes conservatively, measures both models on the test split, and writes
``DIR/<name>.pt`` (conservative), ``DIR/<name>-direct.pt`` (the direct twin) and
``DIR/metrics.json``. Interrupted, it resumes from the last finished epoch.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from esen_flows.model import ESEN
from esen_flows.potentials import get_potential
from esen_flows.training.data import DatasetSettings, generate_dataset, read_frames, write_dataset
from esen_flows.training.train import (
    Frame,
    TrainSettings,
    _plain,
    evaluate_frames,
    tiny_config,
    train_two_stage,
)


@dataclass(frozen=True)
class Recipe:
    """Everything that determines the trained model (and nothing that does not).

    Attributes
    ----------
    name
        The model's name: ``<name>.pt`` (conservative) and ``<name>-direct.pt`` are written.
    reference
        The potential (a ``get_potential`` name) that labels the dataset.
    dataset
        How the reference data are made; its elements are also the model's.
    direct
        Settings of stage 1, direct-force pretraining.
    conservative
        Settings of stage 2, conservative fine-tuning from stage 1's best weights.
    """

    name: str = "esen-emt-tiny"
    reference: str = "emt"
    dataset: DatasetSettings = field(default_factory=DatasetSettings)
    direct: TrainSettings = field(
        default_factory=lambda: TrainSettings(stage="direct", epochs=16, lr=3e-3, patience=10)
    )
    conservative: TrainSettings = field(
        default_factory=lambda: TrainSettings(
            stage="conservative",
            epochs=30,
            lr=1e-3,
            patience=10,
            warmup_fraction=0.01,
            energy_weight=50.0,
            stress_weight=10.0,
        )
    )

    def as_dict(self) -> dict[str, Any]:
        return _plain(asdict(self))


def _frames(path: Path) -> list[Frame]:
    return [Frame.from_atoms(a) for a in read_frames(path)]


def ensure_dataset(recipe: Recipe, folder: Path, progress: bool = True) -> Path:
    """The dataset in ``folder``, generated with the reference potential when absent."""
    manifest = folder / "dataset.json"
    if manifest.is_file():
        saved = json.loads(manifest.read_text())
        if saved.get("settings") != _plain(asdict(recipe.dataset)):
            raise ValueError(f"{folder}: holds a dataset made with other settings")
        return folder
    splits = generate_dataset(get_potential(recipe.reference), recipe.dataset, progress)
    return write_dataset(splits, folder, recipe.dataset, recipe.reference)


def run_recipe(
    recipe: Recipe, out_dir: str | Path, resume: bool = True, progress: bool = True
) -> dict[str, Any]:
    """Make the dataset, train both stages, evaluate on the test split; the metrics dict.

    Shipped files carry the recipe, the dataset manifest and the test errors as metadata.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    data = ensure_dataset(recipe, out / "data", progress)
    train, val, test = (_frames(data / f"{s}.extxyz") for s in ("train", "val", "test"))
    config = tiny_config(recipe.dataset.elements)
    result = train_two_stage(
        config, train, val, out / "stages", recipe.direct, recipe.conservative, resume, progress
    )
    torch.manual_seed(0)
    metrics = {
        "conservative": evaluate_frames(result.conservative.model, test, "conservative"),
        "direct": evaluate_frames(result.direct.model, test, "direct"),
        "validation": {
            "conservative": result.conservative.best,
            "direct": result.direct.best,
        },
        "stopped": {"direct": result.direct.stopped, "conservative": result.conservative.stopped},
        "parameters": result.conservative.model.num_parameters(),
        "wall_time_s": time.perf_counter() - start,
        "threads": torch.get_num_threads(),
    }
    manifest = json.loads((data / "dataset.json").read_text())
    meta = {"recipe": recipe.as_dict(), "dataset": manifest, "test": metrics["conservative"]}
    save_model(result.conservative.model, out / f"{recipe.name}.pt", meta)
    direct_meta = {**meta, "test": metrics["direct"], "twin_of": recipe.name}
    save_model(result.direct.model, out / f"{recipe.name}-direct.pt", direct_meta)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def save_model(model: ESEN, path: Path, metadata: dict[str, Any]) -> Path:
    """Save in float32 (the shipped size) with plain-data metadata."""
    model = model.float()
    return model.save(path, json.loads(json.dumps(metadata)))
