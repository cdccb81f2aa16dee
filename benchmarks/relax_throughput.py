"""Relaxation throughput: esen-flows' batched FIRE against atomate2, an ASE loop and torch-sim.

The same structures (the demo's Cu-Au-Ag-Pd candidates, some repeated into supercells so they
hold 2 to 32 atoms, rattled by 0.05 A and strained by about 1.5 % with a seeded generator) are
relaxed with esen-emt-tiny (float32) in one run, every way doing the same work: FIRE with ASE's
defaults on the Frechet cell filter's degrees of freedom, fmax 0.05 eV/A on the atomic forces
AND the cell forces, at most 500 steps.

1. esen-flows: ``relax_structures`` (all structures in one batch, one model call per step).
2. atomate2: ``ForceFieldRelaxMaker`` with the esen-emt-tiny ASE calculator, one job per
   structure in one jobflow ``Flow`` run by ``run_locally``, as atomate2 users run it.
3. ASE loop: ``FIRE(FrechetCellFilter(atoms)).run(fmax=0.05, steps=500)`` per structure.
4. torch-sim (when ``torch-sim-atomistic`` is installed): batched ``frechet_cell_fire`` through
   ``torch_sim.optimize``, the model wrapped by ``_torchsim_esen.ESENTorchSimModel``.

Usage::

    python benchmarks/relax_throughput.py [--quick] [--n 100] [--threads 2] [--device cpu]

Prints a table and, as its last line, a JSON object with ``speedup_vs_atomate2``,
``speedup_vs_ase_loop`` and (when torch-sim ran) ``speedup_vs_torchsim``: the other way's wall
time over esen-flows'.
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from ase.filters import FrechetCellFilter
from ase.optimize import FIRE
from pymatgen.io.ase import AseAtomsAdaptor

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _blas  # noqa: E402

from esen_flows.candidates import generate_candidates  # noqa: E402
from esen_flows.dynamics.relax import relax_structures  # noqa: E402
from esen_flows.potentials import get_potential  # noqa: E402

POTENTIAL = "esen-emt-tiny"
FMAX = 0.05  # eV/A, atomic forces and cell forces
MAX_STEPS = 500
#: the supercell each structure is repeated into, cycled over the set (the largest <= 32 atoms)
REPEATS = [(1, 1, 1), (2, 1, 1), (2, 2, 1), (2, 2, 2)]
MAX_ATOMS = 32


@dataclass
class Outcome:
    """One way's relaxations of the whole set, in input order."""

    method: str
    wall_s: float
    energy_per_atom: np.ndarray  # eV/atom, NaN where it failed
    converged: np.ndarray  # bool
    n_steps: np.ndarray  # FIRE steps taken per structure
    cpu_s: float = 0.0  # CPU time of this process (all threads)


def perturbed_candidates(n: int, seed: int = 0) -> list[Atoms]:
    """``n`` demo candidates as supercells of 2 to 32 atoms, rattled and strained (seeded).

    Structure ``i`` is repeated into ``REPEATS[i % 4]``, or the largest smaller supercell of
    ``REPEATS`` that keeps it within ``MAX_ATOMS`` atoms; then its cell is strained by a random
    symmetric strain (normal, 1.5 % per component, atoms following) and its positions rattled
    by a normal 0.05 A per coordinate.
    """
    structures = generate_candidates(max_candidates=n)
    rng = np.random.default_rng(seed)
    out = []
    for i, s in enumerate(structures):
        atoms = AseAtomsAdaptor.get_atoms(s)
        fitting = [
            r for r in REPEATS[: i % len(REPEATS) + 1] if len(atoms) * np.prod(r) <= MAX_ATOMS
        ]
        atoms = atoms.repeat(fitting[-1])
        eps = rng.normal(0.0, 0.015, (3, 3))
        eps = 0.5 * (eps + eps.T)
        atoms.set_cell(atoms.cell.array @ (np.eye(3) + eps), scale_atoms=True)
        atoms.positions += rng.normal(0.0, 0.05, atoms.positions.shape)
        atoms.info = {"label": s.properties["label"]}
        out.append(atoms)
    return out


def timed(fn: Callable[[], Outcome]) -> Outcome:
    """Run ``fn`` (which fills in everything but the times) and time it: wall time, and this
    process's CPU time (less sensitive to other processes on a shared machine)."""
    t0, c0 = time.perf_counter(), time.process_time()
    result = fn()
    result.wall_s = time.perf_counter() - t0
    result.cpu_s = time.process_time() - c0
    return result


def run_esen_flows(potential, structures: list[Atoms]) -> Outcome:
    """This engine: every structure in one batch, one ``potential.evaluate`` per step."""
    results = relax_structures(
        potential, [a.copy() for a in structures], fmax=FMAX, max_steps=MAX_STEPS, relax_cell=True
    )
    return Outcome(
        "esen-flows",
        0.0,
        np.array([r.energy / len(r.atoms) for r in results]),
        np.array([r.status == "converged" for r in results]),
        np.array([r.n_steps for r in results]),
    )


