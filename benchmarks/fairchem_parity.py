"""fairchem's eSEN against esen-flows on checkpoints fairchem writes with random weights.

For each case, fairchem itself (fairchem-core 2.24.0 in .venv-fairchem, 1.10.0 in
.venv-fairchem1) builds an eSEN of the given shape and seed, saves it in its own format with
non-trivial normalizers, element references and an EMA copy, and evaluates it with its own
inference: 2.x load_predict_unit + FAIRChemCalculator in float64; 1.x the OCPCalculator path,
its graph built in float32 by its own code (which fails in float64) and the model in float64,
and the float32 path as shipped for information. esen-flows then loads the same file through
``load_model`` / ``load_fairchem`` (what ``esen:PATH`` and ``esen-flows convert`` use) and
evaluates the same cells. Cases cover seeds and shapes the
tests have not seen, the published 30M-OAM and 30M-MP shapes (on the cells of up to 16 atoms:
fairchem's 30M model in float64 on the 200-atom cell needs more than this machine's 23 GB), no
neighbour cap and the 2.x charge/spin embedding variants.

    make fairchem-parity            # all cases (about 10 minutes on 2 cores)
    .venv/bin/python benchmarks/fairchem_parity.py --cases v2-small-rand,v1-30m-oam

The last line is a JSON object: per case the worst relative errors and whether they are
within the tolerance (energies 1e-6 relative; forces and stresses 1e-6 (2.x) and 1e-5 (1.x) of
the largest in the set: fairchem keeps float32 constant tables, Jd and the Gaussian width).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = {  # name: (fairchem version, shape, seed, max_neighbors, 2.x charge/spin embedding,
    # 2.x layout: "omol" as the published files (MoE class with no experts, wrapped head, omat
    # and omol tasks, the omol one checked at charge +1 spin 2) or "plain")
    "v2-small-nocap": ("2", "small", 11, -1, "pos_emb", "plain"),
    "v2-small-rand": ("2", "small", 12, 300, "rand_emb", "omol"),
    "v2-30m-oam": ("2", "30m-oam", 5, 300, "pos_emb", "omol"),
    "v2-30m-mp": ("2", "30m-mp", 6, -1, "pos_emb", "plain"),
    "v1-small-nocap": ("1", "small", 14, 100000, "", ""),  # 1.x fails on -1
    "v1-30m-oam": ("1", "30m-oam", 5, 300, "", ""),
    "v1-30m-mp": ("1", "30m-mp", 6, 300, "", ""),
}
TOLERANCE = {"2": (1e-6, 1e-6), "1": (1e-6, 1e-5)}


def write(case: str, out: Path) -> None:
    version, shape, seed, cap, csd, style = CASES[case]
    venv = ROOT / (".venv-fairchem" if version == "2" else ".venv-fairchem1")
    env = dict(os.environ)
    if version == "1":
        env["PYTHONPATH"] = str(ROOT / "benchmarks" / "fairchem1_shims")
    cmd = [str(venv / "bin" / "python"), str(ROOT / "benchmarks" / "_fairchem_write.py")]
    cmd += ["--out", str(out), "--shape", shape, "--seed", str(seed)]
    cmd += ["--max-neighbors", str(cap)] + (["--csd", csd, "--style", style] if csd else [])
    if shape != "small":  # fairchem's 30M model in float64 on 200 atoms needs over 20 GB
        cmd += ["--max-atoms", "16"]
    subprocess.run(cmd, check=True, env=env, capture_output=True, text=True)


def _float32_errors(path: Path) -> dict:
    """fairchem 1.x as shipped (float32) against its own float64 run: the size of its float32
    round-off (energy relative; forces and stress relative to the largest). Information only."""
    import numpy as np

    with np.load(path) as data:
        e32 = data["energy_float32"]
        e64 = data["energy"]
        energy = max(abs(a - b) / max(abs(b), 1) for a, b in zip(e32, e64, strict=True))
        df = np.abs(data["forces_float32"] - data["forces"]).max() / np.abs(data["forces"]).max()
        ds = np.abs(data["stress_float32"] - data["stress"]).max() / np.abs(data["stress"]).max()
    return {"energy_rel": float(energy), "forces_rel": float(df), "stress_rel": float(ds)}


def main() -> None:
    from esen_flows.model.checkpoints import load_model
    from esen_flows.model.fairchem import load_fairchem
    from esen_flows.model.parity import Reference, parity

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=",".join(CASES))
    args = ap.parse_args()
    summary = {}
    for case in args.cases.split(","):
        version = CASES[case][0]
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            write(case, Path(tmp))
            t_fairchem = time.perf_counter() - t0
            path = Path(tmp) / "checkpoint.pt"
            checks = [("omat", {}, "reference.npz")]
            if CASES[case][5] == "omol":
                checks.append(("omol", {"charge": 1, "spin": 2}, "reference_omol.npz"))
            rows = []
            for task, system, name in checks:
                model = load_model(path) if version == "1" else load_fairchem(path, task, **system)
                rows += parity(model, Reference.read(Path(tmp) / name))
            f32 = _float32_errors(Path(tmp) / "reference.npz") if version == "1" else None
        energy = max(r["energy_rel"] for r in rows)
        rest = max(max(r["forces_rel"], r["stress_rel"]) for r in rows)
        tol_e, tol_fs = TOLERANCE[version]
        ok = energy < tol_e and rest < tol_fs
        params = model.num_parameters()
        tasks = "+".join(t for t, _, _ in checks)
        print(f"{case} ({tasks}): {params:,} parameters, fairchem {t_fairchem:.0f} s")
        for r in rows:
            print(
                f"  {r['label']:32s} {r['atoms']:4d} atoms  E {r['energy']:+.8e} "
                f"(rel {r['energy_rel']:.1e})  F {r['forces_rel']:.1e}  S {r['stress_rel']:.1e}"
            )
        summary[case] = {
            "parameters": params,
            "energy_rel": energy,
            "forces_stress_rel": rest,
            "within_tolerance": ok,
            **({"fairchem_float32_vs_float64": f32} if f32 else {}),
        }
        sys.stdout.flush()
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
