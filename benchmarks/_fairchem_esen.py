"""fairchem-core's eSEN (the ``escn_md`` backbone + energy head), random weights, conservative
energy, forces and stress, on the workloads of ``model_speed.py``. Runs in .venv-fairchem
(``make bench-fairchem``) and prints one JSON line of atoms/s."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _workloads import CONFIGS, WORKLOADS, atoms_per_second, cu_cells


def build(cfg: dict, device: str):
    from fairchem.core.models.base import HydraModelV2
    from fairchem.core.models.uma.escn_md import MLP_EFS_Head, eSCNMDBackbone

    torch.manual_seed(0)
    backbone = eSCNMDBackbone(
        max_num_elements=100,
        otf_graph=True,
        max_neighbors=-1,
        always_use_pbc=False,
        radius_pbc_version=2,
        direct_forces=False,
        regress_forces=True,
        regress_stress=True,
        norm_type="rms_norm_sh",
        act_type="gate",
        ff_type="spectral",
        use_dataset_embedding=False,
        use_quaternion_wigner=True,
        execution_mode="general",
        lmax=cfg["lmax"],
        mmax=cfg["mmax"],
        sphere_channels=cfg["channels"],
        hidden_channels=cfg["channels"],
        edge_channels=cfg["channels"],
        num_layers=cfg["num_layers"],
        cutoff=cfg["cutoff"],
        num_distance_basis=cfg["num_rbf"],
    )
    with torch.no_grad():  # the 2.x charge/spin mixing term; zero makes it the paper's eSEN
        backbone.mix_csd.weight.zero_()
        backbone.mix_csd.bias.zero_()
    model = HydraModelV2(backbone, {"efs": MLP_EFS_Head(backbone)}).to(device).eval()
    return model


def from_checkpoint(path: str, device: str):
    """fairchem's own model of a 2.x inference checkpoint, EMA weights as its inference."""
    from fairchem.core.units.mlip_unit.utils import load_inference_model

    model, _ = load_inference_model(path, use_ema=True)
    return model.module.to(device).eval()


def main() -> None:
    from fairchem.core.datasets.atomic_data import AtomicData, atomicdata_list_to_batch

    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", default="small")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--checkpoint", help="a fairchem 2.x checkpoint (config name 'ckpt')")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results: dict[str, float] = {}
    for name in args.configs.split(","):
        if name == "ckpt":
            model = from_checkpoint(args.checkpoint, args.device)
        else:
            model = build(CONFIGS[name], args.device)
        results[f"{name}/params"] = sum(p.numel() for p in model.parameters())

        def run(atoms, model=model):
            data = [
                AtomicData.from_ase(a, r_edges=False, task_name="omat", target_dtype=torch.float32)
                for a in atoms
            ]
            out = model(atomicdata_list_to_batch(data).to(args.device))
            out = out.get("efs", out)  # a checkpoint's head passes its outputs through
            out["stress"]["stress"].sum().item()  # synchronise

        for w in args.workloads.split(","):
            n, k = WORKLOADS[w]
            results[f"{name}/{w}"] = atoms_per_second(run, cu_cells(n, k), args.reps)
    print("FAIRCHEM_JSON " + json.dumps(results), flush=True)


if __name__ == "__main__":
    main()
