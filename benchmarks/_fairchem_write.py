"""Write an eSEN checkpoint in fairchem's own format with random weights, and fairchem's own
predictions for it. Runs inside a fairchem virtual environment (1.x or 2.x, detected):

    .venv-fairchem/bin/python benchmarks/_fairchem_write.py --out DIR [--shape small|30m-oam|30m-mp]

DIR receives ``checkpoint.pt`` (fairchem's format: 1.x ``BaseTrainer.save`` dict, or 2.x
``MLIPInferenceCheckpoint``) and ``reference.npz`` (the structures and fairchem's energies,
forces and stresses, from ``OCPCalculator``'s code path for 1.x and ``load_predict_unit`` +
``FAIRChemCalculator`` for 2.x). The normalizers and element references are non-trivial and
the EMA weights differ from the raw weights, so a reader that skips any of them fails.
Nothing here is part of ``make test``; ``make fairchem-fixtures`` writes the test fixtures.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _parity_structures import parity_structures

SHAPES = {
    # small enough for a committed fixture, with mmax < lmax
    "small": dict(lmax=3, mmax=2, sphere_channels=8, hidden_channels=8, edge_channels=8,
                  num_layers=2, cutoff=5.0, num_distance_basis=12),
    # the published eSEN-30M-OAM / -OMAT24 and eSEN-30M-MP shapes
    "30m-oam": dict(lmax=3, mmax=2, sphere_channels=128, hidden_channels=128,
                    edge_channels=128, num_layers=10, cutoff=6.0, num_distance_basis=64),
    "30m-mp": dict(lmax=3, mmax=2, sphere_channels=128, hidden_channels=128,
                   edge_channels=128, num_layers=10, cutoff=6.0, num_distance_basis=10),
}  # fmt: skip


def _perturb(state: dict, scale: float, gen: torch.Generator) -> dict:
    """Every floating tensor plus noise (an EMA copy that differs from the raw weights)."""
    out = {}
    for k, v in state.items():
        if torch.is_tensor(v) and v.is_floating_point():
            out[k] = v + scale * torch.randn(v.shape, generator=gen, dtype=v.dtype)
        else:
            out[k] = v
    return out


def _element_refs(gen: torch.Generator, n: int = 100) -> torch.Tensor:
    refs = -3.0 * torch.rand(n, generator=gen, dtype=torch.float64)
    refs[0] = 0.0
    return refs


def _randomise(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Weights of a trained-looking scale (fairchem's init leaves some blocks at zero)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and "weight" in name:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            elif name.endswith("bias") or "embedding" in name or name.split(".")[-1] == "W":
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))


#: (mean, rmsd) of each output's normalizer, distinct so that a mix-up shows
NORMS = {
    "omat": {"energy": (0.37, 1.83), "forces": (0.0, 1.21), "stress": (0.002, 0.77)},
    "omol": {"energy": (-0.8, 2.4), "forces": (0.0, 0.9), "stress": (0.0, 1.3)},
}
#: the systems each dataset is evaluated at (charge, spin); omol at a cation doublet... triplet
SYSTEMS = {"omat": (0, 0), "omol": (1, 2)}


def write_v2(
    out: Path, shape: dict, seed: int, max_neighbors: int, csd: str = "pos_emb", style: str = "omol"
) -> None:
    """``style="omol"``: as fairchem 2.x's published eSEN files are built (the MoE backbone
    class with ``num_experts=0``, one ``MLP_EFS_Head`` in a ``DatasetSpecificSingleHeadWrapper``
    over omat and omol, tasks ``<dataset>_energy`` ...). ``"plain"``: ``eSCNMDBackbone`` with a
    bare ``MLP_EFS_Head`` and one dataset's tasks."""
    from fairchem.core import FAIRChemCalculator
    from fairchem.core.units.mlip_unit import load_predict_unit
    from fairchem.core.units.mlip_unit.api.inference import (
        InferenceSettings,
        MLIPInferenceCheckpoint,
    )
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    uma = "fairchem.core.models.uma"
    datasets = ["omat", "omol"] if style == "omol" else ["omat"]
    backbone = dict(
        max_num_elements=100, otf_graph=True, max_neighbors=max_neighbors,
        always_use_pbc=True, regress_forces=True, regress_stress=True, direct_forces=False,
        norm_type="rms_norm_sh", act_type="gate", ff_type="spectral",
        chg_spin_emb_type=csd, use_dataset_embedding=csd == "pos_emb",
        dataset_list=["omat", "omol"], **shape,
    )  # fmt: skip
    if style == "omol":
        backbone.update(model=f"{uma}.escn_moe.eSCNMDMoeBackbone", num_experts=0)
        heads = {
            "efs": {
                "module": f"{uma}.escn_moe.DatasetSpecificSingleHeadWrapper",
                "head_cls": f"{uma}.escn_md.MLP_EFS_Head",
                "head_kwargs": {"wrap_property": False},
                "dataset_names": datasets,
            }
        }
    else:
        backbone["model"] = f"{uma}.escn_md.eSCNMDBackbone"
        heads = {"energyandforcehead": {"module": f"{uma}.escn_md.MLP_EFS_Head"}}
    model_config = OmegaConf.create(
        {
            "_target_": "fairchem.core.models.base.HydraModel",
            "backbone": backbone,
            "heads": heads,
            "pass_through_head_outputs": True,
            "otf_graph": True,
        }
    )
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = instantiate(model_config)
    _randomise(model, gen)

    def task(dataset: str, prop: str, level: str, dim: list) -> dict:
        mean, rmsd = NORMS[dataset][prop]
        t = {
            "_target_": "fairchem.core.units.mlip_unit.mlip_unit.Task",
            "name": f"{dataset}_{prop}" if style == "omol" else prop,
            "level": level,
            "property": prop,
            "out_spec": {
                "_target_": "fairchem.core.units.mlip_unit.mlip_unit.OutputSpec",
                "dim": dim,
                "dtype": "float32",
            },
            "normalizer": {
                "_target_": "fairchem.core.modules.normalization.normalizer.Normalizer",
                "mean": mean,
                "rmsd": rmsd,
            },
            "datasets": [dataset],
        }
        if prop == "energy":
            t["element_references"] = {
                "_target_": "fairchem.core.modules.normalization.element_references."
                "ElementReferences",
                "element_references": {
                    "_target_": "torch.DoubleTensor",
                    "_args_": [_element_refs(gen).tolist()],
                },
            }
        return t

    props = (("energy", "system", [1]), ("forces", "atom", [3]), ("stress", "system", [1, 9]))
    tasks_config = OmegaConf.create([task(d, *p) for d in datasets for p in props])
    ema = torch.optim.swa_utils.AveragedModel(model)
    ema_state = _perturb(ema.state_dict(), 0.05, gen)
    ema_state["n_averaged"] = torch.tensor(17)
    ckpt = MLIPInferenceCheckpoint(
        model_config=model_config,
        model_state_dict=model.state_dict(),
        ema_state_dict=ema_state,
        tasks_config=tasks_config,
    )
    out.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, out / "checkpoint.pt")

    settings = InferenceSettings(
        tf32=False,
        activation_checkpointing=False,
        merge_mole=False,
        compile=False,
        external_graph_gen=False,
        base_precision_dtype=torch.float64,
    )
    unit = load_predict_unit(out / "checkpoint.pt", inference_settings=settings, device="cpu")
    for dataset in datasets:
        charge, spin = SYSTEMS[dataset]
        meta = {"fairchem": version("fairchem-core"), "task": dataset, "charge": charge}
        name = "reference.npz" if dataset == "omat" else f"reference_{dataset}.npz"
        _evaluate(
            out,
            FAIRChemCalculator(unit, task_name=dataset),
            "float64",
            {**meta, "spin": spin, "style": style},
            info={"charge": charge, "spin": spin},
            name=name,
        )


