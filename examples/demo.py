"""Walkthrough: screen ordered Cu-Au-Ag-Pd crystals for convex-hull stability.

Run with ``make demo`` (or ``.venv/bin/python examples/demo.py``). Each step is the public API a
user would call; the same screen is one command line away::

    esen-flows screen examples/candidates.extxyz --potential emt --store demo-results
    esen-flows hull --store demo-results --chemsys Cu-Au
    esen-flows report --store demo-results --out report.html

Running the demo twice reuses the store: the second run evaluates nothing that is already there.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from jobflow import run_locally

sys.path.insert(0, str(Path(__file__).parent))
from generate_candidates import generate_candidates

from esen_flows.analysis import hull_table, query
from esen_flows.analysis.report import write_report
from esen_flows.makers import BatchRelaxMaker, ScreeningMaker
from esen_flows.stores import default_store


def main(argv: list[str] | None = None) -> int:
    """Generate candidates, screen them, print the hull table and write the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="demo-results", help="results folder")
    parser.add_argument("--report", default="report.html", help="HTML report to write")
    parser.add_argument("--potential", default="emt", help="potential name (default: emt)")
    parser.add_argument("--max-candidates", type=int, default=250)
    args = parser.parse_args(argv)

    # 1. Candidates: fcc/bcc/hcp-derived binaries and ternaries up to 8 atoms, deduplicated.
    t0 = time.perf_counter()
    structures = generate_candidates(max_candidates=args.max_candidates)
    print(f"{len(structures)} candidate structures generated in {time.perf_counter() - t0:.1f} s")

    # 2. The screen: batched relaxations (FIRE + Frechet cell filter), then one hull job.
    #    Elemental references (fcc, bcc, hcp of Cu, Au, Ag, Pd) are relaxed by the flow itself.
    maker = ScreeningMaker(
        potential=args.potential,
        e_hull_max=0.05,
        batch_size=100,
        relax_maker=BatchRelaxMaker(fmax=0.05, max_steps=500),
    )
    flow = maker.make(structures)
    print(f"flow: {len(flow.jobs)} jobs ({', '.join(j.name for j in flow.jobs)})")

    # 3. Run locally on the embedded on-disk store (no server needed).
    store = default_store(args.store)
    t0 = time.perf_counter()
    run_locally(flow, store=store, create_folders=False, log=False, raise_immediately=True)
    print(f"screen finished in {time.perf_counter() - t0:.1f} s")

    # 4. Query the results: the hull table is a pandas DataFrame.
    table = hull_table(store)
    ok = table[table.status == "ok"]
    print(
        f"\n{len(ok)} structures placed on the hull, {int(ok.stable.sum())} on it, "
        f"{int(ok.candidate.sum())} within 50 meV/atom"
    )
    with_cols = ["label", "formula", "e_form", "e_above_hull", "stable", "candidate"]
    print(ok[with_cols].head(25).to_string(index=False, float_format="%.4f"))
    failed = query(store, "relaxation", status="failed")
    print(f"failed relaxations: {len(failed)}")

    # 5. The report: hull table and one hull plot per chemical system.
    out = write_report(store, args.report, title=f"Cu-Au-Ag-Pd screen ({args.potential})")
    print(f"report written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
