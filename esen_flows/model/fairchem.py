"""Read fairchem's eSEN checkpoints (1.x trainer files and 2.x inference files) as ``ESEN``.

fairchem-core 1.x (``esen_30m_oam.pt``, ``esen_30m_mptrj.pt``, ``esen_30m_omat.pt``): the dict
``BaseTrainer.save`` writes, with ``config["model"]`` a hydra model of an ``esen_backbone`` and
an ``esen_mlp_efs_head``; ``state_dict`` (keys may start with ``module.``), ``normalizers``
(``{target: {mean, rmsd}}``) and ``elementrefs`` (``{energy: {element_references}}``). Its
``OCPCalculator`` builds the trainer ``inference_only``, which never loads the ``ema`` entry:
the raw weights run, and so they do here.

fairchem-core 2.x (the OMol25 ``esen_sm_conserving_all.pt`` and kin): a pickled
``MLIPInferenceCheckpoint`` whose ``model_config`` names an ``eSCNMDBackbone`` and an
``MLP_EFS_Head``; ``load_predict_unit`` runs the EMA weights (``ema_state_dict``, ``module.``
keys and ``n_averaged``) and each task's normalizer and element references. The charge, spin
and dataset embeddings become one constant vector for the system chosen at load time.

Anything the published eSEN files do not use (``act_type="s2"``, a grid feed-forward, a
mixture-of-experts backbone, another head, direct forces) is refused with the field and its
value. Files are read by ``safe_load.load_data``: nothing in them runs.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import torch

from esen_flows.model.config import ESENConfig
from esen_flows.model.esen import ESEN, CheckpointError
from esen_flows.model.safe_load import InferenceCheckpoint, load_data, to_plain

V1_BACKBONES = ("esen_backbone",)
V1_HEADS = ("esen_mlp_efs_head",)
V2_BACKBONES = ("eSCNMDBackbone", "escnmd_backbone")
V2_HEADS = ("MLP_EFS_Head", "escnmd_mlp_efs_head")


class UnsupportedCheckpointError(CheckpointError):
    """A fairchem checkpoint of a model esen-flows does not implement (field and value named)."""


def sha256(path: str | Path) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def detect_format(data: Any) -> str:
    """``"esen-flows"``, ``"fairchem-1"`` or ``"fairchem-2"`` for the loaded content."""
    if isinstance(data, InferenceCheckpoint):
        return "fairchem-2"
    if isinstance(data, dict):
        if data.get("format") == "esen-flows-checkpoint":
            return "esen-flows"
        if isinstance(data.get("config"), dict) and "state_dict" in data:
            return "fairchem-1"
    return "unknown"


def _short(name: Any) -> str:
    return str(name).rsplit(".", 1)[-1]


def _require(cfg: dict, field: str, allowed: tuple, default: Any, path: Path, where: str) -> Any:
    value = cfg.get(field, default)
    if value not in allowed:
        raise UnsupportedCheckpointError(
            f"{path}: {where}.{field}={value!r} is not supported (esen-flows implements "
            f"{', '.join(map(repr, allowed))}; it will not run a different model in its place)"
        )
    return value


def _cap(value: Any) -> int | None:
    if value is None or (isinstance(value, float) and math.isinf(value)) or int(value) <= 0:
        return None
    return int(value)


def _config(backbone: dict, head_channels: int, path: Path, where: str) -> dict[str, Any]:
    """The ESENConfig fields of a fairchem eSEN backbone config (1.x or 2.x names)."""
    _require(backbone, "act_type", ("gate",), "s2" if where.endswith("1") else "gate", path, where)
    ff_field = "mlp_type" if "mlp_type" in backbone or where.endswith("1") else "ff_type"
    _require(backbone, ff_field, ("spectral",), "grid", path, where)
    _require(backbone, "norm_type", ("rms_norm_sh",), "rms_norm_sh", path, where)
    _require(backbone, "distance_function", ("gaussian",), "gaussian", path, where)
    _require(backbone, "direct_forces", (False,), True, path, where)
    for field in ("charge_balanced_channels", "spin_balanced_channels"):
        if backbone.get(field):
            raise UnsupportedCheckpointError(
                f"{path}: {where}.{field}={backbone[field]!r} is not supported"
            )
    max_z = int(backbone.get("max_num_elements", 100))
    hidden = int(backbone.get("hidden_channels", 128))
    if head_channels != hidden:
        raise UnsupportedCheckpointError(f"{path}: energy head width {head_channels} != {hidden}")
    return dict(
        max_atomic_number=max_z - 1,  # fairchem's tables have a row for Z = 0
        lmax=int(backbone.get("lmax", 2)),
        mmax=int(backbone.get("mmax", 2)),
        channels=int(backbone.get("sphere_channels", 128)),
        hidden_channels=hidden,
        ffn_hidden_channels=hidden,
        edge_channels=int(backbone.get("edge_channels", 128)),
        num_layers=int(backbone.get("num_layers", 2)),
        cutoff=float(backbone.get("cutoff", 5.0)),
        num_rbf=int(backbone.get("num_distance_basis", 512)),
        energy_hidden_channels=hidden,
        max_neighbors=_cap(backbone.get("max_neighbors", 300)),
    )


def _weights(fc: dict[str, torch.Tensor], model: ESEN, head: str) -> dict[str, torch.Tensor]:
    """fairchem parameter names and layouts -> ESEN's state dict (every ESEN entry filled)."""
    b = "backbone."
    cfg = model.config
    out: dict[str, torch.Tensor] = {}

    def take(name: str) -> torch.Tensor:
        if name not in fc:
            raise CheckpointError(f"the checkpoint has no weight {name!r}")
        return fc[name].detach()

    for ours, theirs in (
        ("node_embedding", "sphere_embedding"),
        ("source_embedding", "source_embedding"),
        ("target_embedding", "target_embedding"),
    ):
        out[f"{ours}.weight"] = take(f"{b}{theirs}.weight")[1:]  # rows by Z, from Z = 1

    def mlp(ours: str, theirs: str) -> None:
        for i in (0, 1, 3, 4, 6):
            for part in ("weight", "bias"):
                out[f"{ours}.net.{i}.{part}"] = take(f"{theirs}.net.{i}.{part}")

    def norm(ours: str, theirs: str) -> None:
        out[f"{ours}.scale"] = take(f"{theirs}.affine_weight")
        out[f"{ours}.bias"] = take(f"{theirs}.affine_bias")

    def so2(ours: str, theirs: str, n_out: int, gates: int) -> None:
        w, bias = take(f"{theirs}.fc_m0.weight"), take(f"{theirs}.fc_m0.bias")
        if gates:  # fairchem puts the gate channels first
            out[f"{ours}.gates.weight"], out[f"{ours}.gates.bias"] = w[:gates], bias[:gates]
        out[f"{ours}.m0.weight"], out[f"{ours}.m0.bias"] = w[gates:], bias[gates:]
        for m in range(1, cfg.mmax + 1):
            wm = take(f"{theirs}.so2_m_conv.{m - 1}.fc.weight")  # [real; imaginary] outputs
            half = (cfg.lmax + 1 - m) * n_out
            out[f"{ours}.real.{m - 1}"] = wm[:half].T.contiguous()
            out[f"{ours}.imag.{m - 1}"] = wm[half:].T.contiguous()

    mlp("degree_mlp", f"{b}edge_degree_embedding.rad_func")
    for i in range(cfg.num_layers):
        blk, ours = f"{b}blocks.{i}.", f"blocks.{i}."
        norm(f"{ours}norm_edge", f"{blk}norm_1")
        norm(f"{ours}norm_node", f"{blk}norm_2")
        ew = f"{blk}edge_wise."
        so2(f"{ours}conv1", f"{ew}so2_conv_1", cfg.hidden_channels, cfg.lmax * cfg.hidden_channels)
        mlp(f"{ours}radial", f"{ew}so2_conv_1.rad_func")
        so2(f"{ours}conv2", f"{ew}so2_conv_2", cfg.channels, 0)
        aw = f"{blk}atom_wise."
        out[f"{ours}ffn.gate.weight"] = take(f"{aw}scalar_mlp.0.weight")
        out[f"{ours}ffn.gate.bias"] = take(f"{aw}scalar_mlp.0.bias")
        for k in (1, 2):
            out[f"{ours}ffn.lin{k}.weight"] = take(f"{aw}so3_linear_{k}.weight").transpose(1, 2)
            out[f"{ours}ffn.lin{k}.bias"] = take(f"{aw}so3_linear_{k}.bias")
    norm("norm_final", f"{b}norm")
    for i in (0, 2, 4):
        for part in ("weight", "bias"):
            out[f"energy_head.{i}.{part}"] = take(f"output_heads.{head}.energy_block.{i}.{part}")
    return out


