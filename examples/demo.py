"""Walkthrough: screen ordered Cu-Au-Ag-Pd crystals for convex-hull stability with eSEN.

Run with ``make demo`` (or ``.venv/bin/python examples/demo.py``). The shipped esen-emt-tiny
model relaxes the candidates and places them on the hull; the same screen with EMT, the
potential the model was trained on, gives the reference labels, and the demo prints the F1 of
the model's stable/unstable classification against EMT's. Then the structures on the model's
hull get phonons (PhononMaker: symmetric tight relaxation, phonopy, dynamic stability), and the
small dynamically stable ones their lattice thermal conductivity (ThermalConductivityMaker:
phono3py, fc2 and fc3 in batches). Each
step is the public API a user would call; the same screen is one command line away::

    esen-flows screen examples/candidates.extxyz --potential esen-emt-tiny --store demo-results
    esen-flows hull --store demo-results --chemsys Cu-Au
    esen-flows report --store demo-results --out report.html

Running the demo twice reuses the store: the second run evaluates nothing that is already there.
"""

from __future__ import annotations

import argparse
import sys
import time

from jobflow import run_locally

from esen_flows.analysis import hull_table, phonon_table, query
from esen_flows.analysis.metrics import compare_labels
from esen_flows.analysis.query import conductivity_table
from esen_flows.analysis.report import write_report
from esen_flows.candidates import generate_candidates
from esen_flows.io import with_label
from esen_flows.makers import (
    BatchRelaxMaker,
    PhononMaker,
    ScreeningMaker,
    ThermalConductivityMaker,
)
from esen_flows.stores import default_store
from esen_flows.tasks import ConductivitySettings, PhononSettings, RelaxSettings


def screen(structures, potential: str, store_dir: str):
    """Run the screen (batched relaxations -> hull) with ``potential``; its store."""
    maker = ScreeningMaker(
        potential=potential,
        e_hull_max=0.05,
        batch_size=100,
        relax_maker=BatchRelaxMaker(settings=RelaxSettings(fmax=0.05, max_steps=500)),
    )
    flow = maker.make(structures)
    print(f"[{potential}] flow: {len(flow.jobs)} jobs ({', '.join(j.name for j in flow.jobs)})")
    store = default_store(store_dir)
    t0 = time.perf_counter()
    run_locally(flow, store=store, create_folders=False, log=False, raise_immediately=True)
    print(f"[{potential}] screen finished in {time.perf_counter() - t0:.1f} s")
    return store


