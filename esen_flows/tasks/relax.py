"""Per-batch work shared by the makers: skip what the store has, compute the rest, persist each
result as soon as it exists.

These functions know documents and stores but nothing of jobflow, so they run the same inside a
job, a FireWorks launch or a plain script.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from ase import Atoms
from jobflow import JobStore
from pymatgen.core import Structure
from tqdm.auto import tqdm

from esen_flows.analysis.compatibility import anion_types
from esen_flows.dynamics.evaluate import evaluate_robustly, outcome_problem
from esen_flows.dynamics.md import energy_drift, run_nve
from esen_flows.dynamics.relax import RelaxResult, relax_structures
from esen_flows.io import UnreadableInput, get_label, safe_text, to_atoms, to_structure
from esen_flows.potentials import (
    Potential,
    UnsupportedElementError,
    batch_budget,
    check_elements,
)
from esen_flows.schemas import (
    EV_A3_TO_GPA,
    ConservationDocument,
    RelaxationDocument,
    ResultDocument,
    hash_key,
    make_key,
)
from esen_flows.stores import find_documents, save_documents
from esen_flows.stores.leases import Leases
from esen_flows.tasks.settings import (  # noqa: F401 - importable from here
    NVESettings,
    RelaxSettings,
    check_relax_settings,
)


def precision(potential: Potential) -> str | None:
    """The floating-point precision a potential really computes in (None: its own, e.g. ASE)."""
    dtype = getattr(potential, "dtype", None)
    return None if dtype is None else str(dtype).removeprefix("torch.")


def input_key(item: Structure | UnreadableInput, potential: Potential, settings: dict) -> str:
    """The result key of one input (an unreadable one is keyed by its source and reason)."""
    if isinstance(item, UnreadableInput):
        return hash_key(item.source, item.reason, potential.checksum, settings)
    return make_key(item, potential.checksum, settings)


def _base_fields(label: str, key: str, potential: Potential, settings: dict) -> dict[str, Any]:
    return {
        "label": label,
        "key": key,
        "potential": potential.name,
        "checksum": potential.checksum,
        "settings": settings,
    }


def _failed(
    item: Structure | UnreadableInput, key: str, potential: Potential, settings: dict, reason: str
) -> RelaxationDocument:
    fields = _base_fields(get_label(item) or "?", key, potential, settings)
    if isinstance(item, Structure):
        fields.update(
            formula=item.composition.reduced_formula if len(item) else None,
            chemsys=item.composition.chemical_system if len(item) else None,
            n_sites=len(item),
            input_structure=item,
        )
    return RelaxationDocument(**fields, status="failed", reason=reason, relax_status="failed")


def _document(
    item: Structure, key: str, potential: Potential, settings: dict, result: RelaxResult
) -> RelaxationDocument:
    fields = _base_fields(get_label(item) or "?", key, potential, settings)
    fields.update(
        formula=item.composition.reduced_formula,
        chemsys=item.composition.chemical_system,
        n_sites=len(item),
        input_structure=item,
        n_steps=result.n_steps,
        wall_time=result.wall_time,
    )
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
    keys = [input_key(item, potential, sdict) for item in items]
    docs: list[RelaxationDocument | None] = [None] * len(items)

    stored: dict[tuple[str, str], RelaxationDocument] = {}
    by_key: dict[str, RelaxationDocument] = {}
    if store is not None:
        for doc in find_documents(store, "relaxation", keys=sorted(set(keys))):
            if retry_failed and doc.status == "failed":
                continue
            stored.setdefault((doc.key, doc.label), doc)
            by_key.setdefault(doc.key, doc)

    new_docs: list[RelaxationDocument] = []
    todo: list[int] = []
    for i, (item, key) in enumerate(zip(items, keys, strict=True)):
        label = get_label(item) or f"input-{i}"
        if (key, label) in stored:
            docs[i] = stored[(key, label)]
        elif key in by_key:  # same structure and settings under another label: reuse, relabel
            docs[i] = relabelled(by_key[key], label)
            new_docs.append(docs[i])
        elif isinstance(item, UnreadableInput):
            docs[i] = _failed(item, key, potential, sdict, item.reason)
            new_docs.append(docs[i])
        else:
            problem = _problem(item, potential, settings)
            if problem:
                docs[i] = _failed(item, key, potential, sdict, f"{label}: {problem}")
                new_docs.append(docs[i])
            else:
                todo.append(i)
    if store is not None and new_docs:
        for doc in save_each(store, new_docs):
            docs[docs.index(doc)] = _unstorable(doc, store)

    if todo:
        bar = tqdm(total=len(todo), desc=desc, unit="structure", disable=None, leave=False)

        def persist(result: RelaxResult) -> None:
            i = batch[result.index]
            docs[i] = _document(items[i], keys[i], potential, sdict, result)
            if store is not None and save_each(store, [docs[i]]):
                docs[i] = _unstorable(docs[i], store)

        waiting = {}  # key -> the inputs of todo with that key
        for i in todo:
            waiting.setdefault(keys[i], []).append(i)
        started = datetime.now(UTC)

        def stored(wanted: set[str]) -> set[str]:
            """Results another process stored meanwhile, taken up (relabelled where needed)."""
            if store is None or not wanted:
                return set()
            found = {}
            for doc in find_documents(store, "relaxation", keys=sorted(wanted)):
                if retry_failed and doc.status == "failed" and _aware(doc.created_at) < started:
                    continue
                found.setdefault(doc.key, {})[doc.label] = doc
            new = []
            for key, by_label in found.items():
                for i in waiting[key]:
                    label = get_label(items[i]) or f"input-{i}"
                    if label in by_label:
                        docs[i] = by_label[label]
                    else:
                        docs[i] = relabelled(next(iter(by_label.values())), label)
                        new.append(docs[i])
                    bar.update(1)
            if new:
                save_each(store, new)
            return set(found)

        try:
            with Leases(store, "relaxation") as leases:
                for mine in leases.take(waiting, stored):
                    batch = sorted(i for key in mine for i in waiting[key])
                    atoms = [to_atoms(items[i]) for i in batch]
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
    return [d for d in docs if d is not None]


def relabelled(doc: RelaxationDocument, label: str) -> RelaxationDocument:
    """A stored result reused for an input of the same key under another label (a new
    document, to be saved)."""
    return doc.model_copy(update={"label": label, "created_at": datetime.now(UTC)})


def _aware(when: datetime) -> datetime:
    """``when`` with a time zone (stores may hand back naive UTC datetimes)."""
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def save_each(store: JobStore, docs: list[ResultDocument]) -> list[ResultDocument]:
    """Save ``docs`` at once, else one by one; returns those that could not be stored (one
    unstorable document fails alone, the others are kept)."""
    try:
        save_documents(store, docs)
        return []
    except Exception:
        if len(docs) == 1:
            return list(docs)
    return [d for d in docs if save_each(store, [d])]


def _unstorable(doc: RelaxationDocument, store: JobStore) -> RelaxationDocument:
    """A failed document in place of one the store refused (a field it cannot encode): label
    and reason in plain text, no structures; saved when the store takes it."""
    try:
        doc.to_store()
        why = "the results store refused it"
    except Exception as exc:
        why = f"{type(exc).__name__}: {exc}"
    label = safe_text(doc.label)
    failed = RelaxationDocument(
        label=label,
        key=doc.key,
        potential=doc.potential,
        checksum=doc.checksum,
        settings=doc.settings,
        formula=doc.formula,
        chemsys=doc.chemsys,
        n_sites=doc.n_sites,
        status="failed",
        relax_status="failed",
        reason=safe_text(f"{label}: result cannot be stored ({why})"),
    )
    save_each(store, [failed])
    return failed


def _problem(structure: Structure, potential: Potential, settings: RelaxSettings) -> str | None:
    from esen_flows.io import structure_problem

    problem = structure_problem(structure, min_distance=settings.min_distance)
    if problem:
        return problem
    try:
        check_elements(potential, structure)
    except UnsupportedElementError as exc:
        return str(exc).split(": ", 1)[-1]
    return None


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


def _static_result(i: int, a: Atoms, out: tuple | str, wall: float) -> RelaxResult:
    label = get_label(a)
    problem = outcome_problem(out, len(a))
    if problem is not None:
        energy = math.nan if isinstance(out, str) else out[0]
        result = RelaxResult(i, "failed", a, energy=energy, reason=f"{label}: {problem}")
    else:
        energy, forces, stress = out
        max_force = float(np.linalg.norm(forces, axis=1).max(initial=0.0))
        result = RelaxResult(
            i, "converged", a, energy=energy, forces=forces, stress=stress, max_force=max_force
        )
    result.wall_time = wall
    return result


def _conservation_doc(item, key, potential, sdict, settings, traj, b) -> ConservationDocument:
    drift = energy_drift(traj.times, traj.total[b])
    return ConservationDocument(
        **_base_fields(get_label(item) or "?", key, potential, sdict),
        formula=item.composition.reduced_formula,
        n_sites=len(item),
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
        structure=item,
    )


def run_conservation(
    items: Sequence[Structure],
    potential: Potential,
    settings: Sequence[NVESettings],
    store: JobStore | None = None,
) -> list[ConservationDocument]:
    """NVE runs of all structures at once (one evaluation per step for the whole batch); the
    drift of each one's total energy, compared with its threshold. Stored results are reused;
    a structure whose run fails (bad element, NaN energy) gets a failed document."""
    sdicts = [{**s.key_dict(), "dtype": precision(potential)} for s in settings]
    keys = [make_key(item, potential.checksum, sd) for item, sd in zip(items, sdicts, strict=True)]
    docs: list[ConservationDocument | None] = [None] * len(items)
    if store is not None:
        found = {d.key: d for d in find_documents(store, "conservation", keys=sorted(set(keys)))}
        docs = [found.get(k) for k in keys]
    todo = [i for i, d in enumerate(docs) if d is None]

    def failed(i: int, reason: str) -> ConservationDocument:
        label = get_label(items[i]) or f"input-{i}"
        return ConservationDocument(
            **_base_fields(label, keys[i], potential, sdicts[i]),
            formula=items[i].composition.reduced_formula,
            n_sites=len(items[i]),
            status="failed",
            reason=f"{label}: {reason}",
            structure=items[i],
        )

    # bad structures (overlaps, elements the potential lacks) fail before any MD is run
    for i in todo:
        problem = _problem(items[i], potential, RelaxSettings())
        if problem:
            docs[i] = failed(i, problem)
    if store is not None:
        save_documents(store, [docs[i] for i in todo if docs[i] is not None])
    todo = [i for i in todo if docs[i] is None]

    # structures that share the run settings apart from the temperature go in one batch
    groups: dict[tuple, list[int]] = {}
    for i in todo:
        s = settings[i]
        groups.setdefault((s.timestep_fs, s.steps, s.sample_every, s.seed), []).append(i)

    def run(batch: list[int]) -> None:
        first = settings[batch[0]]
        traj = run_nve(
            potential,
            [to_atoms(items[i]) for i in batch],
            [settings[i].temperature for i in batch],
            timestep_fs=first.timestep_fs,
            steps=first.steps,
            sample_every=first.sample_every,
            seed=first.seed,
        )
        for b, i in enumerate(batch):
            docs[i] = _conservation_doc(
                items[i], keys[i], potential, sdicts[i], settings[i], traj, b
            )

    for members in groups.values():
        try:
            run(members)
        except Exception:  # a run that blew up (NaN): run each alone to isolate it
            for i in members:
                try:
                    run([i])
                except Exception as exc:
                    docs[i] = failed(i, f"NVE run failed ({exc})")
        if store is not None:
            save_documents(store, [docs[i] for i in members])
    return docs
