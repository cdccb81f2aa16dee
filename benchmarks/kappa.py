"""Lattice thermal conductivity: the shipped esen-emt-tiny against EMT, and the
ThermalConductivityMaker against phono3py driven directly, in one run.

A set of EMT crystals (fcc elements and L1_2 / L1_0 ordered alloys, conventional cubic cells at
experimental lattice constants, so every side relaxes them) goes through Matbench Discovery's
kappa protocol: FIRE + Frechet cell filter + symmetry to fmax 1e-4 eV/A within 300 steps,
phono3py displacements of 0.03 A, fc3 in the 2x2x2 and fc2 in the 3x3x3 supercell, symmetrised
fc2 and fc3, the imaginary-mode check from fc2, then the Wigner equation in the RTA at 300 K with
isotopes. Five runs, the same settings and meshes:

1. reference: ``ThermalConductivityMaker`` with EMT itself, systematic and ``fast()``;
2. esen-flows: ``ThermalConductivityMaker`` with esen-emt-tiny (float64), one job for all
   structures, all fc2 and then all fc3 supercells evaluated as batches: the systematic set
   (``matbench_discovery()``) and ``fast()`` (random +- fc3 displacements at twice symfc's
   minimum, the systematic fc2 set);
3. peer: phono3py driven directly with esen-emt-tiny's ASE calculator, as Matbench Discovery's
   own script does it: per structure, ASE's FIRE with FixSymmetry and FrechetCellFilter, then
   every displaced (systematic) supercell one at a time, produce fc2, the check, fc3, the
   conductivity.

Printed: per structure kappa (W/(m K)) of EMT and of esen-emt-tiny, SRE and SRME (Matbench
Discovery's definitions, 300 K), the two esen-emt-tiny runs' agreement, and the wall times with
the peer's split (relaxation, forces, phono3py's own work).

Usage::

    python benchmarks/kappa.py [--quick] [--ternary] [--threads 2] [--device cuda]
        [--potential esen:eSEN-30M-OAM.pt]   # where the model's cost dominates

The last line is a JSON object with ``speedup_vs_phono3py_loop`` and
``speedup_random_vs_phono3py`` (the peer's wall time over the systematic and the ``fast()``
maker's), the supercell counts of both sides, ``srme`` and ``srme_random`` (mean over the
structures), ``sre``, and the time shares.
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
import pandas as pd
import torch
from ase import Atoms
from ase.build import bulk
from ase.data import atomic_numbers, reference_states

from esen_flows.analysis.conductivity import kappa_metrics
from esen_flows.dynamics.conductivity import mesh_frequencies
from esen_flows.dynamics.phonon_properties import dynamic_stability
from esen_flows.makers import ThermalConductivityMaker
from esen_flows.potentials import get_potential

POTENTIAL = "esen-emt-tiny"
FC3 = [2, 2, 2]
FC2 = [3, 3, 3]
TEMPERATURE = 300.0


def lattice_constant(symbol: str) -> float:
    return float(reference_states[atomic_numbers[symbol]]["a"])


def fcc(symbol: str) -> Atoms:
    atoms = bulk(symbol, "fcc", a=lattice_constant(symbol), cubic=True)
    atoms.info["label"] = f"{symbol}-fcc"
    return atoms


def ordered(kind: str, a_sym: str, b_sym: str) -> Atoms:
    """L1_2 A3B (B at the corner) or L1_0 AB (alternating (001) planes), conventional cell at
    Vegard's lattice constant."""
    if kind == "L12":
        a = 0.75 * lattice_constant(a_sym) + 0.25 * lattice_constant(b_sym)
        atoms = bulk(a_sym, "fcc", a=a, cubic=True)
        atoms.symbols[0] = b_sym
        atoms.info["label"] = f"{a_sym}3{b_sym}-L12"
    else:
        a = 0.5 * (lattice_constant(a_sym) + lattice_constant(b_sym))
        atoms = bulk(a_sym, "fcc", a=a, cubic=True)
        atoms.symbols[2] = b_sym  # (0.5, 0, 0.5)
        atoms.symbols[1] = b_sym  # (0, 0.5, 0.5): B on z = 1/2, A on z = 0
        atoms.info["label"] = f"{a_sym}{b_sym}-L10"
    return atoms