def _strip(state: dict, prefix: str = "module.") -> dict[str, torch.Tensor]:
    return {
        (k[len(prefix) :] if k.startswith(prefix) else k): v
        for k, v in state.items()
        if torch.is_tensor(v)
    }


def _energy_head(heads: dict, allowed: tuple, path: Path, where: str) -> str:
    if not isinstance(heads, dict) or len(heads) != 1:
        names = sorted(heads) if isinstance(heads, dict) else heads
        raise UnsupportedCheckpointError(
            f"{path}: {where}.heads={names!r}: esen-flows runs one energy/forces/stress head"
        )
    ((name, spec),) = heads.items()
    module = _short((spec or {}).get("module"))
    if module not in allowed:
        raise UnsupportedCheckpointError(
            f"{path}: {where}.heads.{name}.module={spec.get('module')!r} is not supported "
            f"(esen-flows implements {', '.join(allowed)})"
        )
    if (spec or {}).get("reduce", "sum") != "sum":
        raise UnsupportedCheckpointError(
            f"{path}: {where}.heads.{name}.reduce={spec['reduce']!r} is not supported"
        )
    return name


def _scalar(value: Any) -> float:
    return float(value.item() if torch.is_tensor(value) else value)


def _norm_pair(spec: Any) -> tuple[float, float]:
    if not spec:
        return (0.0, 1.0)
    rmsd = spec.get("rmsd", spec.get("stdev", spec.get("std", 1.0)))
    return (_scalar(spec.get("mean", 0.0)), _scalar(rmsd))