def write_v1(out: Path, shape: dict, seed: int, max_neighbors: int, csd: str = "") -> None:
    import fairchem.core.models.base
    import fairchem.core.models.esen.esen  # noqa: F401  (registers esen_backbone and heads)
    from fairchem.core.common.registry import registry

    rename = {"num_distance_basis": "num_distance_basis"}
    backbone = dict(
        model="esen_backbone", max_num_elements=100, otf_graph=True,
        max_neighbors=max_neighbors, use_pbc=True, use_pbc_single=True, direct_forces=False,
        regress_forces=True, regress_stress=True, norm_type="rms_norm_sh", act_type="gate",
        mlp_type="spectral", use_envelope=True, distance_function="gaussian",
        **{rename.get(k, k): v for k, v in shape.items()},
    )  # fmt: skip
    config = {
        "model": {
            "name": "hydra",
            "backbone": backbone,
            "heads": {"mptrj": {"module": "esen_mlp_efs_head"}},
            "pass_through_head_outputs": True,
            "otf_graph": True,
        },
        "outputs": {
            "energy": {"level": "system", "property": "energy"},
            "forces": {"level": "atom", "property": "forces", "train_on_free_atoms": True,
                       "eval_on_free_atoms": True},
            "stress": {"level": "system", "property": "stress", "irrep_dim": 0},
        },
        "optim": {"ema_decay": 0.999},
        "task": {"dataset": "ase_db"},
        "trainer": "ocp",
    }  # fmt: skip
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = registry.get_model_class("hydra")(
        backbone=dict(backbone), heads=config["model"]["heads"], pass_through_head_outputs=True
    )
    _randomise(model, gen)
    refs = _element_refs(gen)
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    ema_params = [
        p.detach() + 0.05 * torch.randn(p.shape, generator=gen)
        for p in model.parameters()
        if p.requires_grad
    ]
    ckpt = {
        "epoch": 3,
        "step": 1234,
        "state_dict": state,
        "normalizers": {
            key: {"mean": torch.tensor(mean), "rmsd": torch.tensor(rmsd)}
            for key, (mean, rmsd) in NORMS["omat"].items()
        },
        "elementrefs": {"energy": {"element_references": refs.float()}},
        "config": config,
        "val_metrics": {"energy_mae": {"metric": 0.1, "total": 1.0, "numel": 10}},
        "ema": {
            "decay": 0.999,
            "num_updates": 1234,
            "shadow_params": ema_params,
            "collected_params": [],
        },
        "amp": None,
        "best_val_metric": 0.1,
        "primary_metric": "energy_mae",
    }
    out.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, out / "checkpoint.pt")

    # fairchem 1.x inference as OCPCalculator does it: the trainer is made inference_only, so
    # load_extras never builds an EMA and the raw state_dict is what runs (the EMA written
    # above must be ignored); outputs are denormalised, then element references added
    model.eval()
    meta = {"fairchem": version("fairchem-core")}
    shipped = _V1Calculator(model, ckpt, "float32")
    _evaluate(out, _V1Calculator(model, ckpt), "float64 (graph float32)", meta, shipped)


