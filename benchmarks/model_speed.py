"""Throughput of eSEN energy + forces + stress: esen-flows against fairchem-core's eSEN.

Same hyperparameters, random weights, conservative forces and stress by autograd, float32, on
fcc Cu: one 256-atom cell, 32 cells of 32 atoms, 64 cells of 8 atoms; for the small config
(lmax 2, mmax 2, 64 channels, 2 layers, 5 A) and eSEN-30M-OAM (lmax 3, mmax 2, 128 channels,
10 layers, 6 A). fairchem runs in its own venv (``make bench-fairchem`` builds .venv-fairchem
with fairchem-core 2.24.0) as a subprocess of this command; without it only our numbers print.

Usage::

    python benchmarks/model_speed.py [--configs small,30m] [--quick] [--device cuda] [--rounds 3]
    python benchmarks/model_speed.py --same-weights 30m-oam [--quick]

``--same-weights SHAPE`` has fairchem write one checkpoint of that shape (random weights, its
2.x format, ``benchmarks/_fairchem_write.py``) and times both libraries on that same file:
fairchem's own model from ``load_inference_model``, esen-flows' from ``esen:PATH`` (config
name ``ckpt``). ``--checkpoint PATH`` does the same with a 2.x file of your own: fairchem's
side unpickles it with ``weights_only=False`` (fairchem's loader), so give it only files you
trust.

Prints a table and, as its last line, a JSON object of the ratios (ours / fairchem). With
``--rounds N`` every pair is measured N times, alternating which of the two runs first, and the
table gives the medians (the ratio is the median of the per-round ratios): one process's speed
on a shared 2-core machine wanders by 10-40 %.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _workloads import CONFIGS, WORKLOADS, atoms_per_second, cu_cells  # noqa: E402

from esen_flows.model import ESEN, AtomsBatch, ESENConfig  # noqa: E402
from esen_flows.model.allocator import (  # noqa: E402
    MMAP_THRESHOLD,
    TRIM_THRESHOLD,
    keep_freed_memory,
)


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


def measure_ours(
    name: str, workloads: list[str], reps: int, device: str, checkpoint: str | None = None
) -> dict[str, float]:
    """Atoms/s of esen-flows' ESEN for one config (run in a worker process)."""
    if device == "cpu":
        keep_freed_memory()  # what ESENPotential does on a CPU
    torch.manual_seed(0)
    if name == "ckpt":
        from esen_flows.model.checkpoints import load_model

        model = load_model(checkpoint).to(device=device, dtype=torch.float32).eval()
    else:
        model = ESEN(our_config(name)).to(device).eval()
    results: dict[str, float] = {f"{name}/params": model.num_parameters()}

    def run(atoms):
        out = model(AtomsBatch.from_atoms(atoms, torch.float32, device))
        out["stress"].sum().item()  # synchronise

    for w in workloads:
        n, k = WORKLOADS[w]
        results[f"{name}/{w}"] = atoms_per_second(run, cu_cells(n, k), reps)
    return results


#: glibc's environment equivalent of ``keep_freed_memory`` (for the peer's process).
KEEP_FREED_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD),
    "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD),
}