def run_ase_loop(potential, structures: list[Atoms]) -> Outcome:
    """The plain ASE loop: one structure at a time through the ASE calculator."""
    energies, converged, steps = [], [], []
    for a in structures:
        atoms = a.copy()
        atoms.calc = potential.as_calculator()
        opt = FIRE(FrechetCellFilter(atoms), logfile=None)
        converged.append(bool(opt.run(fmax=FMAX, steps=MAX_STEPS)))
        steps.append(opt.nsteps)
        energies.append(atoms.get_potential_energy() / len(atoms))
    return Outcome("ASE loop", 0.0, np.array(energies), np.array(converged), np.array(steps))


def run_atomate2(structures: list[Atoms], device: str) -> Outcome:
    """atomate2's ``ForceFieldRelaxMaker``: one job per structure, all in one jobflow Flow.

    This is how atomate2 users relax a set of structures: one relax job per structure
    (atomate2's own workflows, e.g. its phonon and elastic flows, make one job per
    structure), collected in a ``Flow`` and run by a manager (``run_locally`` here; FireWorks
    or jobflow-remote on a cluster add their own overheads). One Flow rather than one
    ``run_locally`` per structure, so jobflow's set-up is paid once. Each job runs
    ``AseRelaxer``: FIRE (atomate2's default optimizer) on ``FrechetCellFilter`` (its default
    cell filter); atomate2's default fmax is 0.1, so 0.05 is passed in ``relax_kwargs``. The
    rest stays at atomate2's defaults (the per-step trajectory observer, the task document
    with its ionic steps, the ``final_atoms_object.xyz`` each job appends to, in a scratch
    folder here).
    """
    from _atomate2_calc import CALCULATOR_META
    from atomate2.forcefields.jobs import ForceFieldRelaxMaker
    from emmet.core.types.enums import TaskState
    from jobflow import Flow, JobStore, run_locally
    from maggma.stores import MemoryStore

    maker = ForceFieldRelaxMaker(
        force_field_name=dict(CALCULATOR_META),
        calculator_kwargs={"device": device},
        relax_cell=True,
        steps=MAX_STEPS,
        relax_kwargs={"fmax": FMAX},
        optimizer_kwargs={"optimizer": "FIRE"},
    )
    jobs = [maker.make(AseAtomsAdaptor.get_structure(a)) for a in structures]
    flow = Flow(jobs)
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as scratch:
        os.chdir(scratch)
        try:
            responses = run_locally(
                flow,
                # atomate2's jobs put their trajectories in a "data" store, as its docs set up
                store=JobStore(MemoryStore(), additional_stores={"data": MemoryStore()}),
                create_folders=False,
                ensure_success=False,
                log=False,
            )
        finally:
            os.chdir(cwd)
    energies, converged, steps = [], [], []
    for job, atoms in zip(jobs, structures, strict=True):
        doc = responses.get(job.uuid, {}).get(1)
        doc = doc.output if doc is not None else None
        if doc is None:
            energies.append(np.nan)
            converged.append(False)
            steps.append(0)
            continue
        energies.append(doc.output.energy / len(atoms))
        converged.append(doc.state == TaskState.SUCCESS)
        # the trajectory holds the initial frame, one per FIRE step, and the final frame again
        steps.append(doc.output.n_steps - 2)
    return Outcome("atomate2", 0.0, np.array(energies), np.array(converged), np.array(steps))


