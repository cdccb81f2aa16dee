"""Phonon throughput: esen-flows' PhononMaker against atomate2's forcefield PhononMaker.

The same structures (the demo's Cu-Au-Ag-Pd candidates, strained by about 1 % with a seeded
generator) go through the same work in one run, with esen-emt-tiny in float64 on both sides:

1. esen-flows: ``PhononMaker`` (one job for all structures): FIRE + Frechet cell filter +
   symmetry constraint to fmax 1e-4 eV/A, then every displaced supercell of every structure
   evaluated as batches, symmetrised force constants, band structure, DOS, thermal properties;
   run twice: phonopy's systematic displacements, then random +- ones fitted with symfc
   (``displacements="random"``), whose supercell count and agreement with the systematic
   run are printed too.
2. atomate2: ``atomate2.forcefields.flows.phonons.PhononMaker`` per structure, all in one
   jobflow ``Flow`` run by ``run_locally``: its ``ForceFieldRelaxMaker`` (FIRE, Frechet filter,
   ``fix_symmetry=True``, fmax 1e-4, the same step limit), one static job per displaced
   supercell, its band structure, DOS and thermal properties. No extra static job.

Both use displacement 0.01 A and the same supercell per structure (the diagonal one whose faces
are ``--min-length`` A apart, given to both explicitly). The table shows wall time, the
supercells evaluated, and how the results agree: largest |difference| of the maximum frequency
and of the heat capacity at 300 K, and the dynamic-stability verdicts.

Usage::

    python benchmarks/phonons.py [--n 20] [--min-length 10] [--threads 2] [--quick]

The last line is a JSON object with ``speedup_vs_atomate2`` (atomate2's wall time over
esen-flows') and ``speedup_random_vs_atomate2`` (the same with random displacements), and the
supercell counts of both kinds.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from pymatgen.core import Structure

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _blas  # noqa: E402

from esen_flows.candidates import generate_candidates  # noqa: E402
from esen_flows.dynamics.phonon_properties import band_path_qpoints, dynamic_stability  # noqa: E402
from esen_flows.dynamics.phonons import supercell_for_length  # noqa: E402
from esen_flows.io import with_label  # noqa: E402
from esen_flows.makers import PhononMaker  # noqa: E402
from esen_flows.potentials import get_potential  # noqa: E402
from esen_flows.tasks import PhononSettings, SymmetricRelax  # noqa: E402

POTENTIAL = "esen-emt-tiny"
DTYPE = "float64"
FMAX = 1.0e-4
MAX_STEPS = 1000
SYMPREC = 1.0e-3
DISPLACEMENT = 0.01


def strained_candidates(n: int, seed: int = 0) -> list[Structure]:
    """``n`` demo candidates with a random symmetric strain of about 1 % (seeded): each needs a
    real relaxation, and the strain keeps the space group's lattice type only approximately,
    as a candidate from a loose screen would."""
    rng = np.random.default_rng(seed)
    out = []
    for s in generate_candidates(max_candidates=n):
        eps = rng.normal(0.0, 0.01, (3, 3))
        eps = 0.5 * (eps + eps.T)
        strained = s.copy()
        strained.lattice = strained.lattice.__class__(s.lattice.matrix @ (np.eye(3) + eps))
        out.append(with_label(strained, s.properties["label"]))
    return out


def run_esen_flows(
    structures: list[Structure],
    matrices: dict[str, list[list[int]]],
    device: str,
    random: bool = False,
) -> dict:
    """This maker, one job for all structures; ``random``: fc2 from phonopy's "auto" number of
    random +- displacements fitted with symfc instead of the systematic set."""
    from jobflow import run_locally

    from esen_flows.stores import default_store

    maker = PhononMaker(
        potential=POTENTIAL,
        dtype=DTYPE,
        device=device,
        settings=PhononSettings(
            relax=SymmetricRelax(fmax=FMAX, max_steps=MAX_STEPS, symprec=SYMPREC),
            displacement=DISPLACEMENT,
            **({"displacements": "random", "plusminus": True} if random else {}),
        ),
    )
    job = maker.make(structures, [matrices[s.properties["label"]] for s in structures])
    with tempfile.TemporaryDirectory() as folder:
        store = default_store(folder)
        t0 = time.perf_counter()
        responses = run_locally(job, store=store, create_folders=False, log=False)
        wall = time.perf_counter() - t0
    (docs,) = [r[1].output for r in responses.values()]
    return {"wall_s": wall, "docs": {d.label: d for d in docs}}


def run_atomate2(
    structures: list[Structure], matrices: dict[str, list[list[int]]], device: str
) -> dict:
    """atomate2's forcefield PhononMaker per structure, all in one Flow and one run_locally."""
    from _atomate2_calc import CALCULATOR_META
    from atomate2.common.schemas.phonons import PhononBSDOSDoc
    from atomate2.forcefields.flows.phonons import PhononMaker as Atomate2PhononMaker
    from atomate2.forcefields.jobs import ForceFieldRelaxMaker, ForceFieldStaticMaker
    from jobflow import Flow, JobStore, run_locally
    from maggma.stores import MemoryStore

    kwargs = {"device": device, "dtype": DTYPE}
    maker = Atomate2PhononMaker(
        bulk_relax_maker=ForceFieldRelaxMaker(
            force_field_name=dict(CALCULATOR_META),
            calculator_kwargs=kwargs,
            relax_cell=True,
            fix_symmetry=True,
            symprec=SYMPREC,
            steps=MAX_STEPS,
            relax_kwargs={"fmax": FMAX},
            optimizer_kwargs={"optimizer": "FIRE"},
        ),
        static_energy_maker=None,
        phonon_displacement_maker=ForceFieldStaticMaker(
            force_field_name=dict(CALCULATOR_META), calculator_kwargs=kwargs
        ),
        displacement=DISPLACEMENT,
    )
    flows = []
    for s in structures:
        flow = maker.make(s, supercell_matrix=matrices[s.properties["label"]])
        flow.name = s.properties["label"]
        flows.append(flow)
    store = JobStore(MemoryStore(), additional_stores={"data": MemoryStore()})
    with tempfile.TemporaryDirectory() as scratch:
        t0 = time.perf_counter()
        responses = run_locally(
            Flow(flows), store=store, create_folders=True, root_dir=scratch, log=False
        )
        wall = time.perf_counter() - t0
    docs = {}
    for flow in flows:
        uuids = {j.uuid for j in flow.jobs if j.name == "generate_frequencies_eigenvectors"}
        for uuid in uuids:
            row = store.query_one({"uuid": uuid}, load=True)
            if row is not None:
                docs[flow.name] = PhononBSDOSDoc.model_validate(row["output"])
    n_jobs = sum(len(r) for r in responses.values())
    return {"wall_s": wall, "docs": docs, "jobs": n_jobs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20, help="structures (default 20)")
    parser.add_argument("--min-length", type=float, default=10.0, help="supercell width, A")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="4 structures")
    _blas.add_option(parser)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    blas = _blas.apply(args.blas_threads)
    warnings.filterwarnings("ignore")
    logging.getLogger("jobflow").setLevel(logging.ERROR)
    os.environ.setdefault("TQDM_DISABLE", "1")
    n = 4 if args.quick else args.n

    structures = strained_candidates(n)
    # the same supercell for both: the diagonal one of this maker's min_length rule on the
    # input cell, given to both makers explicitly
    matrices = {
        s.properties["label"]: supercell_for_length(s.lattice.matrix, args.min_length).tolist()
        for s in structures
    }
    get_potential(POTENTIAL, device=args.device, dtype=DTYPE)  # loaded once, outside the timing

    mine = run_esen_flows(structures, matrices, args.device)
    rnd = run_esen_flows(structures, matrices, args.device, random=True)
    theirs = run_atomate2(structures, matrices, args.device)

    labels = [s.properties["label"] for s in structures]
    ok = [
        label for label in labels if mine["docs"][label].status == "ok" and label in theirs["docs"]
    ]
    same_cell = sum(mine["docs"][label].supercell_matrix == matrices[label] for label in ok)
    d_max = [
        abs(
            mine["docs"][label].max_frequency
            - float(np.max(theirs["docs"][label].phonon_bandstructure.bands))
        )
        for label in ok
    ]
    d_cv = []
    for label in ok:
        a2 = theirs["docs"][label]
        i = list(a2.temperatures).index(300)
        cv = mine["docs"][label].thermal_properties.at(300.0)["heat_capacity"]
        d_cv.append(abs(cv - a2.heat_capacities[i]) / max(abs(a2.heat_capacities[i]), 1e-12))
    # the same rule on both sides' band frequencies (atomate2's own flag counts any mode below
    # -1e-5 THz, acoustic modes at Gamma included, and its force constants are not symmetrised)
    agree = 0
    differ: list[tuple[str, float, float]] = []
    for label in ok:
        bands = (mine["docs"][label].band_structure, theirs["docs"][label].phonon_bandstructure)
        verdicts = [
            dynamic_stability(band_path_qpoints(bs), np.asarray(bs.bands).T).dynamically_stable
            for bs in bands
        ]
        agree += verdicts[0] == verdicts[1]
        if verdicts[0] != verdicts[1]:
            differ.append((label, *(float(np.min(bs.bands)) for bs in bands)))
    n_cells = sum(mine["docs"][label].n_displacements or 0 for label in labels)
    n_atoms = sum(
        (mine["docs"][label].n_displacements or 0) * (mine["docs"][label].n_supercell_atoms or 0)
        for label in labels
    )
    speedup = theirs["wall_s"] / mine["wall_s"]
    speedup_random = theirs["wall_s"] / rnd["wall_s"]
    n_cells_random = sum(rnd["docs"][label].n_displacements or 0 for label in labels)
    both = [lab for lab in ok if rnd["docs"][lab].status == "ok"]
    d_random = [
        abs(rnd["docs"][lab].max_frequency - mine["docs"][lab].max_frequency) for lab in both
    ]
    cv_random = []
    for lab in both:
        cvs = [d["docs"][lab].thermal_properties.at(300.0)["heat_capacity"] for d in (rnd, mine)]
        cv_random.append(abs(cvs[0] / cvs[1] - 1))

    print(
        f"{n} structures, {POTENTIAL} ({DTYPE}, {args.device}, {torch.get_num_threads()} threads)"
    )
    print(f"min_length {args.min_length} A: {n_cells} displaced supercells, {n_atoms} atoms\n")
    print(f"{'way':<12}{'wall (s)':>10}{'s/structure':>13}{'ok':>5}{'jobs':>7}")
    ok_mine = sum(mine["docs"][label].status == "ok" for label in labels)
    print(f"{'esen-flows':<12}{mine['wall_s']:>10.1f}{mine['wall_s'] / n:>13.2f}{ok_mine:>5}{1:>7}")
    ok_rnd = sum(rnd["docs"][label].status == "ok" for label in labels)
    print(f"{'random':<12}{rnd['wall_s']:>10.1f}{rnd['wall_s'] / n:>13.2f}{ok_rnd:>5}{1:>7}")
    print(
        f"{'atomate2':<12}{theirs['wall_s']:>10.1f}{theirs['wall_s'] / n:>13.2f}"
        f"{len(theirs['docs']):>5}{theirs['jobs']:>7}"
    )
    print(
        f"\nagreement on {len(ok)} structures: same supercell {same_cell}/{len(ok)}, "
        f"max |d max_frequency| {max(d_max, default=float('nan')):.2e} THz, "
        f"max rel. |d Cv(300 K)| {max(d_cv, default=float('nan')):.2e}, "
        f"stability verdicts equal {agree}/{len(ok)}"
    )
    for label, lo_mine, lo_theirs in differ:
        print(
            f"  verdicts differ for {label}: lowest band frequency {lo_mine:.4f} THz here, "
            f"{lo_theirs:.4f} THz in atomate2's"
        )
    print(
        f"random +- displacements: {n_cells_random} supercells against {n_cells} systematic; "
        f"against the systematic run max |d max_frequency| "
        f"{max(d_random, default=float('nan')):.2e} THz, max rel. |d Cv(300 K)| "
        f"{max(cv_random, default=float('nan')):.2e}"
    )
    print(f"speedup vs atomate2: systematic {speedup:.2f}x, random {speedup_random:.2f}x")
    print(
        json.dumps(
            {
                "speedup_vs_atomate2": round(speedup, 3),
                "speedup_random_vs_atomate2": round(speedup_random, 3),
                "n_supercells_systematic": n_cells,
                "n_supercells_random": n_cells_random,
                "n_structures": n,
                "esen_flows_s": round(mine["wall_s"], 2),
                "esen_flows_random_s": round(rnd["wall_s"], 2),
                "atomate2_s": round(theirs["wall_s"], 2),
                "blas_threads": blas,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