def crystals(quick: bool) -> list[Atoms]:
    if quick:
        return [fcc("Cu"), fcc("Al"), ordered("L12", "Cu", "Au")]
    return [
        *(fcc(s) for s in ("Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt")),
        ordered("L12", "Cu", "Au"),
        ordered("L12", "Ni", "Al"),
        ordered("L12", "Pt", "Ni"),
        ordered("L10", "Cu", "Au"),
    ]


def mesh_for(atoms: Atoms, quick: bool) -> list[int]:
    """A q-mesh per structure: denser for the 1-atom fcc primitive cells (Matbench Discovery
    gives each structure its own)."""
    if len(set(atoms.get_chemical_symbols())) == 1:
        return [9, 9, 9] if quick else [13, 13, 13]
    return [5, 5, 5] if quick else [7, 7, 7]


def maker(
    potential: str, device: str | None = None, random: bool = False, **extra
) -> ThermalConductivityMaker:
    """Matbench Discovery's preset, or (``random``) its ``fast`` twin: fc3 from random +-
    displacements at twice symfc's minimum, fitted with symfc; the systematic fc2 set."""
    preset = (
        ThermalConductivityMaker.fast if random else ThermalConductivityMaker.matbench_discovery
    )
    return preset(
        potential=potential,
        supercell_matrix=FC3,
        fc2_supercell_matrix=FC2,
        dtype="float64",
        device=device,
        **extra,
    )


def run_maker(
    potential: str, items: list[Atoms], meshes, store, device: str, random: bool = False, **extra
) -> float:
    from jobflow import run_locally

    start = time.perf_counter()
    job = maker(potential, device, random, **extra).make([a.copy() for a in items], meshes=meshes)
    run_locally(job, store=store, create_folders=False, log=False, ensure_success=True)
    return time.perf_counter() - start


def phono3py_loop(
    items: list[Atoms], meshes, device: str
) -> tuple[dict[str, float], dict[str, float], dict[str, int]]:
    """Matbench Discovery's own way: per structure, ASE relaxation, then phono3py with the
    calculator one supercell at a time (the systematic set). Returns kappa per label, the time
    split and the fc2 and fc3 supercells evaluated."""
    from ase.constraints import FixSymmetry
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE
    from phono3py import Phono3py
    from phonopy.structure.atoms import PhonopyAtoms

    settings = maker(POTENTIAL).settings
    calc = get_potential(POTENTIAL, device=device, dtype="float64").as_calculator()
    times = {"relax": 0.0, "forces": 0.0, "phono3py": 0.0}
    counts = {"fc2": 0, "fc3": 0}
    kappas: dict[str, float] = {}

    def forces(cells) -> np.ndarray:
        out = []
        for cell in cells:
            sc = Atoms(cell.symbols, cell=cell.cell, scaled_positions=cell.scaled_positions)
            sc.pbc = True
            sc.calc = calc
            out.append(sc.get_forces())
        return np.array(out)

    for atoms, mesh in zip(items, meshes, strict=True):
        atoms = atoms.copy()
        t0 = time.perf_counter()
        atoms.calc = calc
        atoms.set_constraint(FixSymmetry(atoms))
        FIRE(FrechetCellFilter(atoms), logfile=None).run(
            fmax=settings.relax.fmax, steps=settings.relax.max_steps
        )
        atoms.set_constraint()
        t1 = time.perf_counter()
        unitcell = PhonopyAtoms(
            symbols=atoms.get_chemical_symbols(),
            cell=atoms.cell.array,
            scaled_positions=atoms.get_scaled_positions(),
        )
        ph3 = Phono3py(
            unitcell,
            supercell_matrix=np.diag(FC3),
            phonon_supercell_matrix=np.diag(FC2),
            primitive_matrix="auto",
        )
        ph3.generate_displacements(distance=settings.displacement)
        t2 = time.perf_counter()
        ph3.phonon_forces = forces(ph3.phonon_supercells_with_displacements)
        counts["fc2"] += len(ph3.phonon_supercells_with_displacements)
        t3 = time.perf_counter()
        ph3.produce_fc2()
        ph3.symmetrize_fc2()
        qpoints, freqs = mesh_frequencies(ph3, mesh)
        stable = dynamic_stability(qpoints, freqs).dynamically_stable
        t4 = time.perf_counter()
        times["relax"] += t1 - t0
        times["phono3py"] += (t2 - t1) + (t4 - t3)
        times["forces"] += t3 - t2
        if not stable:
            continue
        t5 = time.perf_counter()
        ph3.forces = forces(ph3.supercells_with_displacements)
        counts["fc3"] += len(ph3.supercells_with_displacements)
        t6 = time.perf_counter()
        ph3.produce_fc3()
        ph3.symmetrize_fc3()
        ph3.mesh_numbers = mesh
        ph3.init_phph_interaction()
        ph3.run_thermal_conductivity(
            temperatures=[TEMPERATURE],
            is_isotope=True,
            boundary_mfp=settings.boundary_mfp,
            transport_type="SMM19",
        )
        kappas[atoms.info["label"]] = float(ph3.thermal_conductivity.kappa[0][0, :3].mean())
        t7 = time.perf_counter()
        times["forces"] += t6 - t5
        times["phono3py"] += t7 - t6
    return kappas, times, counts


