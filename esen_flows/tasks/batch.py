"""The one skeleton every batch task follows: keys, the reuse policy, input screening, failure
documents, persistence and progress.

A task (relaxations, NVE runs, phonons, conductivity) opens a ``Batch`` over its inputs:

1. each input gets its result key (``input_key``: structure, potential checksum, settings; an
   unreadable input is keyed by its source and reason);
2. ``REUSE``: a stored document of the same key and label is the result; one of the same key
   under another label is copied to this label (same structure, potential and settings: the
   same result; arrays in the data store are found by key); a stored ``failed`` document is a
   result too unless ``retry_failed``;
3. inputs that cannot be computed (unreadable, overlapping atoms, elements the potential lacks,
   a malformed per-structure setting) get ``failed`` documents, saved at once, without a model
   call;
4. what is left is ``todo``; the task computes it and hands each document to ``finish``, which
   saves it at once (a document the store refuses becomes a failed one that it takes).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from jobflow import JobStore
from pymatgen.core import Structure
from tqdm.auto import tqdm

from esen_flows.io import UnreadableInput, get_label, safe_text, structure_problem
from esen_flows.potentials import Potential, UnsupportedElementError, check_elements
from esen_flows.schemas import ResultDocument, hash_key, make_key
from esen_flows.stores import find_documents, save_documents

D = TypeVar("D", bound=ResultDocument)

#: The reuse policy of every task (module docstring, point 2).
REUSE = "key and label; same key under another label: a relabelled copy; failed: unless retried"

#: Atoms closer than this (A) make a structure fail as overlapping, unless a task says otherwise.
MIN_DISTANCE = 0.5


def precision(potential: Potential) -> str | None:
    """The floating-point precision a potential really computes in (None: its own, e.g. ASE)."""
    dtype = getattr(potential, "dtype", None)
    return None if dtype is None else str(dtype).removeprefix("torch.")


def input_key(item: Structure | UnreadableInput, potential: Potential, settings: dict) -> str:
    """The result key of one input (an unreadable one is keyed by its source and reason)."""
    if isinstance(item, UnreadableInput):
        return hash_key(item.source, item.reason, potential.checksum, settings)
    return make_key(item, potential.checksum, settings)


def identity(label: str, key: str, potential: Potential, settings: dict) -> dict[str, Any]:
    """The fields that say whose result a document is (every document has them)."""
    return {
        "label": label,
        "key": key,
        "potential": potential.name,
        "checksum": potential.checksum,
        "settings": settings,
    }


def input_problem(
    structure: Structure, potential: Potential, min_distance: float = MIN_DISTANCE
) -> str | None:
    """Why ``structure`` cannot be computed (overlapping atoms, collapsed cell, elements the
    potential lacks), or None."""
    problem = structure_problem(structure, min_distance=min_distance)
    if problem:
        return problem
    try:
        check_elements(potential, structure)
    except UnsupportedElementError as exc:
        return str(exc).split(": ", 1)[-1]
    return None


def relabelled(doc: D, label: str) -> D:
    """A stored result reused for an input of the same key under another label (a new
    document, to be saved)."""
    return doc.model_copy(update={"label": label, "created_at": datetime.now(UTC)})


def aware(when: datetime) -> datetime:
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


@dataclass
class Batch(Generic[D]):
    """Inputs of one task on their way to one document each (module docstring).

    Attributes
    ----------
    items
        The inputs: labelled structures or ``UnreadableInput`` placeholders.
    doc_class
        The task's document class (its ``kind`` is what the store is searched for).
    potential
        The potential that computes the results.
    store
        Where results are looked up and saved; None for neither.
    keys, labels, sdicts
        Per input: result key, label, settings dict (as it enters the key).
    docs
        Per input: its document once it has one (stored, failed, or computed), else None.
    todo
        Inputs still to compute, in input order.
    retry_failed
        Stored failed documents are recomputed, not reused.
    started
        When the batch was opened (UTC): a failed result stored later by another process is
        taken, not retried again.
    """

    items: Sequence[Structure | UnreadableInput]
    doc_class: type[D]
    potential: Potential
    store: JobStore | None
    keys: list[str]
    labels: list[str]
    sdicts: list[dict[str, Any]]
    docs: list[D | None]
    todo: list[int] = field(default_factory=list)
    retry_failed: bool = False
    started: datetime = field(default_factory=lambda: datetime.now(UTC))

    @classmethod
    def open(
        cls,
        items: Sequence[Structure | UnreadableInput],
        potential: Potential,
        doc_class: type[D],
        sdicts: Sequence[dict[str, Any]],
        store: JobStore | None = None,
        retry_failed: bool = False,
        min_distance: float = MIN_DISTANCE,
        bad: dict[int, str] | None = None,
    ) -> Batch[D]:
        """Keys, stored results reused, bad inputs failed; ``todo`` is what is left.

        ``sdicts``: each input's settings dict (``key_dict()`` with the precision, and its own
        per-structure values); ``bad``: inputs already known to be bad, with the reason.
        """
        keys = [input_key(item, potential, sd) for item, sd in zip(items, sdicts, strict=True)]
        labels = [get_label(item) or f"input-{i}" for i, item in enumerate(items)]
        batch = cls(
            items, doc_class, potential, store, keys, labels, list(sdicts), [None] * len(items)
        )
        batch.retry_failed = retry_failed
        batch.take_stored(range(len(items)))
        bad = bad or {}
        for i, item in enumerate(items):
            if batch.docs[i] is not None:
                continue
            if isinstance(item, UnreadableInput):
                batch.fail(i, item.reason)
            elif i in bad:
                batch.fail(i, f"{labels[i]}: {bad[i]}")
            elif problem := input_problem(item, potential, min_distance):
                batch.fail(i, f"{labels[i]}: {problem}")
            else:
                batch.todo.append(i)
        return batch

    def take_stored(self, indices: Iterable[int], newer_only: bool = False) -> set[str]:
        """Reuse stored results for ``indices`` (the policy ``REUSE``); relabelled copies are
        saved. ``newer_only``: a failed document counts only when stored after ``started``.
        Returns the keys found."""
        wanted = [i for i in indices if self.docs[i] is None]
        if self.store is None or not wanted:
            return set()
        found: dict[str, dict[str, D]] = {}
        kind = self.doc_class.kind
        for doc in find_documents(self.store, kind, keys=sorted({self.keys[i] for i in wanted})):
            older = not newer_only or aware(doc.created_at) < self.started
            if self.retry_failed and doc.status == "failed" and older:
                continue
            found.setdefault(doc.key, {}).setdefault(doc.label, doc)  # type: ignore[arg-type]
        copies = []
        for i in wanted:
            by_label = found.get(self.keys[i])
            if not by_label:
                continue
            if self.labels[i] in by_label:
                self.docs[i] = by_label[self.labels[i]]
            else:  # a result that did not fail, where another label has one
                docs = sorted(by_label.values(), key=lambda d: d.status == "failed")
                self.docs[i] = relabelled(docs[0], self.labels[i])
                copies.append(i)
            if i in self.todo:
                self.todo.remove(i)
        self.save(copies)
        return set(found)

    def fields(self, i: int) -> dict[str, Any]:
        """The fields every document of input ``i`` has: identity, formula, the input."""
        out = identity(self.labels[i], self.keys[i], self.potential, self.sdicts[i])
        item = self.items[i]
        if isinstance(item, Structure) and len(item):
            out.update(
                formula=item.composition.reduced_formula,
                chemsys=item.composition.chemical_system,
                n_sites=len(item),
            )
            out[self.doc_class.input_field] = item
        return out

    def fail(self, i: int, reason: str) -> D:
        """Input ``i`` gets a failed document, saved at once, and leaves ``todo``."""
        doc = self.doc_class(
            **self.fields(i), status="failed", reason=reason, **self.doc_class.failed_fields
        )
        return self.finish(i, doc)

    def finish(self, i: int, doc: D) -> D:
        """``doc`` is input ``i``'s result: kept, saved now, and ``i`` leaves ``todo``."""
        self.docs[i] = doc
        if i in self.todo:
            self.todo.remove(i)
        self.save([i])
        return self.docs[i]  # type: ignore[return-value]

    def save(self, indices: Sequence[int]) -> None:
        """Save the documents of ``indices``; one the store refuses is replaced by a failed
        document that says why (saved when the store takes it)."""
        if self.store is None or not indices:
            return
        refused = save_each(self.store, [self.docs[i] for i in indices])  # type: ignore[misc]
        for i in indices:
            if self.docs[i] in refused:
                self.docs[i] = self._unstorable(i)

    def _unstorable(self, i: int) -> D:
        doc = self.docs[i]
        try:
            doc.to_store()  # type: ignore[union-attr]
            why = "the results store refused it"
        except Exception as exc:
            why = f"{type(exc).__name__}: {exc}"
        label = safe_text(self.labels[i])
        fields = identity(label, self.keys[i], self.potential, self.sdicts[i])
        for name in ("formula", "chemsys", "n_sites"):
            fields[name] = getattr(doc, name, None)
        failed = self.doc_class(
            **fields,
            status="failed",
            reason=safe_text(f"{label}: result cannot be stored ({why})"),
            **self.doc_class.failed_fields,
        )
        save_each(self.store, [failed])  # type: ignore[arg-type]
        return failed

    def progress(self, desc: str, total: int | None = None, unit: str = "structure") -> tqdm:
        """A progress bar over the inputs still to do (hidden when not a terminal)."""
        n = len(self.todo) if total is None else total
        return tqdm(total=n, desc=desc, unit=unit, disable=None, leave=False)

    def results(self) -> list[D]:
        """One document per input, in input order."""
        missing = [self.labels[i] for i, d in enumerate(self.docs) if d is None]
        if missing:
            raise RuntimeError(f"no result for {', '.join(missing[:5])}")
        return list(self.docs)  # type: ignore[arg-type]
