"""Per-batch work shared by the makers: skip what the store has, compute the rest, persist each
result as soon as it exists.

These functions know documents and stores but nothing of jobflow, so they run the same inside a
job, a FireWorks launch or a plain script.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from ase import Atoms
from jobflow import JobStore
from pymatgen.core import Structure

from esen_flows.analysis.compatibility import anion_types
from esen_flows.dynamics.evaluate import Outcome, evaluate_robustly
from esen_flows.dynamics.md import energy_drift, run_nve
from esen_flows.dynamics.relax import RelaxResult, relax_structures
from esen_flows.io import UnreadableInput, get_label, to_atoms, to_structure
from esen_flows.potentials import (
    Potential,
    batch_budget,
)
from esen_flows.schemas import (
    EV_A3_TO_GPA,
    ConservationDocument,
    RelaxationDocument,
)
from esen_flows.stores.leases import Leases
from esen_flows.tasks.batch import (  # noqa: F401 - importable from here
    Batch,
    input_key,
    precision,
    relabelled,
    save_each,
)
from esen_flows.tasks.settings import (  # noqa: F401 - importable from here
    NVESettings,
    RelaxSettings,
    check_relax_settings,
)


def _document(batch: Batch[RelaxationDocument], i: int, result: RelaxResult) -> RelaxationDocument:
    """Input ``i``'s relaxation (or static) document from its ``result``."""
    item = batch.items[i]
    settings = batch.sdicts[i]
    fields = batch.fields(i)
    fields.update(n_steps=result.n_steps, wall_time=result.wall_time)
    if result.status == "failed":
        return RelaxationDocument(
            **fields, status="failed", reason=result.reason, relax_status="failed"
        )
    final = to_structure(result.atoms)
    final.properties = dict(item.properties)
    stress_gpa = np.asarray(result.stress) * EV_A3_TO_GPA
    static = settings["task"] == "static"
    return RelaxationDocument(
        **fields,
        structure=final,
        energy=result.energy,
        energy_per_atom=result.energy / len(item),
        stress_gpa=stress_gpa.tolist(),
        max_force=result.max_force,
        max_stress_gpa=float(np.abs(stress_gpa).max()),
        relax_status="static" if static else result.status,
        converged=static or result.status == "converged",
        volume_change=final.volume / item.volume - 1.0,
        **anion_types(final),
    )


def run_relaxations(
    items: Sequence[Structure | UnreadableInput],
    potential: Potential,
    settings: RelaxSettings,
    store: JobStore | None = None,
    retry_failed: bool = False,
    desc: str = "relax",
) -> list[RelaxationDocument]:
    """Relax (or evaluate, for ``task="static"``) a batch, reusing and persisting results.

    Parameters
    ----------
    items
        Labelled structures, or ``UnreadableInput`` placeholders (which become failed documents).
    potential
        Evaluates all structures of a step at once.
    settings
        Relaxation settings (they enter the result keys).
    store
        Where results are looked up before and written to as each finishes; None for neither.
    retry_failed
        Recompute inputs whose stored document failed (by default a failure is a result too).

    Returns
    -------
    list of RelaxationDocument
        One per input, in input order.
    """
    sdict = {**settings.key_dict(), "dtype": precision(potential)}  # stated, and in the key
    batch = Batch.open(
        items,
        potential,
        RelaxationDocument,
        [sdict] * len(items),
        store=store,
        retry_failed=retry_failed,
        min_distance=settings.min_distance,
    )
    if not batch.todo:
        return batch.results()
    waiting: dict[str, list[int]] = {}  # key -> the inputs to do with that key
    for i in batch.todo:
        waiting.setdefault(batch.keys[i], []).append(i)
    group: list[int] = []
    bar = batch.progress(desc)

    def persist(result: RelaxResult) -> None:
        i = group[result.index]
        batch.finish(i, _document(batch, i, result))

    def stored(wanted: set[str]) -> set[str]:
        """Results another process stored meanwhile, taken up (relabelled where needed)."""
        found = batch.take_stored([i for k in wanted for i in waiting[k]], newer_only=True)
        bar.update(sum(len(waiting[k]) for k in found))
        return found

    try:
        with Leases(store, "relaxation") as leases:
            for mine in leases.take(waiting, stored):
                group = sorted(i for key in mine for i in waiting[key])
                atoms = [to_atoms(items[i]) for i in group]
                if settings.task == "static":
                    _static(potential, atoms, persist, bar.update)
                else:
                    relax_structures(
                        potential,
                        atoms,
                        fmax=settings.fmax,
                        max_steps=settings.max_steps,
                        relax_cell=settings.relax_cell,
                        on_result=persist,
                        progress=bar.update,
                    )
    finally:
        bar.close()
    return batch.results()