class _V1Calculator:
    """fairchem 1.10's OCPTrainer.predict path for one structure: the model, then its
    ``_denorm_preds``: the checkpoint's normalizers and element references, rebuilt by
    fairchem's own ``create_normalizer`` / ``create_element_references`` from the file.

    ``precision="float32"`` is OCPCalculator as shipped. ``"float64"``: fairchem's own graph
    (built in float32 by its ``generate_graph``, which fails in float64) handed to the same model
    cast to float64 (``otf_graph=False``); everything after the graph runs in float64, so the
    comparison is not blurred by float32 Euler angles near the y axis.
    """

    def __init__(self, model, checkpoint: dict, precision: str = "float64"):
        from fairchem.core.modules.normalization.element_references import (
            create_element_references,
        )
        from fairchem.core.modules.normalization.normalizer import create_normalizer

        self.model, self.precision = model, precision
        self.normalizers = {
            k: create_normalizer(state_dict=v) for k, v in checkpoint["normalizers"].items()
        }
        self.refs = {
            k: create_element_references(state_dict=v) for k, v in checkpoint["elementrefs"].items()
        }

    def evaluate_one(self, atoms):
        from fairchem.core.preprocessing import AtomsToGraphs
        from torch_geometric.data import Batch

        a2g = AtomsToGraphs(r_edges=False, r_pbc=True, r_energy=False, r_forces=False)
        data = Batch.from_data_list([a2g.convert(atoms)])
        data.pos = data.pos.float()
        data.cell = data.cell.float()
        data.atomic_numbers_full = data.atomic_numbers.long()
        data.batch_full = data.batch
        backbone = self.model.backbone
        dtype = torch.float64 if self.precision == "float64" else torch.float32
        if self.precision == "float64":
            graph = backbone.generate_graph(data)
            data.edge_index = graph["edge_index"]
            data.cell_offsets = graph["cell_offsets"]
            data.nedges = torch.tensor([graph["edge_index"].shape[1]])
            data.pos, data.cell = data.pos.double(), data.cell.double()
            backbone.otf_graph = False
            self.model.double()
        try:
            out = self.model(data)
        finally:
            backbone.otf_graph = True
            self.model.float()
        results = {}
        shapes = {"energy": (1, -1), "forces": (-1, 3), "stress": (1, 9)}  # as OCPTrainer
        for key in ("energy", "forces", "stress"):  # OCPTrainer._denorm_preds
            pred = self.normalizers[key].to(dtype)(out[key].detach().view(*shapes[key]))
            if key in self.refs:
                pred = self.refs[key].to(dtype)(pred, data)
            results[key] = pred.double()
        stress = results["stress"].view(3, 3)
        return float(results["energy"]), results["forces"].numpy(), stress.numpy()


