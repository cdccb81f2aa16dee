"""Training eSEN on labelled frames: the paper's two-stage recipe, small enough for a laptop.

Stage 1 (``direct``): energy plus a direct-force head (an l=1 readout), no double backward, so
it is cheap. Stage 2 (``conservative``): the head is dropped and the same weights are fine-tuned
with forces = -dE/dr and stress = (1/V) dE/d(strain) by autograd. Losses: energy per atom (MAE),
forces (mean Euclidean norm of the error per atom, fairchem's "L2MAE") and stress (MAE of the
3x3 components in GPa, so that its weight is comparable), weighted. AdamW, linear warm-up then
cosine decay, an exponential moving average (EMA) of the weights that is what gets validated and
saved, early stopping on the validation loss, and a resumable state written every epoch.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from esen_flows.model import ESEN, ESENConfig
from esen_flows.model.allocator import keep_freed_memory
from esen_flows.model.esen import read_checkpoint
from esen_flows.training.frames import (
    Batch,
    Frame,
    batches,
    fit_element_energies,
    make_batch,
)

#: eV/A^3 -> GPa.
EV_A3_TO_GPA = 160.21766208

STAGES = ("direct", "conservative")


@dataclass(frozen=True)
class TrainSettings:
    """Settings of one training stage.

    Attributes
    ----------
    stage
        ``"direct"`` (direct-force head, no stress) or ``"conservative"`` (autograd forces and
        stress).
    epochs
        Most passes over the training frames (the cosine schedule spans them).
    batch_atoms
        Frames are grouped into batches of at most this many atoms.
    lr, weight_decay, warmup_fraction, final_lr_fraction
        AdamW learning rate, its decoupled weight decay, the share of steps with a linear
        warm-up, and the learning rate at the end of the cosine as a share of ``lr``.
    energy_weight, force_weight, stress_weight
        Loss weights on energy per atom (eV/atom), forces (eV/A) and stress (GPa).
    ema_decay
        Decay of the weights' moving average (0 disables it).
    patience
        Epochs without a better validation loss before stopping.
    max_minutes
        Wall-clock budget of the stage (None: none).
    clip_grad
        Largest gradient norm.
    seed
        Seed of the shuffling and of the initial weights.
    """

    stage: str = "conservative"
    epochs: int = 20
    batch_atoms: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-3
    warmup_fraction: float = 0.03
    final_lr_fraction: float = 0.02
    energy_weight: float = 20.0
    force_weight: float = 20.0
    stress_weight: float = 5.0
    ema_decay: float = 0.99
    patience: int = 8
    max_minutes: float | None = None
    clip_grad: float = 10.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {self.stage!r}")
        if self.epochs < 1 or self.batch_atoms < 1:
            raise ValueError("epochs and batch_atoms must be positive")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")


def predict(model: ESEN, batch: Batch, stage: str) -> dict[str, torch.Tensor]:
    """The model's energy, forces (and stress when conservative) for a batch."""
    if stage == "direct":
        return model(batch.data, direct=True, pass_atoms=None)
    return model(batch.data, compute_forces=True, compute_stress=True, pass_atoms=None)


def losses(out: dict[str, torch.Tensor], batch: Batch) -> dict[str, torch.Tensor]:
    """Energy-per-atom MAE (eV/atom), force L2MAE (eV/A) and stress MAE (GPa) of a batch."""
    natoms = batch.natoms.to(torch.float64)
    parts = {
        "energy": ((out["energy"] - batch.energy) / natoms).abs().mean(),
        "forces": (out["forces"] - batch.forces).norm(dim=-1).mean(),
    }
    if "stress" in out:
        parts["stress"] = (out["stress"] - batch.stress).abs().mean() * EV_A3_TO_GPA
    return parts


def total_loss(parts: dict[str, torch.Tensor], s: TrainSettings) -> torch.Tensor:
    loss = s.energy_weight * parts["energy"].float() + s.force_weight * parts["forces"]
    if "stress" in parts:
        loss = loss + s.stress_weight * parts["stress"]
    return loss


def evaluate_frames(
    model: ESEN, frames: Sequence[Frame], stage: str = "conservative", batch_atoms: int = 512
) -> dict[str, float]:
    """Errors on frames: ``energy_mae`` (meV/atom), ``force_mae`` (meV/A, per component),
    ``stress_mae`` (GPa, per 3x3 component; conservative only) and ``loss`` terms."""
    was_training = model.training
    model.eval()
    e_err, f_err, s_err, l2 = [], [], [], []
    try:
        for idx in batches(frames, batch_atoms):
            b = make_batch([frames[i] for i in idx], next(model.parameters()).dtype)
            out = predict(model, b, stage)
            e_err.append(((out["energy"].detach() - b.energy) / b.natoms).abs())
            df = out["forces"].detach().double() - b.forces.double()
            f_err.append(df.abs().flatten())
            l2.append(df.norm(dim=-1))
            if "stress" in out:
                s_err.append((out["stress"].detach().double() - b.stress.double()).abs().flatten())
    finally:
        model.train(was_training)
    result = {
        "energy_mae": float(torch.cat(e_err).mean()) * 1e3,
        "force_mae": float(torch.cat(f_err).mean()) * 1e3,
        "force_l2mae": float(torch.cat(l2).mean()) * 1e3,
        "frames": len(frames),
    }
    if s_err:
        result["stress_mae"] = float(torch.cat(s_err).mean()) * EV_A3_TO_GPA
    return result