def ternary() -> Atoms:
    """A low-symmetry ternary no test uses: the demo candidate Cu2AgAu-fcc-155 (Cm, 4 atoms;
    2,448 systematic fc3 supercells in 2x2x2 against 384 random ones at phono3py's "auto")."""
    from esen_flows.candidates import generate_candidates

    (cell,) = [s for s in generate_candidates() if s.properties["label"] == "Cu2AgAu-fcc-155"]
    atoms = cell.to_ase_atoms()
    atoms.info["label"] = "Cu2AgAu-Cm"
    return atoms


def read_runs(store, labels: list[str]) -> tuple[pd.DataFrame, dict]:
    """esen-emt-tiny against EMT (SRE, SRME per label) and every conductivity document by
    (potential, label)."""
    from esen_flows.analysis import query

    table = kappa_metrics(store, POTENTIAL, "emt", labels=labels).set_index("label")
    docs = {(d.potential, d.label): d for d in query(store, "conductivity")}
    return table, docs


def kappa_of(docs: dict, potential: str, label: str) -> float:
    doc = docs.get((potential, label))
    if doc is None or not doc.kappa_mean:
        return float("nan")
    return float(doc.kappa_at(TEMPERATURE))


def main() -> None:
    global POTENTIAL  # the model of every side, chosen once here from --potential
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 crystals, coarser meshes")
    parser.add_argument(
        "--ternary", action="store_true", help="add the low-symmetry ternary Cu2AgAu (Cm)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="the model's device on all sides")
    parser.add_argument(
        "--potential",
        default=POTENTIAL,
        help="the model on the maker and loop sides (any get_potential name, e.g. esen:PATH "
        "for a published checkpoint; EMT stays the reference)",
    )
    _blas.add_option(parser)
    args = parser.parse_args()
    POTENTIAL = args.potential
    if args.threads:
        torch.set_num_threads(args.threads)
    blas = _blas.apply(args.blas_threads)
    warnings.simplefilter("ignore")
    logging.getLogger("jobflow").setLevel(logging.WARNING)
    os.environ.setdefault("TQDM_DISABLE", "1")
    from esen_flows.stores import default_store

    items = crystals(args.quick) + ([ternary()] if args.ternary else [])
    meshes = [mesh_for(a, args.quick) for a in items]
    labels = [a.info["label"] for a in items]
    # the model load is not timed on either side
    warm = get_potential(POTENTIAL, device=args.device, dtype="float64")
    warm.evaluate([items[0]])  # first-call set-up (CUDA context, kernels) timed on no side
    with tempfile.TemporaryDirectory() as tmp:
        stores = {m: default_store(os.path.join(tmp, m)) for m in ("systematic", "random")}
        t = {}
        for mode, store in stores.items():
            random = mode == "random"
            t[f"emt {mode}"] = run_maker("emt", items, meshes, store, "cpu", random)
            t[mode] = run_maker(POTENTIAL, items, meshes, store, args.device, random)
        loop_kappa, loop_times, loop_counts = phono3py_loop(items, meshes, args.device)
        t_loop = sum(loop_times.values())
        runs = {mode: read_runs(store, labels) for mode, store in stores.items()}
    sys_table, sys_docs = runs["systematic"]
    rnd_table, rnd_docs = runs["random"]
    head = ("structure", "mesh", "k EMT", "rnd", "k tiny", "rnd", "k loop", "SRME", "rnd")
    head += ("fc3 sys", "rnd")
    print(f"{head[0]:<14}" + "".join(f"{h:>8}" for h in head[1:]))
    rel = {"emt": [], POTENTIAL: []}
    for label, mesh in zip(labels, meshes, strict=True):
        k = {
            (pot, mode): kappa_of(docs, pot, label)
            for mode, docs in (("sys", sys_docs), ("rnd", rnd_docs))
            for pot in ("emt", POTENTIAL)
        }
        for pot in rel:
            if np.isfinite(k[pot, "sys"]) and np.isfinite(k[pot, "rnd"]):
                rel[pot].append(abs(k[pot, "rnd"] / k[pot, "sys"] - 1))
        kl = loop_kappa.get(label, float("nan"))
        n3 = [docs[POTENTIAL, label].n_fc3_displacements for docs in (sys_docs, rnd_docs)]
        print(
            f"{label:<14}{'x'.join(map(str, mesh)):>8}"
            + "".join(f"{v:>8.2f}" for v in (*k.values(), kl))
            + f"{sys_table.loc[label].srme:>8.3f}{rnd_table.loc[label].srme:>8.3f}"
            + "".join(f"{n or 0:>8d}" for n in n3)
        )
    counts = {
        mode: {
            f"n_{fc}": sum(
                getattr(docs[POTENTIAL, lab], f"n_{fc}_displacements") or 0 for lab in labels
            )
            for fc in ("fc2", "fc3")
        }
        for mode, docs in (("systematic", sys_docs), ("random", rnd_docs))
    }
    agree = [
        abs(kappa_of(sys_docs, POTENTIAL, lab) / loop_kappa[lab] - 1)
        for lab in labels
        if lab in loop_kappa and np.isfinite(kappa_of(sys_docs, POTENTIAL, lab))
    ]
    speedup = t_loop / t["systematic"]
    speedup_random = t_loop / t["random"]
    print(
        f"\nmean SRME systematic {sys_table.srme.mean():.3f}, random {rnd_table.srme.mean():.3f} "
        f"(eSEN-30M-OAM published: 0.170); maker vs loop kappa within {max(agree):.2%}"
    )
    for pot, values in rel.items():
        print(
            f"{pot}: random against systematic kappa, largest |relative difference| "
            f"{max(values):.2%}, mean {np.mean(values):.2%}"
        )
    print(
        f"supercells (fc2 + fc3): systematic {counts['systematic']}, random {counts['random']},"
        f" loop {loop_counts}"
    )
    print(
        f"EMT reference makers: systematic {t['emt systematic']:.1f} s, random "
        f"{t['emt random']:.1f} s"
    )
    print(
        f"esen-flows maker (esen-emt-tiny): systematic {t['systematic']:.1f} s, "
        f"random (fast preset) {t['random']:.1f} s"
    )
    print(
        f"phono3py loop (esen-emt-tiny): {t_loop:.1f} s = relax {loop_times['relax']:.1f} + "
        f"forces {loop_times['forces']:.1f} + phono3py {loop_times['phono3py']:.1f}"
    )
    print(f"speed-up: systematic {speedup:.2f}x, random {speedup_random:.2f}x")
    print(
        json.dumps(
            {
                "speedup_vs_phono3py_loop": round(speedup, 3),
                "speedup_random_vs_phono3py": round(speedup_random, 3),
                "srme": round(float(sys_table.srme.mean()), 4),
                "srme_random": round(float(rnd_table.srme.mean()), 4),
                "sre": round(float(sys_table.sre.mean()), 4),
                "sre_random": round(float(rnd_table.sre.mean()), 4),
                "random_vs_systematic_max_rel_emt": round(max(rel["emt"]), 4),
                "random_vs_systematic_max_rel_model": round(max(rel[POTENTIAL]), 4),
                "maker_s": round(t["systematic"], 2),
                "maker_random_s": round(t["random"], 2),
                "loop_s": round(t_loop, 2),
                "n_fc3_supercells_random": counts["random"]["n_fc3"],
                "n_fc2_supercells_random": counts["random"]["n_fc2"],
                "n_fc3_supercells_phono3py": loop_counts["fc3"],
                "n_fc2_supercells_phono3py": loop_counts["fc2"],
                "loop_phono3py_share": round(loop_times["phono3py"] / t_loop, 3),
                "loop_forces_share": round(loop_times["forces"] / t_loop, 3),
                "loop_relax_share": round(loop_times["relax"] / t_loop, 3),
                "n_structures": len(items),
                "device": args.device,
                "threads": torch.get_num_threads(),
                "blas_threads": blas,
            }
        )
    )


if __name__ == "__main__":
    main()