def run_worker(cmd: list[str], label: str, extra_env: dict | None = None) -> dict[str, float]:
    """Run one measurement in its own process (memory is returned between them); an
    out-of-memory kill or a crash is reported, not fatal."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", **(extra_env or {})}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT_JSON ")), None)
    if line is None:
        line = next((x for x in proc.stdout.splitlines() if x.startswith("FAIRCHEM_JSON ")), None)
    if proc.returncode != 0 or line is None:
        why = (
            "killed (out of memory?)"
            if proc.returncode in (-9, 137)
            else (" | ".join((proc.stderr or proc.stdout).strip().splitlines()[-2:]))
        )
        print(f"  {label}: failed, {why}", file=sys.stderr, flush=True)
        return {}
    result = json.loads(line.split(" ", 1)[1])
    for k, v in result.items():
        if not k.endswith("params"):
            print(f"  {label:28s} {k:12s} {v:10.1f} atoms/s", file=sys.stderr, flush=True)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default="small,30m")
    ap.add_argument("--quick", action="store_true", help="one timed call per workload")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (CPU)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--fairchem-python", default=str(HERE.parent / ".venv-fairchem/bin/python"))
    ap.add_argument(
        "--peer-keeps-freed-memory",
        action="store_true",
        help="give fairchem's process the glibc malloc settings esen-flows applies on a CPU",
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure each pair this many times, alternating which goes first, and report "
        "medians (the machine's speed drifts between processes)",
    )
    ap.add_argument("--checkpoint", help="a fairchem 2.x checkpoint both libraries load")
    ap.add_argument(
        "--same-weights",
        choices=["30m-oam", "30m-mp", "small"],
        help="have fairchem write a checkpoint of this shape and time both on it",
    )
    ap.add_argument("--worker", help=argparse.SUPPRESS)  # internal: measure one config here
    ap.add_argument("--workloads", default=",".join(WORKLOADS), help=argparse.SUPPRESS)
    ap.add_argument("--reps", type=int, default=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error(f"--rounds must be at least 1, got {args.rounds}")
    torch.set_num_threads(args.threads)
    if args.worker:
        result = measure_ours(
            args.worker, args.workloads.split(","), args.reps, args.device, args.checkpoint
        )
        print("RESULT_JSON " + json.dumps(result), flush=True)
        return 0

    configs = args.configs.split(",")
    fc_python = Path(args.fairchem_python)
    if args.same_weights:
        import tempfile

        folder = tempfile.mkdtemp(prefix="esen-same-weights-")
        writer = [str(fc_python), str(HERE / "_fairchem_write.py"), "--out", folder]
        shape = ["--shape", args.same_weights, "--style", "plain", "--no-reference"]
        subprocess.run([*writer, *shape], check=True)
        args.checkpoint = str(Path(folder) / "checkpoint.pt")
    if args.checkpoint:
        configs = ["ckpt"]
    # per key, one value per round: ours and fairchem alternate which runs first in a round
    ours_r: dict[str, list[float]] = {}
    theirs_r: dict[str, list[float]] = {}
    ratios_r: dict[str, list[float]] = {}
    for r in range(args.rounds):
        for c in configs:
            # the 30M model is slow on a CPU: one timed call after the warm-up
            big = c == "30m" or (c == "ckpt" and args.same_weights != "small")
            reps = 1 if (args.quick or (big and args.device == "cpu")) else 3
            for w in WORKLOADS:  # one process per measurement: a peer's OOM cannot stop the rest
                base = [
                    "--reps",
                    str(reps),
                    "--threads",
                    str(args.threads),
                    "--device",
                    args.device,
                    "--workloads",
                    w,
                    *(["--checkpoint", args.checkpoint] if args.checkpoint else []),
                ]
                runs: list[tuple[list[str], str, dict | None]] = [
                    ([sys.executable, __file__, "--worker", c, *base], f"esen-flows {c}", None)
                ]
                if fc_python.exists():
                    peer = [str(fc_python), str(HERE / "_fairchem_esen.py"), "--configs", c]
                    env = KEEP_FREED_ENV if args.peer_keeps_freed_memory else None
                    runs.append(([*peer, *base], f"fairchem {c}", env))
                order = list(range(len(runs)))[:: -1 if r % 2 else 1]
                got = {i: run_worker(*runs[i]) for i in order}
                for i, store in enumerate((ours_r, theirs_r)[: len(runs)]):
                    for k, v in got[i].items():
                        store.setdefault(k, []).append(v)
                a, b = got[0].get(f"{c}/{w}"), got.get(1, {}).get(f"{c}/{w}")
                if a and b:
                    ratios_r.setdefault(f"{c}/{w}", []).append(a / b)
    ours = {k: statistics.median(v) for k, v in ours_r.items()}
    theirs = {k: statistics.median(v) for k, v in theirs_r.items()}
    if not fc_python.exists():
        print(f"(fairchem not measured: {fc_python} missing; run `make bench-fairchem`)")

    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(f"\neSEN energy+forces+stress, float32, {device}, {args.threads} threads")
    print(f"{'config':7s} {'workload':9s} {'esen-flows':>12s} {'fairchem':>12s} {'ratio':>7s}")
    ratios: dict[str, float] = {}
    for c in configs:
        print(
            f"{c:7s} {'params':9s} {int(ours.get(f'{c}/params', 0)):>12,d} "
            f"{int(theirs.get(f'{c}/params', 0)):>12,d}"
        )
        for w in WORKLOADS:
            a, b = ours.get(f"{c}/{w}"), theirs.get(f"{c}/{w}")
            per_round = ratios_r.get(f"{c}/{w}")
            ratio = statistics.median(per_round) if per_round else None
            if ratio is not None:
                ratios[f"{c}/{w}"] = round(ratio, 3)
            cells = [f"{x:12.1f}" if x else f"{'-':>12s}" for x in (a, b)]
            print(
                f"{c:7s} {w:9s} {cells[0]} {cells[1]} "
                f"{f'{ratio:7.2f}' if ratio is not None else '      -'}"
            )
    for c in configs:
        vals = [v for k, v in ratios.items() if k.startswith(f"{c}/")]
        if vals:
            ratios[f"{c}/min"] = min(vals)
    print(
        json.dumps(
            {
                "speedup_vs_fairchem": ratios,
                "device": device,
                "peer_keeps_freed_memory": args.peer_keeps_freed_memory,
                "rounds": args.rounds,
                "same_weights": bool(args.checkpoint),
                "ratio_per_round": {k: [round(x, 3) for x in v] for k, v in ratios_r.items()},
                "atoms_per_s": {
                    k: round(v, 1) for k, v in ours.items() if not k.endswith("params")
                },
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
