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
import re
from pathlib import Path
from typing import Any

import torch

from esen_flows.model.config import ESENConfig
from esen_flows.model.esen import ESEN, CheckpointError
from esen_flows.model.safe_load import InferenceCheckpoint, load_data, to_plain

V1_BACKBONES = ("esen_backbone",)
V1_HEADS = ("esen_mlp_efs_head",)
V2_BACKBONES = ("eSCNMDBackbone", "escnmd_backbone")
#: fairchem 2.x's eSEN files use the MoE backbone class with no experts (fairchem's own
#: ``models/uma/compat.py`` calls ``num_experts == 0`` "not UMA"): the plain backbone
V2_MOE_BACKBONES = ("eSCNMDMoeBackbone", "escnmd_moe_backbone")
V2_HEADS = ("MLP_EFS_Head", "escnmd_mlp_efs_head")
#: one head wrapped for its datasets (outputs named ``<dataset>_energy``, ...)
V2_WRAPPERS = ("DatasetSpecificSingleHeadWrapper", "dataset_specific_single_head_wrapper")
#: fairchem state-dict entries derived from the config (or folded into one system vector)
UNUSED = re.compile(
    r"(^n_averaged$|\.Jd_\d+$|expand_index$|balance_degree_weight$|distance_expansion\.offset$"
    r"|^backbone\.(mix_csd|charge_embedding|spin_embedding|dataset_embedding)\.)"
)


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


def _require(cfg: dict, field: str, allowed: tuple, default: Any, where: str) -> Any:
    value = cfg.get(field, default)
    if value not in allowed:
        raise UnsupportedCheckpointError(
            f"{where}.{field}={value!r} is not supported (esen-flows implements "
            f"{', '.join(map(repr, allowed))}; it will not run a different model in its place)"
        )
    return value


def _cap(value: Any) -> int | None:
    if value is None or (isinstance(value, float) and math.isinf(value)) or int(value) <= 0:
        return None
    return int(value)