def _refs_tensor(spec: Any, path: Path) -> torch.Tensor | None:
    """Element references as a float64 tensor indexed by Z, from any of fairchem's spellings."""
    if spec is None:
        return None
    if isinstance(spec, dict):
        if "element_references" in spec:
            return _refs_tensor(spec["element_references"], path)
        if "_args_" in spec:
            return _refs_tensor(spec["_args_"][0], path)
        raise CheckpointError(f"{path}: element references in an unknown form {sorted(spec)}")
    return torch.as_tensor(spec, dtype=torch.float64).reshape(-1)


def _build(config: dict, weights: dict, refs: torch.Tensor | None, extra: dict) -> ESEN:
    model = ESEN(ESENConfig(**config))
    state = model.state_dict()
    derived = {"element_energies", "system_embedding", "rbf.centres"}  # set from the config
    missing = sorted(set(state) - set(weights) - derived)
    if missing:
        raise CheckpointError(f"weights missing after conversion: {missing[:3]}")
    for k, v in weights.items():
        if v.shape != state[k].shape:
            raise CheckpointError(f"weight {k}: shape {tuple(v.shape)} != {tuple(state[k].shape)}")
        state[k] = v.to(state[k].dtype)
    if refs is not None:
        n = min(len(refs), model.num_elements)
        state["element_energies"][:n] = refs[:n]
    if "system_embedding" in extra:
        state["system_embedding"] = extra["system_embedding"]
    model.load_state_dict(state)
    return model