def _val_loss(metrics: dict[str, float], s: TrainSettings) -> float:
    loss = (
        s.energy_weight * metrics["energy_mae"] / 1e3
        + s.force_weight * metrics["force_l2mae"] / 1e3
    )
    if "stress_mae" in metrics and s.stage == "conservative":
        loss += s.stress_weight * metrics["stress_mae"]
    return loss


class EMA:
    """Exponential moving average of a model's floating-point state; the decay warms up as
    min(decay, (1 + n) / (10 + n)) over the first updates, so short runs are not stuck near
    the initial weights."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.updates = 0
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for k, v in model.state_dict().items():
            if v.is_floating_point() and k != "element_energies":
                self.shadow[k].mul_(decay).add_(v.detach(), alpha=1 - decay)
            else:
                self.shadow[k].copy_(v)

    def copy_to(self, model: torch.nn.Module) -> None:
        model.load_state_dict(self.shadow)


def _schedule(step: int, total: int, s: TrainSettings) -> float:
    warm = max(1, int(s.warmup_fraction * total))
    if step < warm:
        return (step + 1) / warm
    t = min(1.0, (step - warm) / max(1, total - warm))
    return s.final_lr_fraction + (1 - s.final_lr_fraction) * 0.5 * (1 + math.cos(math.pi * t))


@dataclass
class TrainResult:
    """What a stage produced.

    Attributes
    ----------
    model
        The best epoch's EMA weights, read back from ``<stage>.pt``.
    best
        That epoch's validation metrics (``evaluate_frames``: ``energy_mae`` meV/atom,
        ``force_mae`` and ``force_l2mae`` meV/A, ``stress_mae`` GPa when conservative,
        ``frames``), with ``epoch``, ``lr`` and ``val_loss``.
    history
        The same metrics for every epoch, in order (across resumes).
    stopped
        Why training ended: ``"epochs"``, ``"early stopping"`` or ``"time budget"``.
    """

    model: ESEN
    best: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    stopped: str = ""


def train_stage(
    model: ESEN,
    train_frames: Sequence[Frame],
    val_frames: Sequence[Frame],
    settings: TrainSettings,
    out_dir: str | Path,
    resume: bool = True,
    progress: bool = True,
) -> TrainResult:
    """Train ``model`` in place for one stage; write ``<stage>.pt`` (best EMA weights, a
    checkpoint) and ``<stage>-state.pt`` (resumable state) to ``out_dir`` after each epoch.

    With ``resume`` and an existing state file of the same stage, training continues from it.
    """
    from tqdm.auto import tqdm

    if settings.stage == "direct" and model.force_head is None:
        raise ValueError("the direct stage needs a model with direct_forces=True")
    if not train_frames or not val_frames:
        raise ValueError("training needs at least one training and one validation frame")
    keep_freed_memory()  # CPU training: reuse freed edge tensors instead of page-faulting
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    best_path = out_dir / f"{settings.stage}.pt"
    state_path = out_dir / f"{settings.stage}-state.pt"

    torch.manual_seed(settings.seed)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
    )
    steps_per_epoch = len(batches(train_frames, settings.batch_atoms))
    total_steps = steps_per_epoch * settings.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: _schedule(step, total_steps, settings)
    )
    ema = EMA(model, settings.ema_decay)
    history: list[dict[str, float]] = []
    best: dict[str, float] = {}
    best_loss, epoch, bad_epochs, elapsed = math.inf, 0, 0, 0.0

    if resume and state_path.is_file():
        state = read_checkpoint(state_path)
        if state["metadata"].get("settings") != _plain(asdict(settings)):
            raise ValueError(f"{state_path}: saved with other settings; remove it to start anew")
        model.load_state_dict(state["state_dict"])
        t = state["training"]
        optimizer.load_state_dict(t["optimizer"])
        scheduler.load_state_dict(t["scheduler"])
        ema.shadow, ema.updates = t["ema"], t["ema_updates"]
        history, best = t["history"], t["best"]
        best_loss, epoch, bad_epochs, elapsed = (
            t["best_loss"],
            t["epoch"],
            t["bad_epochs"],
            t["elapsed"],
        )

    rng = np.random.default_rng(settings.seed + 1000 * epoch)
    model.train()
    stopped = "epochs"
    start = time.perf_counter() - elapsed
    while epoch < settings.epochs:
        if bad_epochs >= settings.patience:
            stopped = "early stopping"
            break
        if settings.max_minutes is not None and elapsed > 60 * settings.max_minutes:
            stopped = "time budget"
            break
        groups = batches(train_frames, settings.batch_atoms, rng)
        bar = tqdm(groups, desc=f"{settings.stage} epoch {epoch + 1}", disable=not progress)
        running: dict[str, float] = {}
        for idx in bar:
            batch = make_batch([train_frames[i] for i in idx], next(model.parameters()).dtype)
            parts = losses(predict(model, batch, settings.stage), batch)
            loss = total_loss(parts, settings)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite training loss at epoch {epoch + 1}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.clip_grad)
            optimizer.step()
            scheduler.step()
            ema.update(model)
            for k, v in parts.items():
                value = float(v.detach())
                running[k] = 0.9 * running.get(k, value) + 0.1 * value
            bar.set_postfix({k: f"{v:.4f}" for k, v in running.items()})
        epoch += 1
        live = copy.deepcopy(model.state_dict())
        ema.copy_to(model)
        metrics = evaluate_frames(model, val_frames, settings.stage)
        metrics.update(epoch=epoch, lr=float(scheduler.get_last_lr()[0]))
        metrics["val_loss"] = _val_loss(metrics, settings)
        history.append(metrics)
        if metrics["val_loss"] < best_loss:
            best_loss, best, bad_epochs = metrics["val_loss"], metrics, 0
            model.save(best_path, {"stage": settings.stage, "validation": metrics})
        else:
            bad_epochs += 1
        model.load_state_dict(live)
        elapsed = time.perf_counter() - start
        _save_state(
            model,
            state_path,
            settings,
            {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "ema": ema.shadow,
                "ema_updates": ema.updates,
                "history": history,
                "best": best,
                "best_loss": best_loss,
                "epoch": epoch,
                "bad_epochs": bad_epochs,
                "elapsed": elapsed,
            },
        )
        if progress:
            shown = {k: round(v, 3) for k, v in metrics.items() if k.endswith("mae")}
            tqdm.write(f"{settings.stage} epoch {epoch}: validation {shown}")
    best_model = ESEN.load(best_path)
    return TrainResult(model=best_model, best=best, history=history, stopped=stopped)


def _plain(obj: Any) -> Any:
    """Tuples to lists, so settings compare equal after a checkpoint round trip."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj


