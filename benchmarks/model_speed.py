"""Throughput of eSEN energy + forces + stress: esen-flows against fairchem-core's eSEN.

Same hyperparameters, random weights, conservative forces and stress by autograd, float32, on
fcc Cu: one 256-atom cell, 32 cells of 32 atoms, 64 cells of 8 atoms; for the small config
(lmax 2, mmax 2, 64 channels, 2 layers, 5 A) and eSEN-30M-OAM (lmax 3, mmax 2, 128 channels,
10 layers, 6 A). fairchem runs in its own venv (``make bench-fairchem`` builds .venv-fairchem
with fairchem-core 2.24.0) as a subprocess of this command; without it only our numbers print.

Usage::

    python benchmarks/model_speed.py [--configs small,30m] [--quick] [--device cuda]

Prints a table and, as its last line, a JSON object of the ratios (ours / fairchem).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _workloads import CONFIGS, WORKLOADS, atoms_per_second, cu_cells  # noqa: E402

from esen_flows.model import ESEN, AtomsBatch, ESENConfig  # noqa: E402


def our_config(name: str) -> ESENConfig:
    """The shared hyperparameters in ESENConfig terms (all widths = channels, as fairchem)."""
    c = CONFIGS[name]
    ch = c["channels"]
    return ESENConfig(
        lmax=c["lmax"],
        mmax=c["mmax"],
        channels=ch,
        hidden_channels=ch,
        ffn_hidden_channels=ch,
        edge_channels=ch,
        energy_hidden_channels=ch,
        num_layers=c["num_layers"],
        cutoff=c["cutoff"],
        num_rbf=c["num_rbf"],
    )


def run_ours(configs: list[str], reps: dict[str, int], device: str) -> dict[str, float]:
    results: dict[str, float] = {}
    for name in configs:
        torch.manual_seed(0)
        model = ESEN(our_config(name)).to(device).eval()
        results[f"{name}/params"] = model.num_parameters()

        def run(atoms, model=model):
            out = model(AtomsBatch.from_atoms(atoms, torch.float32, device))
            out["stress"].sum().item()  # synchronise

        for w, (n, k) in WORKLOADS.items():
            results[f"{name}/{w}"] = atoms_per_second(run, cu_cells(n, k), reps[name])
            print(
                f"  esen-flows {name:5s} {w:6s} {results[f'{name}/{w}']:10.1f} atoms/s",
                file=sys.stderr,
                flush=True,
            )
    return results


def run_fairchem(
    python: Path, configs: list[str], reps: dict[str, int], device: str, threads: int
) -> dict[str, float]:
    results: dict[str, float] = {}
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    for name in configs:
        cmd = [
            str(python),
            str(HERE / "_fairchem_esen.py"),
            "--configs",
            name,
            "--reps",
            str(reps[name]),
            "--threads",
            str(threads),
            "--device",
            device,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("FAIRCHEM_JSON ")), None)
        if proc.returncode != 0 or line is None:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            print(f"  fairchem run failed for {name}: {' | '.join(tail)}", file=sys.stderr)
            continue
        results.update(json.loads(line.removeprefix("FAIRCHEM_JSON ")))
        for w in WORKLOADS:
            print(
                f"  fairchem   {name:5s} {w:6s} {results[f'{name}/{w}']:10.1f} atoms/s",
                file=sys.stderr,
                flush=True,
            )
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default="small,30m")
    ap.add_argument("--quick", action="store_true", help="one timed call per workload")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (CPU)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--fairchem-python", default=str(HERE.parent / ".venv-fairchem/bin/python"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    configs = args.configs.split(",")
    # the 30M model is slow on a CPU: one timed call after the warm-up
    reps = {c: 1 if (args.quick or (c == "30m" and args.device == "cpu")) else 3 for c in configs}

    ours = run_ours(configs, reps, args.device)
    fc_python = Path(args.fairchem_python)
    theirs = (
        run_fairchem(fc_python, configs, reps, args.device, args.threads)
        if fc_python.exists()
        else {}
    )
    if not theirs:
        print(f"(fairchem not measured: {fc_python} missing; run `make bench-fairchem`)")

    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(f"\neSEN energy+forces+stress, float32, {device}, {args.threads} threads")
    print(f"{'config':7s} {'workload':9s} {'esen-flows':>12s} {'fairchem':>12s} {'ratio':>7s}")
    ratios: dict[str, float] = {}
    for c in configs:
        print(
            f"{c:7s} {'params':9s} {ours[f'{c}/params']:>12,d} "
            f"{int(theirs.get(f'{c}/params', 0)):>12,d}"
        )
        for w in WORKLOADS:
            a, b = ours[f"{c}/{w}"], theirs.get(f"{c}/{w}")
            ratio = a / b if b else None
            if ratio is not None:
                ratios[f"{c}/{w}"] = round(ratio, 3)
            shown = f"{b:12.1f}" if b else f"{'-':>12s}"
            print(f"{c:7s} {w:9s} {a:12.1f} {shown} {ratio if ratio is None else f'{ratio:7.2f}'}")
    for c in configs:
        vals = [v for k, v in ratios.items() if k.startswith(f"{c}/")]
        if vals:
            ratios[f"{c}/min"] = min(vals)
    print(
        json.dumps(
            {
                "speedup_vs_fairchem": ratios,
                "device": device,
                "atoms_per_s": {
                    k: round(v, 1) for k, v in ours.items() if not k.endswith("params")
                },
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