def _v1(data: dict, path: Path) -> tuple[ESEN, dict]:
    where = "config.model"
    model_cfg = data["config"].get("model", {})
    _require(model_cfg, "name", ("hydra",), None, path, where)
    backbone = model_cfg.get("backbone", {})
    _require(backbone, "model", V1_BACKBONES, None, path, f"{where}.backbone")
    head = _energy_head(model_cfg.get("heads"), V1_HEADS, path, where)
    weights_in = _strip(data["state_dict"])
    head_w = weights_in.get(f"output_heads.{head}.energy_block.0.weight")
    config = _config(backbone, head_w.shape[0] if head_w is not None else -1, path, "backbone-1")
    config["use_envelope"] = bool(backbone.get("use_envelope", False))
    config["y_clip"] = True  # rot_clip = not direct_forces, and direct models are refused
    normalizers = data.get("normalizers") or {}
    renamed = {"target": "energy", "grad_target": "forces"}
    norms = {renamed.get(k, k): _norm_pair(v) for k, v in normalizers.items()}
    config["normalizers"] = {k: v for k, v in norms.items() if k in ("energy", "forces", "stress")}
    refs = _refs_tensor((data.get("elementrefs") or {}).get("energy"), path)
    probe = ESEN(ESENConfig(**config))
    model = _build(config, _weights(weights_in, probe, head), refs, {})
    info = {
        "format": "fairchem-1",
        "head": head,
        "weights": "state_dict (fairchem 1.x inference does not load the EMA)",
        "normalizers": {k: list(v) for k, v in config["normalizers"].items()},
        "element_references": refs is not None,
        "fairchem_backbone": dict(backbone),
    }
    return model, info


def _system_vector(fc: dict, backbone: dict, task: str, charge: int, spin: int) -> torch.Tensor:
    """SiLU(mix_csd([charge emb, spin emb, (dataset emb)])) at one system, (C,) float64."""
    b = "backbone."
    kind = backbone.get("chg_spin_emb_type", "pos_emb")

    def embed(name: str, value: int, offset: int) -> torch.Tensor:
        if kind == "pos_emb":
            w = fc[f"{b}{name}_embedding.W"].double()
            proj = value * w * 2 * math.pi
            vec = torch.cat([torch.sin(proj), torch.cos(proj)])
            return torch.zeros_like(vec) if (name == "spin" and value == 0) else vec
        if kind == "rand_emb":
            return fc[f"{b}{name}_embedding.rand_emb.weight"].double()[value + offset]
        raise UnsupportedCheckpointError(  # lin_emb: fairchem itself fails in float64
            f"model_config.backbone.chg_spin_emb_type={kind!r} is not supported "
            "(esen-flows implements 'pos_emb', 'rand_emb')"
        )

    parts = [embed("charge", charge, 100), embed("spin", spin, 0)]
    if backbone.get("use_dataset_embedding", True):
        listed = backbone.get("dataset_list") or []
        mapping = backbone.get("dataset_mapping") or {d: d for d in listed}
        if task not in mapping:
            raise UnsupportedCheckpointError(
                f"task {task!r} is not one of the model's datasets {sorted(mapping)}"
            )
        key = f"{b}dataset_embedding.dataset_emb_dict.{mapping[task]}.weight"
        parts.append(fc[key].double()[0])
    mixed = torch.nn.functional.linear(
        torch.cat(parts), fc[f"{b}mix_csd.weight"].double(), fc[f"{b}mix_csd.bias"].double()
    )
    return torch.nn.functional.silu(mixed)