def main(argv: list[str] | None = None) -> int:
    """Generate candidates, screen them, score against the reference, write the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="demo-results", help="results folder")
    parser.add_argument("--report", default="report.html", help="HTML report to write")
    parser.add_argument(
        "--potential", default="esen-emt-tiny", help="potential name (default: esen-emt-tiny)"
    )
    parser.add_argument(
        "--reference",
        default="emt",
        help="potential whose own hull scores the screen (default: emt; 'none' skips it)",
    )
    parser.add_argument("--max-candidates", type=int, default=250)
    parser.add_argument("--no-phonons", action="store_true", help="skip the phonon step")
    parser.add_argument(
        "--no-conductivity", action="store_true", help="skip the thermal-conductivity step"
    )
    args = parser.parse_args(argv)

    # 1. Candidates: fcc/bcc/hcp-derived binaries and ternaries up to 8 atoms, deduplicated.
    t0 = time.perf_counter()
    structures = generate_candidates(max_candidates=args.max_candidates)
    print(f"{len(structures)} candidate structures generated in {time.perf_counter() - t0:.1f} s")

    # 2. The screen on the embedded on-disk store (no server): batched relaxations (FIRE +
    #    Frechet cell filter), then one hull job. The elemental references (fcc, bcc, hcp of
    #    Cu, Au, Ag, Pd) are relaxed by the flow itself.
    store = screen(structures, args.potential, args.store)

    # 3. Query the results: the hull table is a pandas DataFrame.
    table = hull_table(store, potential=args.potential)
    ok = table[table.status == "ok"]
    print(
        f"\n{len(ok)} structures placed on the hull, {int(ok.stable.sum())} on it, "
        f"{int(ok.candidate.sum())} within 50 meV/atom"
    )
    with_cols = ["label", "formula", "e_form", "e_above_hull", "stable", "candidate"]
    print(ok[with_cols].head(25).to_string(index=False, float_format="%.4f"))
    failed = query(store, "relaxation", status="failed")
    print(f"failed relaxations: {len(failed)}")

    # 4. Score the model's hull against the reference potential's own (Matbench Discovery's
    #    classification metrics: stable = on the hull).
    metrics = None
    if args.reference.lower() != "none" and args.reference != args.potential:
        ref_store = screen(structures, args.reference, f"{args.store}-{args.reference}")
        ref = hull_table(ref_store, potential=args.reference)
        ref = ref[ref.status == "ok"]
        metrics = compare_labels(
            dict(zip(ok.label, ok.stable.astype(bool), strict=True)),
            dict(zip(ref.label, ref.stable.astype(bool), strict=True)),
        )
        e_ref = dict(zip(ref.label, ref.e_form, strict=True))
        common = [lbl for lbl in ok.label if lbl in e_ref]
        mae = sum(
            abs(e - e_ref[lbl]) for lbl, e in zip(ok.label, ok.e_form, strict=True) if lbl in e_ref
        )
        metrics["e_form_mae_mev"] = 1e3 * mae / max(len(common), 1)
        print(
            f"\n{args.potential} against {args.reference} ({metrics['n']} structures): "
            f"F1 {metrics['f1']:.3f}, precision {metrics['precision']:.3f}, recall "
            f"{metrics['recall']:.3f}, DAF {metrics['daf']:.2f}, formation-energy MAE "
            f"{metrics['e_form_mae_mev']:.1f} meV/atom"
        )

    # 5. Phonons for the structures on the model's hull: one PhononMaker job relaxes them
    #    tightly with their symmetry kept (fmax 1e-4 eV/A, float64), evaluates the displaced
    #    supercells of all of them as batches and flags dynamically unstable ones.
    #    (ScreeningMaker(phonons=True) does this inside the screen for every candidate.)
    if not args.no_phonons:
        on_hull = [
            with_label(d.structure, d.label)
            for d in query(store, "stability", potential=args.potential, status="ok")
            if d.stable and d.structure is not None
        ]
        maker = PhononMaker(potential=args.potential, settings=PhononSettings(min_length=10.0))
        t0 = time.perf_counter()
        run_locally(maker.make(on_hull), store=store, create_folders=False, log=False)
        print(f"\nphonons of {len(on_hull)} structures in {time.perf_counter() - t0:.1f} s")
        cols = ["label", "formula", "dynamically_stable", "min_frequency", "max_frequency"]
        print(phonon_table(store, potential=args.potential)[cols].to_string(index=False))

    # 6. Lattice thermal conductivity (phono3py, RTA, 0-1000 K) of the cheapest dynamically
    #    stable structure (a few minutes of fc3 supercells each on 2 cores: ask the maker for
    #    more); the fc2 and fc3 supercells of all the structures given go as batches, and
    #    structures with imaginary modes would get no fc3 work. (ScreeningMaker(conductivity=
    #    True) does this inside the screen.)
    if not args.no_phonons and not args.no_conductivity:
        stable = [
            d
            for d in query(store, "phonon", potential=args.potential, status="ok")
            if d.dynamically_stable and d.structure is not None and _cheap_for_fc3(d)
        ]
        stable.sort(key=lambda d: (d.n_sites, -_spacegroup_number(d), d.label))
        stable = [with_label(d.structure, d.label) for d in stable[:1]]  # the cheapest
        maker = ThermalConductivityMaker(
            potential=args.potential, settings=ConductivitySettings(mesh=[11, 11, 11])
        )
        t0 = time.perf_counter()
        run_locally(maker.make(stable), store=store, create_folders=False, log=False)
        print(f"\nconductivity of {len(stable)} structures in {time.perf_counter() - t0:.1f} s")
        cols = ["label", "formula", "kappa", "kappa_coherence", "mesh", "n_fc3_displacements"]
        print(conductivity_table(store, potential=args.potential)[cols].to_string(index=False))

    # 7. The report: summary and metrics first, interactive hulls, phonons, kappa, the table.
    title = f"Cu-Au-Ag-Pd screen ({args.potential})"
    reference = None
    if metrics is not None:
        title += f", scored against {args.reference}"
        reference = ref_store
    out = write_report(store, args.report, title=title, metrics=metrics, reference=reference)
    print(f"report written to {out}")
    return 0


def _spacegroup_number(doc) -> int:
    return int(doc.spacegroup.rsplit("(", 1)[-1].rstrip(")")) if doc.spacegroup else 0


def _cheap_for_fc3(doc) -> bool:
    """At most 4 atoms and tetragonal or higher symmetry: phono3py's pair displacements grow
    with the square of the atoms a low symmetry leaves inequivalent (hundreds of supercells
    for these alloys, thousands for a 4-atom monoclinic cell, a few dozen for fcc)."""
    return doc.n_sites <= 4 and _spacegroup_number(doc) >= 75


if __name__ == "__main__":
    sys.exit(main())
