"""Which optimiser: model calls of ASE's FIRE against its quasi-Newton optimisers, and whether
they reach the same minima, on ``relax_throughput.py``'s structures.

Each structure (demo candidates of 2 to 32 atoms, rattled and strained with a seeded generator)
is relaxed with ASE on the Frechet cell filter's degrees of freedom (positions and cell), fmax
0.05 eV/A, at most 500 steps, by FIRE (what esen-flows' batched engine runs), BFGS, LBFGS and
BFGSLineSearch, counting the model calls (an ASE calculator that counts its evaluations; a line
search evaluates more than once per step). A structure reaches "the same minimum" as FIRE when
its final energy is within ``--tol`` (1 meV/atom) of FIRE's.

The question it answers: would a batched quasi-Newton step save at least 1.5x model calls with
at least 95 % of the structures in FIRE's minimum? Only then is it worth a batched
implementation beside FIRE.

Usage::

    python benchmarks/relax_optimizers.py [--n 40] [--potential esen-emt-tiny] [--tol 1e-3]

The last line is a JSON object with, per optimiser, the model calls, their ratio to FIRE's
(``calls_saved_vs_fire``), the fraction converged and the fraction in FIRE's minimum.
"""

from __future__ import annotations

import argparse
import json
import warnings

import _blas  # benchmarks/ is on the path when this file runs as a script
import numpy as np
from ase.calculators.calculator import Calculator, all_changes
from ase.filters import FrechetCellFilter
from ase.optimize import BFGS, FIRE, LBFGS, BFGSLineSearch
from relax_throughput import FMAX, MAX_STEPS, perturbed_candidates
from tqdm import tqdm

from esen_flows.potentials import get_potential

OPTIMIZERS = {"FIRE": FIRE, "BFGS": BFGS, "LBFGS": LBFGS, "BFGSLineSearch": BFGSLineSearch}


class Counting(Calculator):
    """Wraps a calculator and counts its evaluations (one per new geometry)."""

    implemented_properties = ("energy", "forces", "stress", "free_energy")

    def __init__(self, inner: Calculator):
        super().__init__()
        self.inner = inner
        self.calls = 0

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.calls += 1
        self.inner.calculate(atoms, ["energy", "forces", "stress"], system_changes)
        self.results = dict(self.inner.results)


def relax(atoms, calc: Calculator, optimizer) -> tuple[int, bool, float]:
    """(model calls, converged, energy per atom eV) of one relaxation."""
    atoms = atoms.copy()
    counting = Counting(calc)
    atoms.calc = counting
    opt = optimizer(FrechetCellFilter(atoms), logfile=None)
    converged = bool(opt.run(fmax=FMAX, steps=MAX_STEPS))
    return counting.calls, converged, atoms.get_potential_energy() / len(atoms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=40, help="structures")
    parser.add_argument("--potential", default="esen-emt-tiny")
    parser.add_argument("--tol", type=float, default=1.0e-3, help="same minimum, eV/atom")
    _blas.add_option(parser)
    args = parser.parse_args()
    _blas.apply(args.blas_threads)
    warnings.simplefilter("ignore")
    structures = perturbed_candidates(args.n)
    calc = get_potential(args.potential).as_calculator()
    results = {}
    for name, optimizer in OPTIMIZERS.items():
        rows = [relax(a, calc, optimizer) for a in tqdm(structures, desc=name, leave=False)]
        calls, conv, energy = (np.array(c) for c in zip(*rows, strict=True))
        results[name] = {"calls": calls, "converged": conv, "energy": energy}
    fire = results["FIRE"]
    print(f"{len(structures)} structures, {args.potential}, fmax {FMAX} eV/A, Frechet filter")
    print(f"{'optimiser':<16}{'calls':>8}{'vs FIRE':>9}{'converged':>11}{'same min':>10}")
    summary = {}
    for name, r in results.items():
        same = np.abs(r["energy"] - fire["energy"]) <= args.tol
        saved = fire["calls"].sum() / r["calls"].sum()
        print(
            f"{name:<16}{r['calls'].sum():>8d}{saved:>8.2f}x{r['converged'].mean():>11.0%}"
            f"{same.mean():>10.0%}"
        )
        summary[name] = {
            "calls": int(r["calls"].sum()),
            "calls_saved_vs_fire": round(float(saved), 3),
            "converged": round(float(r["converged"].mean()), 3),
            "same_minimum_as_fire": round(float(same.mean()), 3),
            "largest_energy_difference_ev_atom": round(
                float(np.max(np.abs(r["energy"] - fire["energy"]))), 5
            ),
        }
    print(json.dumps({"n_structures": len(structures), "potential": args.potential, **summary}))


if __name__ == "__main__":
    main()