def run_torchsim(potential, structures: list[Atoms]) -> Outcome:
    """torch-sim's batched ``frechet_cell_fire`` (ASE flavour) through ``torch_sim.optimize``.

    All structures are in one batch from the start (``autobatcher=False`` keeps them together
    on a CPU; the memory-estimating autobatcher is for GPUs) and leave it as they converge.
    ``steps_between_swaps=1`` checks convergence after every step, as ASE does (torch-sim's
    default, 5, lets a structure take up to 4 steps more than it needs). The convergence
    test is ``generate_force_convergence_fn(0.05, include_cell_forces=True)``: the largest
    atomic force and the largest row of the cell force below fmax, ASE's test, except that
    ASE measures the atomic forces in the filter's undeformed frame (``f @ F``) and torch-sim
    the Cartesian forces (the same to within the strain, ~1 %). In 0.3.0 ``max_steps`` counts
    the steps of the whole run; with every structure in the batch from the start this is the
    per-structure limit, which the batcher also enforces (``max_steps // steps_between_swaps``
    swap attempts per structure).
    """
    import torch_sim as ts
    from _torchsim_esen import ESENTorchSimModel
    from torch_sim.autobatching import InFlightAutoBatcher

    model = ESENTorchSimModel(potential)
    n_atoms = sum(len(a) for a in structures)
    batcher = InFlightAutoBatcher(
        model, memory_scales_with="n_atoms", max_memory_scaler=n_atoms + 1
    )  # = autobatcher=False, kept to read the per-structure step counts afterwards
    convergence = ts.generate_force_convergence_fn(FMAX, include_cell_forces=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Optimize has reached max steps" per batch step
        final = ts.optimize(
            [a.copy() for a in structures],
            model,
            optimizer=ts.frechet_cell_fire,
            convergence_fn=convergence,
            autobatcher=batcher,
            max_steps=MAX_STEPS,
            steps_between_swaps=1,
        )
    counts = torch.bincount(final.system_idx).cpu().numpy()
    return Outcome(
        "torch-sim",
        0.0,
        final.energy.detach().cpu().double().numpy() / counts,
        convergence(final, None).cpu().numpy().astype(bool),
        np.array(batcher.swap_attempts),
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a smaller set (about a minute)")
    ap.add_argument("--n", type=int, help="number of structures (default 100; --quick: 8)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (CPU)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0, help="seed of the perturbations")
    ap.add_argument("--skip", default="", help="comma-separated ways to leave out")
    _blas.add_option(ap)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    blas = _blas.apply(args.blas_threads)
    logging.getLogger("jobflow").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message="Some jobs are not connected")  # jobflow, 1 Flow
    n = args.n or (8 if args.quick else 100)
    skip = set(filter(None, args.skip.split(",")))

    structures = perturbed_candidates(n, args.seed)
    sizes = [len(a) for a in structures]
    potential = get_potential(POTENTIAL, device=args.device)
    potential.evaluate(structures[:2])  # warm-up (first-call allocations), for every way
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(
        f"{len(structures)} structures ({min(sizes)}-{max(sizes)} atoms, {sum(sizes)} in all), "
        f"{POTENTIAL} float32, {device}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; FIRE + FrechetCellFilter, fmax {FMAX}, "
        f"<= {MAX_STEPS} steps",
        flush=True,
    )

    ways: list[tuple[str, Callable[[], Outcome]]] = [
        ("esen-flows", lambda: run_esen_flows(potential, structures)),
        ("atomate2", lambda: run_atomate2(structures, args.device)),
        ("ase-loop", lambda: run_ase_loop(potential, structures)),
    ]
    try:
        import torch_sim  # noqa: F401

        ways.append(("torch-sim", lambda: run_torchsim(potential, structures)))
    except ImportError:
        print("(torch-sim not measured: pip install torch-sim-atomistic)", flush=True)
    outcomes: dict[str, Outcome] = {}
    for key, fn in ways:
        if key in skip:
            continue
        try:
            outcomes[key] = timed(fn)
        except Exception as exc:  # a peer that breaks is reported, not fatal
            print(f"  {key}: failed, {type(exc).__name__}: {exc}", flush=True)
            continue
        o = outcomes[key]
        print(f"  {o.method:11s} {o.wall_s:8.1f} s ({o.cpu_s:.1f} s CPU)", flush=True)

    ref = outcomes.get("ase-loop")
    print(
        f"\n{'method':11s} {'wall s':>8s} {'struct/s':>9s} {'converged':>10s} "
        f"{'mean steps':>11s} {'|dE| vs ASE meV/atom':>21s} {'max':>7s}"
    )
    for o in outcomes.values():
        diff = mean_d = max_d = None
        if ref is not None and o is not ref:
            both = o.converged & ref.converged
            diff = np.abs(o.energy_per_atom - ref.energy_per_atom)[both] * 1000.0
            if diff.size:
                mean_d, max_d = float(diff.mean()), float(diff.max())
        print(
            f"{o.method:11s} {o.wall_s:8.1f} {len(structures) / o.wall_s:9.2f} "
            f"{f'{int(o.converged.sum())}/{len(structures)}':>10s} {o.n_steps.mean():11.1f} "
            + (f"{mean_d:21.3f} {max_d:7.3f}" if mean_d is not None else f"{'-':>21s} {'-':>7s}")
        )
    if len(outcomes) > 1:
        e = np.stack([o.energy_per_atom for o in outcomes.values()])
        ok = np.all(np.stack([o.converged for o in outcomes.values()]), axis=0)
        spread = (e.max(axis=0) - e.min(axis=0))[ok] * 1000.0
        if spread.size:
            print(
                f"relaxed energies, max spread among methods: {spread.max():.3f} meV/atom "
                f"(over the {ok.sum()} structures every method converged)"
            )

    ours = outcomes.get("esen-flows")
    summary: dict[str, object] = {"n_structures": len(structures)}
    for key, name in (
        ("atomate2", "speedup_vs_atomate2"),
        ("ase-loop", "speedup_vs_ase_loop"),
        ("torch-sim", "speedup_vs_torchsim"),
    ):
        if ours is not None and key in outcomes:
            summary[name] = round(outcomes[key].wall_s / ours.wall_s, 2)
    summary["wall_s"] = {o.method: round(o.wall_s, 2) for o in outcomes.values()}
    summary["cpu_s"] = {o.method: round(o.cpu_s, 2) for o in outcomes.values()}
    summary["device"] = device
    summary["threads"] = torch.get_num_threads()
    summary["blas_threads"] = blas
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