def _config(backbone: dict, version: int, where: str) -> dict[str, Any]:
    """The ESENConfig fields of a fairchem eSEN backbone config (1.x or 2.x names and
    defaults)."""
    _require(backbone, "act_type", ("gate",), "s2" if version == 1 else "gate", where)
    if version == 1:
        _require(backbone, "mlp_type", ("spectral",), "grid", where)
        # esen_mlp_efs_head sets backbone.direct_forces = False itself: the field is moot
    else:
        _require(backbone, "ff_type", ("spectral",), "grid", where)
        _require(backbone, "direct_forces", (False,), True, where)
    _require(backbone, "norm_type", ("rms_norm_sh",), "rms_norm_sh", where)
    _require(backbone, "distance_function", ("gaussian",), "gaussian", where)
    for field in ("charge_balanced_channels", "spin_balanced_channels"):
        if backbone.get(field):
            raise UnsupportedCheckpointError(
                f"{where}.{field}={backbone[field]!r} is not supported"
            )
    hidden = int(backbone.get("hidden_channels", 128))
    return dict(
        max_atomic_number=int(backbone.get("max_num_elements", 100)) - 1,  # a row for Z = 0
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


def _weights(fc: dict[str, torch.Tensor], cfg: ESENConfig, head: str) -> dict[str, torch.Tensor]:
    """fairchem parameter names and layouts -> ESEN's state dict (every ESEN entry filled).

    ``head`` is the prefix of the energy head's ``energy_block``. A fairchem weight that is
    neither used here nor a derived buffer (``UNUSED``) is an error: it would be part of a
    model esen-flows does not run.
    """
    b = "backbone."
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def take(name: str) -> torch.Tensor:
        if name not in fc:
            raise CheckpointError(f"the checkpoint has no weight {name!r}")
        used.add(name)
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
            out[f"energy_head.{i}.{part}"] = take(f"{head}energy_block.{i}.{part}")
    left = sorted(k for k in fc if k not in used and not UNUSED.search(k))
    if left:
        raise UnsupportedCheckpointError(
            f"{len(left)} weights esen-flows' eSEN has no place for (e.g. {left[:3]}): a "
            "different model"
        )
    return out


def _strip(state: dict, prefix: str = "module.") -> dict[str, torch.Tensor]:
    return {
        (k[len(prefix) :] if k.startswith(prefix) else k): v
        for k, v in state.items()
        if torch.is_tensor(v)
    }


def _energy_head(heads: Any, version: int, where: str) -> tuple[str, str]:
    """The one energy/forces/stress head: its name and the prefix of its weights."""
    if not isinstance(heads, dict) or len(heads) != 1:
        names = sorted(heads) if isinstance(heads, dict) else heads
        raise UnsupportedCheckpointError(
            f"{where}.heads={names!r}: esen-flows runs one energy/forces/stress head"
        )
    ((name, spec),) = heads.items()
    spec = spec if isinstance(spec, dict) else {}
    module = _short(spec.get("module"))
    prefix = f"output_heads.{name}."
    kwargs = spec
    if version == 2 and module in V2_WRAPPERS:
        module, prefix = _short(spec.get("head_cls")), f"output_heads.{name}.head."
        kwargs = spec.get("head_kwargs") or {}
        where, field = f"{where}.heads.{name}", "head_cls"
    else:
        where, field = f"{where}.heads.{name}", "module"
    allowed = V1_HEADS if version == 1 else V2_HEADS
    if module not in allowed:
        raise UnsupportedCheckpointError(
            f"{where}.{field}={spec.get(field)!r} is not supported (esen-flows implements "
            f"{', '.join(allowed)})"
        )
    if kwargs.get("reduce", "sum") != "sum":
        raise UnsupportedCheckpointError(f"{where}.reduce={kwargs['reduce']!r} is not supported")
    return name, prefix


def _scalar(value: Any) -> float:
    return float(value.item() if torch.is_tensor(value) else value)


def _norm_pair(spec: Any) -> tuple[float, float]:
    if not spec:
        return (0.0, 1.0)
    if not isinstance(spec, dict):
        raise CheckpointError(f"a normalizer in an unknown form ({type(spec).__name__})")
    rmsd = spec.get("rmsd", spec.get("stdev", spec.get("std", 1.0)))
    return (_scalar(spec.get("mean", 0.0)), _scalar(rmsd))


def _refs_tensor(spec: Any) -> torch.Tensor | None:
    """Element references as a float64 tensor indexed by Z, from any of fairchem's spellings."""
    if spec is None:
        return None
    if isinstance(spec, dict):
        if "element_references" in spec:
            return _refs_tensor(spec["element_references"])
        if "_args_" in spec:
            return _refs_tensor(spec["_args_"][0])
        raise CheckpointError(f"element references in an unknown form {sorted(spec)}")
    return torch.as_tensor(spec, dtype=torch.float64).reshape(-1)


def _build(config: dict, fc: dict, head: str, refs: torch.Tensor | None, system=None) -> ESEN:
    """The ESEN of ``config`` with fairchem's weights ``fc`` (head prefix ``head``)."""
    try:
        esen_config = ESENConfig(**config)
    except ValueError as exc:
        raise UnsupportedCheckpointError(str(exc)) from None
    weights = _weights(fc, esen_config, head)
    model = ESEN(esen_config)
    state = model.state_dict()
    for k, v in weights.items():
        if k not in state or v.shape != state[k].shape:
            raise CheckpointError(
                f"weight {k}: shape {tuple(v.shape)} does not fit the config "
                f"({tuple(state[k].shape) if k in state else 'no such weight'})"
            )
        state[k] = v.to(state[k].dtype)
    if refs is not None:
        n = min(len(refs), model.num_elements)
        state["element_energies"][:n] = refs[:n]
    if system is not None:
        state["system_embedding"] = system
    model.load_state_dict(state)
    return model


def _v1(data: dict) -> tuple[ESEN, dict]:
    data = to_plain(data)
    where = "config.model"
    model_cfg = data["config"].get("model") or {}
    _require(model_cfg, "name", ("hydra",), None, where)
    backbone = model_cfg.get("backbone") or {}
    _require(backbone, "model", V1_BACKBONES, None, f"{where}.backbone")
    head, prefix = _energy_head(model_cfg.get("heads"), 1, where)
    config = _config(backbone, 1, f"{where}.backbone")
    config["use_envelope"] = bool(backbone.get("use_envelope", False))
    config["y_clip"] = True  # the EFS head makes the backbone conservative: rot_clip on
    renamed = {"target": "energy", "grad_target": "forces"}
    norms = {renamed.get(k, k): _norm_pair(v) for k, v in (data.get("normalizers") or {}).items()}
    config["normalizers"] = {k: v for k, v in norms.items() if k in ("energy", "forces", "stress")}
    refs = _refs_tensor((data.get("elementrefs") or {}).get("energy"))
    model = _build(config, _strip(data["state_dict"]), prefix, refs)
    info = {
        "format": "fairchem-1",
        "head": head,
        "weights": "state_dict (fairchem 1.x inference does not load the EMA)",
        "normalizers": {k: list(v) for k, v in config["normalizers"].items()},
        "element_references": refs is not None,
        "fairchem_backbone": backbone,
    }
    return model, info


#: fairchem's accepted ranges (validate_uma_atoms_data): charge in e, spin multiplicity
CHARGE_RANGE, SPIN_RANGE = (-100, 100), (0, 100)


def _system_vector(fc: dict, backbone: dict, task: str, charge: int, spin: int) -> torch.Tensor:
    """SiLU(mix_csd([charge emb, spin emb, (dataset emb)])) at one system, (C,) float64."""
    b = "backbone."
    where = "model_config.backbone"
    kind = backbone.get("chg_spin_emb_type", "pos_emb")
    for name, value, (low, high) in (("charge", charge, CHARGE_RANGE), ("spin", spin, SPIN_RANGE)):
        if not low <= value <= high:
            raise CheckpointError(f"{name}={value} is outside fairchem's range [{low}, {high}]")

    def embed(name: str, value: int, offset: int) -> torch.Tensor:
        if kind == "pos_emb":
            proj = value * fc[f"{b}{name}_embedding.W"].double() * 2 * math.pi
            vec = torch.cat([torch.sin(proj), torch.cos(proj)])
            return torch.zeros_like(vec) if (name == "spin" and value == 0) else vec
        if kind == "rand_emb":
            return fc[f"{b}{name}_embedding.rand_emb.weight"].double()[value + offset]
        raise UnsupportedCheckpointError(  # lin_emb: fairchem itself fails in float64
            f"{where}.chg_spin_emb_type={kind!r} is not supported "
            "(esen-flows implements 'pos_emb', 'rand_emb')"
        )

    parts = [embed("charge", charge, 100), embed("spin", spin, 0)]
    if backbone.get("use_dataset_embedding", True):
        listed = backbone.get("dataset_list") or []
        mapping = backbone.get("dataset_mapping") or {d: d for d in listed}
        if task not in mapping:
            raise CheckpointError(f"task {task!r} is not one of the datasets {sorted(mapping)}")
        parts.append(fc[f"{b}dataset_embedding.dataset_emb_dict.{mapping[task]}.weight"][0])
    weight, bias = fc[f"{b}mix_csd.weight"].double(), fc[f"{b}mix_csd.bias"].double()
    return torch.nn.functional.silu(
        torch.nn.functional.linear(torch.cat(parts).double(), weight, bias)
    )


def _v2(ckpt: InferenceCheckpoint, task: str | None, charge: int, spin: int | None):
    data = to_plain(ckpt)
    where = "model_config"
    model_cfg = data.get("model_config") or {}
    backbone = model_cfg.get("backbone") or {}
    name = _short(backbone.get("model"))
    moe_free = name in V2_MOE_BACKBONES and backbone.get("num_experts", 8) == 0
    if name not in V2_BACKBONES and not moe_free:
        experts = (
            f", num_experts={backbone.get('num_experts', 8)!r}" if name in V2_MOE_BACKBONES else ""
        )
        raise UnsupportedCheckpointError(
            f"{where}.backbone.model={backbone.get('model')!r}{experts} is not supported "
            f"(esen-flows implements {', '.join(V2_BACKBONES)}, and {V2_MOE_BACKBONES[0]} "
            "with num_experts=0; not a mixture-of-experts UMA)"
        )
    head, prefix = _energy_head(model_cfg.get("heads"), 2, where)
    ema = data.get("ema_state_dict") or {}
    source = "ema_state_dict" if ema else "model_state_dict"
    fc = _strip(ema or data.get("model_state_dict") or {})
    config = _config(backbone, 2, f"{where}.backbone")
    tasks = [t for t in (data.get("tasks_config") or []) if isinstance(t, dict)]
    datasets = sorted(
        {d for t in tasks if t.get("property") == "energy" for d in t.get("datasets") or []}
    )
    if task is None:
        if len(datasets) != 1:
            raise CheckpointError(
                f"the model has energy tasks for {datasets}: choose one (esen-flows convert "
                "IN OUT --task NAME, or load_fairchem(path, task=NAME))"
            )
        task = datasets[0]
    by_property = {t.get("property"): t for t in tasks if task in (t.get("datasets") or [])}
    if "energy" not in by_property:
        raise CheckpointError(f"no energy task for dataset {task!r} (have {datasets})")
    energy_norm = _norm_pair(by_property["energy"].get("normalizer"))
    config["normalizers"] = {  # a missing task: fairchem's untrained tasks copy the energy's
        key: _norm_pair(by_property[key].get("normalizer")) if key in by_property else energy_norm
        for key in ("energy", "forces", "stress")
    }
    refs = _refs_tensor(by_property["energy"].get("element_references"))
    spin = (1 if task == "omol" else 0) if spin is None else spin
    config["system_embedding"] = True
    system = _system_vector(fc, backbone, task, charge, spin)
    model = _build(config, fc, prefix, refs, system)
    info = {
        "format": "fairchem-2",
        "head": head,
        "task": task,
        "charge": charge,
        "spin": spin,
        "weights": source,
        "normalizers": {k: list(v) for k, v in config["normalizers"].items()},
        "element_references": refs is not None,
        "fairchem_backbone": backbone,
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
    try:
        if kind == "fairchem-1":
            model, info = _v1(data)
        elif kind == "fairchem-2":
            model, info = _v2(data, task, charge, spin)
        else:
            raise CheckpointError(f"not a fairchem eSEN checkpoint (format {kind})")
    except UnsupportedCheckpointError as exc:
        raise UnsupportedCheckpointError(f"{path}: {exc}") from None
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        what = f"missing entry {exc}" if isinstance(exc, KeyError) else str(exc)
        raise CheckpointError(f"{path}: not a readable fairchem eSEN checkpoint: {what}") from None
    info["source_file"] = path.name
    info["source_sha256"] = sha256(path)
    model.metadata = {"source": info}
    return model.eval()
