"""Scaling of a whole screen: 1,000, 3,000 and 10,000 structures on the embedded store.

Each screen is ``ScreeningMaker(...).make(structures)`` run with ``run_locally`` on a fresh
``default_store`` folder (montydb on SQLite), with EMT and with the shipped esen-emt-tiny, one
subprocess per screen so that its peak memory is its own. Measured per screen: wall time of
building and running the flow, peak resident memory of the process, number of jobs, size of
the store on disk, structures that ended ok / failed, mean FIRE steps, and the cost per
structure (wall time / structures), which should stay flat as the screen grows.

Structures: ``esen_flows.candidates`` gives B distinct Cu-Au-Ag-Pd candidates
(B = the smallest size unless ``--base`` says otherwise; enumerating 10,000 distinct ones
takes far longer than screening them). Screen i of a size of N uses candidate i mod B, strained
(symmetric strain, each component uniform in +-``--strain``) and rattled (Gaussian,
``--rattle`` A) with a generator seeded by (``--seed``, i), so every structure is distinct and
every size has the same mix: each candidate appears N / B times.

Usage::

    python benchmarks/screen_scaling.py [--sizes 1000 3000 10000]
        [--potentials emt esen-emt-tiny] [--quick] [--batch-size 100] [--workdir DIR]

Prints a table and, as its last line, a JSON object: per potential the cost per structure at
each size and the ratio of the largest size's cost per structure to the smallest's.

``--hull-only N`` instead times the store-wide hull alone: N relaxation documents (real
Cu-Au-Ag-Pd candidates with their structures, energies drawn around the elemental means) are
written to a fresh store, then ``hull_table`` computes their hull from the store (the read
included), as ``esen-flows hull`` does.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Lattice, Structure

HERE = Path(__file__).resolve().parent

QUICK_SIZES = [50, 100, 200]


# --------------------------------------------------------------------------------------
# Structures
# --------------------------------------------------------------------------------------


def write_base(path: Path, n_base: int) -> float:
    """Generate ``n_base`` distinct candidates and write them as JSON; seconds taken."""
    from esen_flows.candidates import generate_candidates

    start = time.perf_counter()
    structures = generate_candidates(max_candidates=n_base)
    elapsed = time.perf_counter() - start
    path.write_text(json.dumps([s.as_dict() for s in structures]))
    return elapsed


def screen_structures(
    base_path: Path, n: int, strain: float, rattle: float, seed: int
) -> list[Any]:
    """The ``n`` structures of a screen: candidate ``i % B``, strained and rattled.

    Parameters
    ----------
    base_path
        JSON list of the B distinct candidates (``Structure.as_dict``).
    n
        Number of structures.
    strain
        Largest component of the random symmetric strain.
    rattle
        Standard deviation of the Gaussian displacements, A.
    seed
        Seed; structure ``i`` uses the generator seeded by ``(seed, i)``.

    Returns
    -------
    list of Structure
        Labelled ``<candidate label>-pNN`` (NN = copy of that candidate).
    """
    from pymatgen.core import Lattice, Structure

    base = [Structure.from_dict(d) for d in json.loads(base_path.read_text())]
    out = []
    for i in range(n):
        parent = base[i % len(base)]
        rng = np.random.default_rng([seed, i])
        eps = rng.uniform(-strain, strain, size=(3, 3))
        eps = 0.5 * (eps + eps.T)
        lattice = Lattice(parent.lattice.matrix @ (np.eye(3) + eps))
        cart = lattice.get_cartesian_coords(parent.frac_coords)
        cart = cart + rng.normal(0.0, rattle, size=cart.shape)
        s = Structure(lattice, parent.species, cart, coords_are_cartesian=True)
        s.properties = {
            **parent.properties,
            "label": f"{parent.properties['label']}-p{i // len(base):02d}",
        }
        out.append(s)
    return out


# --------------------------------------------------------------------------------------
# One screen (worker process)
# --------------------------------------------------------------------------------------


def count_jobs(flow: Any) -> int:
    """Jobs in a jobflow ``Flow``, counting those of nested flows."""
    from jobflow import Flow

    return sum(count_jobs(j) if isinstance(j, Flow) else 1 for j in flow.jobs)


def run_screen(args: argparse.Namespace) -> dict[str, Any]:
    """Screen ``args.n`` structures with ``args.potential`` into the store ``args.store``."""
    from jobflow import run_locally

    from esen_flows.analysis import hull_table, query
    from esen_flows.makers import BatchRelaxMaker, ScreeningMaker
    from esen_flows.stores import default_store

    structures = screen_structures(
        Path(args.base_file), args.n, args.strain, args.rattle, args.seed
    )
    labels = {s.properties["label"] for s in structures}
    assert len(labels) == len(structures), "labels are not unique"

    start = time.perf_counter()
    maker = ScreeningMaker(
        potential=args.potential,
        batch_size=args.batch_size,
        relax_maker=BatchRelaxMaker(fmax=args.fmax, max_steps=args.max_steps),
        deduplicate=False,  # the strained, rattled copies are meant as distinct structures
    )
    flow = maker.make(structures)
    store = default_store(args.store)
    responses = run_locally(
        flow, store=store, create_folders=False, log=False, raise_immediately=True
    )
    wall = time.perf_counter() - start

    start = time.perf_counter()
    table = hull_table(store)
    read = time.perf_counter() - start
    table = table[table.label.isin(labels)]
    steps = [d.n_steps for d in query(store, "relaxation") if d.label in labels]
    return {
        "potential": args.potential,
        "n": args.n,
        "wall_s": wall,
        "read_s": read,
        "jobs": count_jobs(flow),
        "jobs_run": len(responses),
        "ok": int((table.status == "ok").sum()),
        "failed": int((table.status != "ok").sum()),
        "mean_steps": float(np.mean(steps)) if steps else 0.0,
        # Linux: kilobytes
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def time_hull(n: int, workdir: Path, seed: int = 0) -> dict[str, Any]:
    """Write ``n`` relaxation documents to a fresh store, then time ``hull_table`` on it."""
    from esen_flows.analysis import hull_table
    from esen_flows.candidates import generate_candidates
    from esen_flows.schemas import RelaxationDocument
    from esen_flows.stores import default_store, save_documents

    rng = np.random.default_rng(seed)
    base = generate_candidates(max_candidates=min(n, 100))
    mean = {"Cu": -0.01, "Au": 0.0, "Ag": 0.0, "Pd": -0.02}
    docs = []
    for el in mean:  # the elements, so every system has its references
        base.append(Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.0), [el], [[0, 0, 0]]))
    for i in range(n):
        s = base[i % len(base)] if i >= 4 else base[len(base) - 4 + i]
        comp = s.composition
        e = sum(comp.get_atomic_fraction(el) * mean[el.symbol] for el in comp)
        e += 0.0 if i < 4 else float(rng.uniform(-0.05, 0.1))
        docs.append(
            RelaxationDocument(
                label=f"s{i:05d}",
                key=f"k{i:05d}",
                potential="emt",
                checksum="c",
                settings={"task": "relax", "fmax": 0.05},
                formula=comp.reduced_formula,
                chemsys=comp.chemical_system,
                n_sites=len(s),
                input_structure=s,
                structure=s,
                energy=e * len(s),
                energy_per_atom=e,
                converged=True,
                n_steps=10,
            )
        )
    store = default_store(workdir / f"hull-{n}")
    start = time.perf_counter()
    save_documents(store, docs)
    write = time.perf_counter() - start
    start = time.perf_counter()
    table = hull_table(store)
    hull = time.perf_counter() - start
    return {
        "n": n,
        "write_s": round(write, 2),
        "hull_s": round(hull, 2),
        "rows": len(table),
        "stable": int(table.stable.sum()),
    }


# --------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------


def dir_size_mb(path: Path) -> float:
    """Total size of the files under ``path``, MB."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def launch(
    args: argparse.Namespace, potential: str, n: int, base: Path, store: Path
) -> dict[str, Any] | None:
    """Run one screen in its own process; its result, or None (reported) when it failed."""
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        "--potential",
        potential,
        "--n",
        str(n),
        "--base-file",
        str(base),
        "--store",
        str(store),
        "--batch-size",
        str(args.batch_size),
        "--fmax",
        str(args.fmax),
        "--max-steps",
        str(args.max_steps),
        "--strain",
        str(args.strain),
        "--rattle",
        str(args.rattle),
        "--seed",
        str(args.seed),
    ]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    if args.blas_threads is not None:
        env["OPENBLAS_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(args.blas_threads)
    # stderr passes through: the relaxation jobs' progress bars show on a terminal
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        print(f"  {potential} {n}: timed out after {args.timeout} s", file=sys.stderr)
        return None
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT_JSON ")), None)
    if proc.returncode != 0 or line is None:
        why = "killed (out of memory?)" if proc.returncode in (-9, 137) else "crashed"
        print(f"  {potential} {n}: {why} (exit {proc.returncode})", file=sys.stderr)
        return None
    result = json.loads(line.split(" ", 1)[1])
    result["store_mb"] = dir_size_mb(store)
    result["cost_ms"] = 1e3 * result["wall_s"] / n
    return result


def print_table(rows: list[dict[str, Any]]) -> None:
    """The results, one row per screen."""
    head = (
        f"{'potential':14s} {'structures':>10s} {'jobs':>5s} {'ok':>6s} {'failed':>6s} "
        f"{'steps':>6s} {'wall s':>8s} {'ms/struct':>9s} {'peak MB':>8s} {'store MB':>8s} "
        f"{'read s':>7s}"
    )
    print(head)
    for r in rows:
        print(
            f"{r['potential']:14s} {r['n']:>10,d} {r['jobs']:>5d} {r['ok']:>6d} "
            f"{r['failed']:>6d} {r['mean_steps']:>6.1f} {r['wall_s']:>8.1f} "
            f"{r['cost_ms']:>9.1f} {r['peak_rss_mb']:>8.0f} {r['store_mb']:>8.1f} "
            f"{r['read_s']:>7.2f}"
        )


def summary(rows: list[dict[str, Any]], sizes: list[int], potentials: list[str]) -> dict:
    """The final JSON object: costs per structure and the largest-to-smallest ratio."""
    lo, hi = min(sizes), max(sizes)
    by = {(r["potential"], r["n"]): r for r in rows}

    def per(key: str, digits: int) -> dict[str, dict[str, float]]:
        return {
            p: {str(n): round(by[p, n][key], digits) for n in sizes if (p, n) in by}
            for p in potentials
        }

    ratios = {
        p: round(by[p, hi]["cost_ms"] / by[p, lo]["cost_ms"], 3)
        for p in potentials
        if (p, lo) in by and (p, hi) in by
    }
    ratio_key = {f"cost_ratio_{hi}_vs_{lo}": ratios} if lo != hi else {}
    return {
        **ratio_key,
        "cost_per_structure_ms": per("cost_ms", 2),
        "wall_s": per("wall_s", 1),
        "peak_rss_mb": per("peak_rss_mb", 0),
        "store_mb": per("store_mb", 1),
        "jobs": per("jobs", 0),
        "failed": per("failed", 0),
        "mean_steps": per("mean_steps", 1),
        "device": f"CPU, {os.cpu_count()} cores",
    }


def main(argv: list[str] | None = None) -> int:
    """Run every (potential, size) screen in its own process; print the table and JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 3000, 10000])
    ap.add_argument("--potentials", nargs="+", default=["emt", "esen-emt-tiny"])
    ap.add_argument("--quick", action="store_true", help=f"sizes {QUICK_SIZES}")
    ap.add_argument("--base", type=int, help="distinct candidates (default: smallest size)")
    ap.add_argument("--batch-size", type=int, default=100, help="structures per relax job")
    ap.add_argument("--fmax", type=float, default=0.05, help="force convergence, eV/A")
    ap.add_argument("--max-steps", type=int, default=500, help="FIRE step limit")
    ap.add_argument("--strain", type=float, default=0.02, help="largest strain component")
    ap.add_argument("--rattle", type=float, default=0.03, help="rattle standard deviation, A")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, help="where the stores go (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the stores afterwards")
    ap.add_argument("--timeout", type=float, help="seconds allowed per screen")
    ap.add_argument(
        "--blas-threads",
        type=int,
        help="OPENBLAS_NUM_THREADS and MKL_NUM_THREADS of the screens (default: inherited)",
    )
    # internal: one screen in this process
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--potential", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--store", help=argparse.SUPPRESS)
    ap.add_argument("--base-file", help=argparse.SUPPRESS)
    ap.add_argument("--hull-only", type=int, metavar="N", help="time the hull of N documents")
    args = ap.parse_args(argv)

    if args.hull_only:
        with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
            print(json.dumps(time_hull(args.hull_only, Path(tmp), args.seed)))
        return 0
    if args.worker:
        print("RESULT_JSON " + json.dumps(run_screen(args)), flush=True)
        return 0

    sizes = sorted(set(QUICK_SIZES if args.quick else args.sizes))
    n_base = args.base or min(sizes)
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="screen-scaling-", dir=args.workdir))
    rows: list[dict[str, Any]] = []
    try:
        base = workdir / "candidates.json"
        took = write_base(base, n_base)
        print(f"{n_base} distinct candidates generated in {took:.1f} s", file=sys.stderr)
        for potential in args.potentials:
            for n in sizes:
                store = workdir / f"{potential}-{n}"  # fresh: workdir is new
                print(f"[{potential}] screening {n:,d} structures ...", file=sys.stderr)
                result = launch(args, potential, n, base, store)
                if result is not None:
                    rows.append(result)
                    print(
                        f"[{potential}] {n:,d} structures: {result['wall_s']:.1f} s, "
                        f"{result['cost_ms']:.1f} ms/structure",
                        file=sys.stderr,
                        flush=True,
                    )
                if not args.keep:
                    shutil.rmtree(store, ignore_errors=True)
    finally:
        if args.keep:
            print(f"stores kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    print(
        f"\nscreen scaling: embedded store (montydb/SQLite), batch size {args.batch_size}, "
        f"fmax {args.fmax}, {n_base} distinct candidates strained {args.strain} and rattled "
        f"{args.rattle} A, CPU ({os.cpu_count()} cores)"
    )
    print_table(rows)
    print(json.dumps(summary(rows, sizes, args.potentials)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