def _static(
    potential: Potential,
    atoms: list[Atoms],
    on_result: Callable[[RelaxResult], None],
    progress: Callable[[int], None],
) -> None:
    """Evaluate once, in batches that fill the memory budget, each batch's results handed on
    as soon as it is done; failures become failed results, not exceptions."""
    for group in batch_budget(potential).pack(atoms):
        start = time.perf_counter()
        outputs = evaluate_robustly(potential, [atoms[i] for i in group])
        wall = (time.perf_counter() - start) / len(group)
        for i, out in zip(group, outputs, strict=True):
            on_result(_static_result(i, atoms[i], out, wall))
        progress(len(group))


def _static_result(i: int, a: Atoms, out: Outcome, wall: float) -> RelaxResult:
    label = get_label(a)
    problem = out.problem(len(a))
    if problem is not None:
        result = RelaxResult(i, "failed", a, energy=out.energy, reason=f"{label}: {problem}")
    else:
        max_force = float(np.linalg.norm(out.forces, axis=1).max(initial=0.0))
        result = RelaxResult(
            i,
            "converged",
            a,
            energy=out.energy,
            forces=out.forces,
            stress=out.stress,
            max_force=max_force,
        )
    result.wall_time = wall
    return result


def _conservation_doc(
    batch: Batch[ConservationDocument], i: int, settings: NVESettings, traj: Any, b: int
) -> ConservationDocument:
    drift = energy_drift(traj.times, traj.total[b])
    return ConservationDocument(
        **batch.fields(i),
        temperature=settings.temperature,
        timestep_fs=settings.timestep_fs,
        steps=settings.steps,
        drift=drift,
        threshold=settings.threshold,
        conserves=abs(drift) <= settings.threshold,
        mean_temperature=float(np.mean(traj.temperature[b])),
        times_ps=traj.times.tolist(),
        total_energy=traj.total[b].tolist(),
        potential_energy=traj.potential[b].tolist(),
    )


def run_conservation(
    items: Sequence[Structure],
    potential: Potential,
    settings: Sequence[NVESettings],
    store: JobStore | None = None,
    retry_failed: bool = False,
) -> list[ConservationDocument]:
    """NVE runs of all structures at once (one evaluation per step for the whole batch); the
    drift of each one's total energy, compared with its threshold. Stored results are reused
    (``Batch``); a structure whose run fails (bad element, NaN energy) gets a failed document."""
    sdicts = [{**s.key_dict(), "dtype": precision(potential)} for s in settings]
    batch = Batch.open(
        items, potential, ConservationDocument, sdicts, store=store, retry_failed=retry_failed
    )

    # structures that share the run settings apart from the temperature go in one batch
    groups: dict[tuple, list[int]] = {}
    for i in batch.todo:
        s = settings[i]
        groups.setdefault((s.timestep_fs, s.steps, s.sample_every, s.seed), []).append(i)

    def run(members: list[int]) -> None:
        first = settings[members[0]]
        traj = run_nve(
            potential,
            [to_atoms(items[i]) for i in members],
            [settings[i].temperature for i in members],
            timestep_fs=first.timestep_fs,
            steps=first.steps,
            sample_every=first.sample_every,
            seed=first.seed,
        )
        for b, i in enumerate(members):
            batch.docs[i] = _conservation_doc(batch, i, settings[i], traj, b)

    bar = batch.progress("NVE")
    try:
        for members in groups.values():
            try:
                run(members)
            except Exception:  # a run that blew up (NaN): run each alone to isolate it
                for i in members:
                    try:
                        run([i])
                    except Exception as exc:
                        batch.fail(i, f"{batch.labels[i]}: NVE run failed ({exc})")
            for i in members:
                if i in batch.todo:  # failed ones are saved already
                    batch.finish(i, batch.docs[i])  # type: ignore[arg-type]
            bar.update(len(members))
    finally:
        bar.close()
    return batch.results()
