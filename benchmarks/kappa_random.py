"""How many random displacements: kappa from random-displacement force constants (symfc)
against phono3py's systematic set, with the same potential, over the number of supercells.

The structures of ``kappa.py`` (fcc elements, L1_2 and L1_0 alloys) plus the low-symmetry
ternary Cu2AgAu (Cm, a demo candidate no test uses) go through Matbench Discovery's kappa
protocol (``ThermalConductivityMaker.matbench_discovery``: relaxation, 0.03 A, fc3 in 2x2x2 and
fc2 in 3x3x3, Wigner RTA at 300 K with isotopes) once with the systematic set and then with
random fc3 displacements at several multiples of symfc's minimum number of supercells
(``snapshot_factor``), with and without +- pairs; fc2 stays systematic (``fast()``'s choice).
The default potential is EMT (cheap, so the systematic set of the ternary is affordable);
``--potential esen-emt-tiny`` repeats it with the shipped model.

Printed per variant: the largest and mean |kappa_random / kappa_systematic - 1| over the
structures, the fc3 supercells against the systematic set's, and the wall time.

Usage::

    python benchmarks/kappa_random.py [--potential emt] [--quick]

The last line is a JSON object: per variant the errors and counts, and ``systematic_fc3``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
import warnings

import _blas  # benchmarks/ is on the path when this file runs as a script
import numpy as np
from kappa import TEMPERATURE, crystals, maker, mesh_for, ternary

#: (snapshot_factor, plusminus): phono3py's default is (4, False); fast() is (2, True)
VARIANTS = ((1, False), (2, False), (4, False), (1, True), (2, True), (4, True))


def run(potential, items, meshes, store, **extra) -> tuple[dict, float]:
    from jobflow import run_locally

    start = time.perf_counter()
    job = maker(potential, "cpu", **extra).make([a.copy() for a in items], meshes=meshes)
    out = run_locally(job, store=store, create_folders=False, log=False, ensure_success=True)
    docs = {d.label: d for d in out[job.uuid][1].output}
    return docs, time.perf_counter() - start


def kappa(doc) -> float:
    return float(doc.kappa_at(TEMPERATURE)) if doc.kappa_mean else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--potential", default="emt")
    parser.add_argument("--quick", action="store_true", help="the 3 quick crystals + ternary")
    _blas.add_option(parser)
    args = parser.parse_args()
    _blas.apply(args.blas_threads)
    warnings.simplefilter("ignore")
    logging.getLogger("jobflow").setLevel(logging.WARNING)
    os.environ.setdefault("TQDM_DISABLE", "1")
    from esen_flows.stores import default_store

    items = [*crystals(args.quick), ternary()]
    meshes = [mesh_for(a, args.quick) for a in items]
    with tempfile.TemporaryDirectory() as tmp:
        store = default_store(tmp)
        ref, t_ref = run(args.potential, items, meshes, store)
        n_sys = sum(d.n_fc3_displacements for d in ref.values())
        print(f"systematic: {n_sys} fc3 supercells, {t_ref:.1f} s")
        labels = [lab for lab, d in ref.items() if d.kappa_mean]
        print("kappa systematic: " + ", ".join(f"{lab} {kappa(ref[lab]):.3f}" for lab in labels))
        result = {"potential": args.potential, "systematic_fc3": n_sys, "systematic_s": t_ref}
        for factor, pm in VARIANTS:
            docs, t = run(
                args.potential,
                items,
                meshes,
                store,
                random=True,
                snapshot_factor=factor,
                plusminus=pm,
            )
            err = {lab: kappa(docs[lab]) / kappa(ref[lab]) - 1 for lab in labels}
            n = sum(d.n_fc3_displacements for d in docs.values())
            name = f"factor {factor}{' +-' if pm else ''}"
            worst = max(err, key=lambda lab: abs(err[lab]))
            print(
                f"{name:<12} fc3 {n:>5} ({n_sys / n:4.1f}x fewer)  max |err| "
                f"{abs(err[worst]):6.2%} ({worst})  mean {np.mean(np.abs(list(err.values()))):6.2%}"
                f"  {t:6.1f} s  " + " ".join(f"{e:+.2%}" for e in err.values())
            )
            result[name] = {
                "fc3": n,
                "max_abs_err": round(abs(err[worst]), 5),
                "mean_abs_err": round(float(np.mean(np.abs(list(err.values())))), 5),
                "per_structure": {k: round(v, 5) for k, v in err.items()},
                "seconds": round(t, 1),
            }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