def _save_state(model: ESEN, path: Path, settings: TrainSettings, training: dict) -> None:
    """The resumable state, written atomically (a crash mid-write keeps the previous one)."""
    data = model.checkpoint({"settings": _plain(asdict(settings)), "stage": settings.stage})
    data["training"] = training
    tmp = path.with_suffix(".tmp")
    torch.save(data, tmp)
    tmp.replace(path)


def conservative_from_direct(direct: ESEN) -> ESEN:
    """The conservative model initialised with a direct model's weights (head dropped)."""
    config = replace(direct.config, direct_forces=False)
    model = ESEN(config)
    state = {k: v for k, v in direct.state_dict().items() if not k.startswith("force_head.")}
    model.load_state_dict(state)
    return model


def new_model(config: ESENConfig, train_frames: Sequence[Frame], seed: int = 0) -> ESEN:
    """A freshly initialised model whose element energies are fitted to the training frames."""
    torch.manual_seed(seed)
    model = ESEN(config)
    with torch.no_grad():
        model.element_energies.copy_(fit_element_energies(train_frames, model.num_elements))
    return model


#: The shipped tiny model's architecture: 2 layers, lmax 2, 32 channels, 6 A (EMT's longest
#: interaction range, for Ag, is 5.9 A).
def tiny_config(elements: Sequence[str], direct_forces: bool = False) -> ESENConfig:
    """The esen-emt-tiny architecture for ``elements``."""
    return ESENConfig(
        elements=tuple(elements),
        max_atomic_number=79,
        lmax=2,
        mmax=2,
        channels=32,
        hidden_channels=32,
        ffn_hidden_channels=64,
        edge_channels=32,
        num_layers=2,
        cutoff=6.0,
        num_rbf=32,
        energy_hidden_channels=32,
        direct_forces=direct_forces,
    )


@dataclass
class TwoStageResult:
    """The direct (stage 1) and conservative (stage 2) models and their results.

    Attributes
    ----------
    direct
        Stage 1: the model with the direct-force head.
    conservative
        Stage 2: the model fine-tuned from stage 1's best weights without the head (forces and
        stress by autograd).
    """

    direct: TrainResult
    conservative: TrainResult


def train_two_stage(
    config: ESENConfig,
    train_frames: Sequence[Frame],
    val_frames: Sequence[Frame],
    out_dir: str | Path,
    direct: TrainSettings,
    conservative: TrainSettings,
    resume: bool = True,
    progress: bool = True,
) -> TwoStageResult:
    """Direct-force pretraining, then conservative fine-tuning from its best weights.

    Writes ``direct.pt`` (the direct twin) and ``conservative.pt`` in ``out_dir``.
    """
    if direct.stage != "direct" or conservative.stage != "conservative":
        raise ValueError("pass the direct stage's settings first, then the conservative one's")
    model = new_model(replace(config, direct_forces=True), train_frames, seed=direct.seed)
    first = train_stage(model, train_frames, val_frames, direct, out_dir, resume, progress)
    second_model = conservative_from_direct(first.model)
    second = train_stage(
        second_model, train_frames, val_frames, conservative, out_dir, resume, progress
    )
    return TwoStageResult(direct=first, conservative=second)
