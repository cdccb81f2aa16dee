"""Check that eSEN gives the same energies, forces and stresses on a GPU as on the CPU.

Usage: ``python benchmarks/check_device.py [--device cuda]``. Prints the largest differences
(float64 and float32) and exits non-zero when float64 disagrees beyond 1e-8.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _workloads import cu_cells

from esen_flows.model import ESEN, AtomsBatch, ESENConfig


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    torch.manual_seed(0)
    model = ESEN(ESENConfig(lmax=3, mmax=2, channels=32, num_layers=2, cutoff=5.0)).eval()
    atoms = cu_cells(32, 4) + cu_cells(8, 4, seed=2)
    diffs = {}
    for dtype in (torch.float64, torch.float32):
        ref = model.to(dtype=dtype)(AtomsBatch.from_atoms(atoms, dtype, "cpu"))
        dev = model.to(device=args.device)(AtomsBatch.from_atoms(atoms, dtype, args.device))
        model.to("cpu")
        for key in ("energy", "forces", "stress"):
            d = (dev[key].detach().cpu().double() - ref[key].detach().double()).abs().max()
            diffs[f"{str(dtype).removeprefix('torch.')}/{key}"] = float(d)
    print(json.dumps({"device": args.device, "max_abs_diff": diffs}))
    worst = max(v for k, v in diffs.items() if k.startswith("float64"))
    return 0 if worst < 1e-8 else 1


if __name__ == "__main__":
    sys.exit(main())
