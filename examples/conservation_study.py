"""The eSEN paper's NVE test at small scale: the conservative model against its direct twin.

Both shipped models run NVE (velocity Verlet, float64) on solid and molten Cu and CuAu cells
through ``EnergyConservationMaker``; the script prints a table of the energy drift
(meV/atom/ps, linear fit after the first 10 %) and plots total energy against time. The molten
cells are melted first with EMT (Langevin at twice the melting point), so the NVE runs start
from a liquid. The table and plot in ``esen_flows/zoo/README.md`` come from::

    .venv/bin/python examples/conservation_study.py --plot esen_flows/zoo/nve-drift.png
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from jobflow import run_locally

from esen_flows.makers import EnergyConservationMaker
from esen_flows.tasks import NVESettings
from esen_flows.training.data import MELTING_POINTS

MODELS = ("esen-emt-tiny", "esen-emt-tiny-direct")


def cells(seed: int = 0) -> tuple[list[Atoms], list[float]]:
    """Solid (0.5 Tm) and molten (1.25 Tm) Cu and CuAu (L1_0), 32 atoms each."""
    cu = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
    cuau = bulk("Cu", "fcc", a=3.86, cubic=True).repeat(2)
    z = cuau.get_scaled_positions()[:, 2]
    cuau.symbols[np.isclose(z % 0.5, 0.25)] = "Au"  # alternating (002) planes: L1_0
    out, temps = [], []
    rng = np.random.default_rng(seed)
    for name, crystal in (("Cu", cu), ("CuAu", cuau)):
        tm = float(np.mean([MELTING_POINTS[s] for s in crystal.get_chemical_symbols()]))
        solid = crystal.copy()
        solid.info["label"] = f"{name}-solid"
        out.append(solid)
        temps.append(0.5 * tm)
        liquid = crystal.copy()
        liquid.calc = EMT()
        MaxwellBoltzmannDistribution(liquid, temperature_K=2 * tm, rng=rng)
        Langevin(liquid, 2 * units.fs, temperature_K=2 * tm, friction=0.02 / units.fs, rng=rng).run(
            1000
        )
        melt = Atoms(liquid.symbols, liquid.positions, cell=liquid.cell, pbc=True)
        melt.info["label"] = f"{name}-molten"
        out.append(melt)
        temps.append(1.25 * tm)
    return out, temps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="velocity-Verlet steps (1 fs)")
    parser.add_argument("--plot", default="nve-drift.png", help="figure to write")
    args = parser.parse_args(argv)

    structures, temps = cells()
    rows, runs = [], {}
    for model in MODELS:
        maker = EnergyConservationMaker(
            potential=model, settings=NVESettings(steps=args.steps, sample_every=10)
        )
        job = maker.make(structures, temperatures=temps)
        t0 = time.perf_counter()
        out = run_locally(job, create_folders=False, log=False, raise_immediately=True)
        docs = out[job.uuid][1].output
        wall = time.perf_counter() - t0
        for d in docs:
            rows.append((model, d.label, d.temperature, d.mean_temperature, d.drift, d.conserves))
            runs[(model, d.label)] = d
        print(f"{model}: {len(docs)} NVE runs of {args.steps} steps in {wall:.0f} s")

    print("\n| model | cell | T0 (K) | mean T (K) | drift (meV/atom/ps) | conserves |")
    print("|---|---|---|---|---|---|")
    for model, label, t0, tmean, drift, ok in rows:
        print(f"| {model} | {label} | {t0:.0f} | {tmean:.0f} | {drift:+.3f} | {ok} |")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [s.info["label"] for s in structures]
    fig, axes = plt.subplots(1, len(labels), figsize=(4 * len(labels), 3.4), sharey=False)
    for ax, label in zip(axes, labels, strict=True):
        for model, style in zip(MODELS, ("-", "--"), strict=True):
            d = runs[(model, label)]
            e = np.array(d.total_energy)
            ax.plot(d.times_ps, 1e3 * (e - e[0]), style, label=f"{model} ({d.drift:+.2f})")
        ax.set_title(label)
        ax.set_xlabel("time (ps)")
        ax.legend(fontsize=7, title="drift, meV/atom/ps", title_fontsize=7)
    axes[0].set_ylabel("total energy - E(0) (meV/atom)")
    fig.tight_layout()
    fig.savefig(args.plot, dpi=120)
    print(f"plot written to {args.plot}")
    print(json.dumps({f"{m}/{lbl}": round(dr, 4) for m, lbl, _, _, dr, _ in rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