def _v2(ckpt: InferenceCheckpoint, path: Path, task: str | None, charge: int, spin: int | None):
    data = to_plain(ckpt)
    where = "model_config"
    model_cfg = data.get("model_config") or {}
    backbone = model_cfg.get("backbone") or {}
    if _short(backbone.get("model")) not in V2_BACKBONES:
        raise UnsupportedCheckpointError(
            f"{path}: {where}.backbone.model={backbone.get('model')!r} is not supported "
            f"(esen-flows implements {', '.join(V2_BACKBONES)}; not a mixture-of-experts UMA)"
        )
    head = _energy_head(model_cfg.get("heads"), V2_HEADS, path, where)
    ema = data.get("ema_state_dict") or {}
    source = "ema_state_dict" if ema else "model_state_dict"
    fc = _strip(ema or data.get("model_state_dict") or {})
    fc.pop("n_averaged", None)
    head_w = fc.get(f"output_heads.{head}.energy_block.0.weight")
    config = _config(backbone, head_w.shape[0] if head_w is not None else -1, path, "backbone-2")
    tasks = [t for t in (data.get("tasks_config") or []) if isinstance(t, dict)]
    energy_tasks = [t for t in tasks if t.get("property") == "energy"]
    datasets = sorted({d for t in energy_tasks for d in t.get("datasets", [])})
    if task is None:
        if len(datasets) != 1:
            raise CheckpointError(
                f"{path}: the model has energy tasks for {datasets}: choose one (task=...)"
            )
        task = datasets[0]
    by_property = {
        t.get("property"): t for t in tasks if task in (t.get("datasets") or [])
    }  # the tasks of this dataset
    if "energy" not in by_property:
        raise CheckpointError(f"{path}: no energy task for dataset {task!r} (have {datasets})")
    energy_norm = _norm_pair(by_property["energy"].get("normalizer"))
    config["normalizers"] = {
        key: _norm_pair(by_property[key].get("normalizer")) if key in by_property else energy_norm
        for key in ("energy", "forces", "stress")
    }
    refs = _refs_tensor(by_property["energy"].get("element_references"), path)
    spin = (1 if task == "omol" else 0) if spin is None else spin
    config["system_embedding"] = True
    extra = {"system_embedding": _system_vector(fc, backbone, task, charge, spin)}
    probe = ESEN(ESENConfig(**config))
    model = _build(config, _weights(fc, probe, head), refs, extra)
    info = {
        "format": "fairchem-2",
        "head": head,
        "task": task,
        "charge": charge,
        "spin": spin,
        "weights": source,
        "normalizers": {k: list(v) for k, v in config["normalizers"].items()},
        "element_references": refs is not None,
        "fairchem_backbone": dict(backbone),
    }
    return model, info


def load_fairchem(
    path: str | Path,
    task: str | None = None,
    charge: int = 0,
    spin: int | None = None,
    data: Any = None,
) -> ESEN:
    """An ``ESEN`` from a fairchem eSEN checkpoint (1.x or 2.x), ready for inference.

    Parameters
    ----------
    path
        The checkpoint file (never executed: read as data).
    task
        fairchem 2.x: the dataset whose energy task (normalizer, element references, dataset
        embedding) is used; None when the file has only one.
    charge, spin
        fairchem 2.x: the system the charge/spin embeddings are evaluated at (total charge in
        e; spin multiplicity, fairchem's default 1 for ``omol`` and 0 otherwise when None).

    Returns
    -------
    ESEN
        With ``metadata["source"]``: format, head, weights used, normalizers, the source file's
        sha256 and the fairchem backbone fields.

    Raises
    ------
    CheckpointError
        Not a fairchem eSEN file, a model esen-flows does not implement (field and value named),
        or a file that names code (``UnsafeCheckpointError``).

    ``data``: the file's content when the caller has already read it with ``load_data``.
    """
    path = Path(path)
    if data is None:
        try:
            data = load_data(path)
        except (FileNotFoundError, ValueError) as exc:
            raise CheckpointError(str(exc)) from None
    kind = detect_format(data)
    if kind == "fairchem-1":
        model, info = _v1(data, path)
    elif kind == "fairchem-2":
        model, info = _v2(data, path, task, charge, spin)
    else:
        raise CheckpointError(f"{path}: not a fairchem eSEN checkpoint (format {kind})")
    info["source_file"] = path.name
    info["source_sha256"] = sha256(path)
    model.metadata = {"source": info}
    return model.eval()