_EVALUATE = True
_MAX_ATOMS: int | None = None


def _evaluate(
    out: Path, calc, dtype: str, meta: dict, calc32=None, info=None, name="reference.npz"
) -> None:
    if not _EVALUATE:
        print(f"wrote {out / 'checkpoint.pt'} (no reference)")
        return
    structures = [a for a in parity_structures() if len(a) <= (_MAX_ATOMS or len(a))]
    rows = {"energy": [], "forces": [], "stress": [], "numbers": [], "positions": [], "cells": []}
    for atoms in structures:
        atoms = atoms.copy()
        atoms.info.update(info or {})
        if isinstance(calc, _V1Calculator):
            e, f, s = calc.evaluate_one(atoms)
        else:
            atoms.calc = calc
            e = atoms.get_potential_energy()
            f = atoms.get_forces()
            s = atoms.get_stress(voigt=False)
        rows["energy"].append(e)
        rows["forces"].append(np.asarray(f))
        rows["stress"].append(np.asarray(s))
        if calc32 is not None:  # fairchem 1.x as shipped (float32), for information
            e32, f32, s32 = calc32.evaluate_one(atoms)
            rows.setdefault("energy_float32", []).append(e32)
            rows.setdefault("forces_float32", []).append(f32)
            rows.setdefault("stress_float32", []).append(s32)
        rows["numbers"].append(atoms.numbers)
        rows["positions"].append(atoms.positions)
        rows["cells"].append(atoms.cell.array)
    counts = np.array([len(a) for a in structures])
    np.savez_compressed(
        out / name,
        labels=np.array([a.info["label"] for a in structures]),
        counts=counts,
        numbers=np.concatenate(rows["numbers"]),
        positions=np.concatenate(rows["positions"]),
        cells=np.stack(rows["cells"]),
        energy=np.array(rows["energy"]),
        forces=np.concatenate(rows["forces"]),
        stress=np.stack(rows["stress"]),
        **(
            {
                "energy_float32": np.array(rows["energy_float32"]),
                "forces_float32": np.concatenate(rows["forces_float32"]),
                "stress_float32": np.stack(rows["stress_float32"]),
            }
            if calc32 is not None
            else {}
        ),
    )
    (out / name.replace("reference", "meta").replace(".npz", ".json")).write_text(
        json.dumps({**meta, "dtype": dtype}, indent=1)
    )
    print(f"wrote {out} ({(out / 'checkpoint.pt').stat().st_size / 1e3:.0f} kB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="small")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--max-neighbors", type=int, default=300)
    ap.add_argument("--no-reference", action="store_true", help="write the checkpoint only")
    ap.add_argument(
        "--style",
        choices=["omol", "plain"],
        default="omol",
        help="2.x: the published files' layout (MoE class with no experts, a wrapped head, "
        "omat and omol tasks) or a bare eSCNMDBackbone + MLP_EFS_Head",
    )
    ap.add_argument(
        "--max-atoms",
        type=int,
        default=None,
        help="leave out larger structures (fairchem's 30M float64 on 200 atoms needs >20 GB)",
    )
    ap.add_argument(
        "--csd",
        choices=["pos_emb", "rand_emb"],
        default="pos_emb",
        help="2.x charge/spin embedding (pos_emb also turns the dataset embedding on)",
    )
    args = ap.parse_args()
    torch.set_num_threads(2)
    major = int(version("fairchem-core").split(".")[0])
    global _EVALUATE, _MAX_ATOMS
    _EVALUATE, _MAX_ATOMS = not args.no_reference, args.max_atoms
    if major == 1:
        write_v1(args.out, SHAPES[args.shape], args.seed, args.max_neighbors)
    else:
        write_v2(args.out, SHAPES[args.shape], args.seed, args.max_neighbors, args.csd, args.style)


if __name__ == "__main__":
    main()
