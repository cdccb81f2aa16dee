"""The results store (one document per structure, written as each finishes) and the data
store (large arrays), beside the job outputs of a ``JobStore``."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jobflow import JobStore
from maggma.core import Store
from maggma.stores import MontyStore
from monty.json import jsanitize

from esen_flows.schemas import ResultDocument, document_class
from esen_flows.stores.embedded import DATA, RESULTS, open_store, set_aside, sqlite_problem


def _additional_store(store: JobStore, name: str) -> Store:
    """The additional store ``name`` of a ``JobStore``, else (added to it) a sibling
    collection ``<docs collection>_<name>`` of its docs store."""
    if name in store.additional_stores:
        return store.additional_stores[name]
    docs = store.docs_store
    collection = getattr(docs, "collection_name", None)
    if collection is None:
        raise ValueError(
            f"the job store's docs store ({type(docs).__name__}) has no collection name: add a "
            f"'{name}' additional store to it"
        )
    derived = type(docs).from_dict({**docs.as_dict(), "collection_name": f"{collection}_{name}"})
    store.additional_stores[name] = derived
    return derived


def results_store(store: JobStore) -> Store:
    """The store that holds result documents for a ``JobStore`` (see module docstring)."""
    return _additional_store(store, RESULTS)


def data_store(store: JobStore) -> Store:
    """The store for large arrays (force constants, displacement datasets) of a ``JobStore``:
    its ``data`` additional store, else a sibling collection ``<docs collection>_data``."""
    return _additional_store(store, DATA)


def _connected(store: Store) -> Store:
    try:
        store._collection  # noqa: B018 - raises when not connected
    except Exception:
        store.connect()
    return store


#: The fields that make a result unique: a newer document with the same values replaces it.
UNIQUE = ("kind", "key", "label")


def save_documents(store: JobStore, docs: Iterable[ResultDocument]) -> None:
    """Write documents to the results store now (a newer one replaces the one with the same
    ``kind``, ``key`` and ``label``).

    MongoDB upserts on those fields. The embedded store appends instead: montydb has no
    indexes, so an upsert scans the whole collection and a screen of n structures would cost
    O(n^2); readers (``find_documents``) keep the newest document of each (kind, key, label).
    """
    rows = [d.to_store() for d in docs]
    results = results_store(store)
    index = _KeyIndex.of(results) if rows and isinstance(results, MontyStore) else None
    if index is not None:  # first: the index may hold a key the collection lacks, never less
        index.add((r["kind"], r["key"]) for r in rows)
    _write(results, rows)


def _write(store: Store, rows: list[dict[str, Any]]) -> None:
    """Append ``rows`` to an embedded store (readers keep the newest per ``UNIQUE``); upsert
    them on ``UNIQUE`` anywhere else."""
    if not rows:
        return
    target = _connected(store)
    if isinstance(target, MontyStore):
        target._collection.insert_many([jsanitize(r, allow_bson=True) for r in rows])
    else:
        # an index on key: upserts and key lookups cost O(log n) on MongoDB, not a scan
        target.ensure_index("key")
        target.update(rows, key=list(UNIQUE))


def find_documents(
    store: JobStore, kind: str, keys: Sequence[str] | None = None, **filters: Any
) -> list[ResultDocument]:
    """Documents of one ``kind`` (newest first, one per key and label), optionally restricted
    to some ``keys``."""
    criteria: dict[str, Any] = {"kind": kind, **filters}
    results = _connected(results_store(store))
    wanted = None if keys is None else set(keys)
    if wanted is not None and not isinstance(results, MontyStore):
        criteria["key"] = {"$in": sorted(wanted)}
    elif wanted is not None:
        # montydb reads and decodes every document of a query: a screen whose jobs each look
        # up their keys would cost O(jobs x results). The key index answers "none of these"
        # without touching the collection, which is every lookup of a new screen.
        index = _KeyIndex.of(results)
        if index is not None:
            wanted &= index.present(kind, wanted)
            if not wanted:
                return []
    # montydb evaluates $in by a list scan for every document (10k keys over 10k documents:
    # 100 s); it decodes every document anyway, so the keys are matched here with a set
    cls = document_class(kind)
    seen: set[tuple] = set()
    out = []
    for row in results.query(criteria=criteria, sort={"created_at": -1}):
        if wanted is not None and row.get("key") not in wanted:
            continue
        unique = tuple(row.get(k) for k in UNIQUE)
        if unique not in seen:
            seen.add(unique)
            out.append(cls.from_store(row))
    return out


def read_rows(
    store: JobStore, criteria: dict[str, Any], fields: Sequence[str]
) -> list[dict[str, Any]]:
    """Only ``fields`` of the result documents matching ``criteria``, as plain dicts (nothing
    decoded into objects), one per (kind, key, label): the newest."""
    results = _connected(results_store(store))
    # montydb's projection costs more than decoding whole documents: project only elsewhere
    props = None if isinstance(results, MontyStore) else sorted({*fields, *UNIQUE, "created_at"})
    seen: set[tuple] = set()
    out = []
    for row in results.query(criteria=criteria, properties=props, sort={"created_at": -1}):
        unique = tuple(row.get(k) for k in UNIQUE)
        if unique not in seen:
            seen.add(unique)
            out.append({f: row.get(f) for f in fields})
    return out


def select_in(
    con: sqlite3.Connection, query: str, values: Sequence[Any], *before: Any
) -> Iterable[tuple]:
    """The rows of ``query`` (its ``IN ({marks})`` filled with ``values``, the parameters
    ``before`` ahead of them), asked in chunks of 500: SQLite's bound-parameter limit."""
    for i in range(0, len(values), 500):
        chunk = list(values[i : i + 500])
        yield from con.execute(query.format(marks=",".join("?" * len(chunk))), [*before, *chunk])


class _KeyIndex:
    """Which (kind, key) pairs an embedded results store holds: a SQLite table with a primary
    key next to the montydb collection, which has no indexes.

    ``save_documents`` records keys here before writing the documents, so the index holds every
    key of the collection (or more, when a write was cut short): it only ever narrows a lookup,
    and a key it holds is still read from the collection. A missing or unfinished index is
    rebuilt from one scan. The index belongs to its folder: copy or move a store as the whole
    folder. Documents that reach the collection by another path (a collection file copied in
    alone, or an esen-flows older than the index writing to a store that has one) are not in
    it: delete the ``.keys.sqlite`` file and it is rebuilt.
    """

    def __init__(self, path: Path):
        self.path = path

    @classmethod
    def of(cls, store: MontyStore) -> _KeyIndex | None:
        """The store's index, rebuilt when needed; None for a store that is not a folder (an
        in-memory montydb): lookups then scan the collection."""
        folder = Path(store.database_path)
        if getattr(store, "storage", "sqlite") == "memory" or not folder.is_dir():
            return None
        index = cls(folder / f"{store.database_name}.{store.collection_name}.keys.sqlite")
        if index.path.is_file() and (problem := sqlite_problem(index.path)):
            set_aside(index.path, problem, "the key index")
        if not index._complete():
            index._rebuild(_connected(store))
        return index

    def _complete(self) -> bool:
        if not self.path.is_file():
            return False
        con = self._connect()
        try:
            return con.execute("SELECT 1 FROM meta WHERE name = 'complete'").fetchone() is not None
        finally:
            con.close()

    def _rebuild(self, store: MontyStore) -> None:
        rows = (
            (r.get("kind"), r.get("key"))
            for r in store.query(criteria={}, properties=["kind", "key"])
        )
        self.add(rows, complete=True)

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=60)
        con.execute(
            "CREATE TABLE IF NOT EXISTS keys (kind TEXT, key TEXT, PRIMARY KEY (kind, key)) "
            "WITHOUT ROWID"
        )
        con.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT)")
        return con

    def add(self, pairs: Iterable[tuple[str, str]], complete: bool = False) -> None:
        """Record (kind, key) pairs; ``complete`` marks the index as covering the collection."""
        con = self._connect()
        try:
            with con:
                con.executemany("INSERT OR IGNORE INTO keys VALUES (?, ?)", list(pairs))
                if complete:
                    con.execute("INSERT OR REPLACE INTO meta VALUES ('complete', '1')")
        finally:
            con.close()

    def present(self, kind: str, keys: Iterable[str]) -> set[str]:
        """The ``keys`` recorded for ``kind``."""
        con = self._connect()
        try:
            query = "SELECT key FROM keys WHERE kind = ? AND key IN ({marks})"
            return {k for (k,) in select_in(con, query, list(keys), kind)}
        finally:
            con.close()


def save_data(store: JobStore, kind: str, key: str, label: str, payload: dict[str, Any]) -> None:
    """Write a large-array record (``kind`` e.g. ``"phonopy"``) for the result ``key`` and
    ``label`` to the data store; a newer record replaces an older one (newest wins on read)."""
    row = {"kind": kind, "key": key, "label": label, "created_at": datetime.now(UTC), **payload}
    _write(data_store(store), [jsanitize(row, strict=True, allow_bson=True)])


def load_data(
    store: JobStore | str | Path, kind: str, key: str, label: str | None = None
) -> dict[str, Any]:
    """The newest data record of ``kind`` for ``key`` and ``label``; without one under that
    label, the newest for ``key`` (a result reused under another label has the arrays of the
    label it was computed for: same key, same arrays)."""
    store = open_store(store)
    target = _connected(data_store(store))
    tries = [{"kind": kind, "key": key}]
    if label is not None:
        tries.insert(0, {**tries[0], "label": label})
    for criteria in tries:
        for row in target.query(criteria=criteria, sort={"created_at": -1}, limit=1):
            return {k: v for k, v in row.items() if k != "_id"}
    raise KeyError(f"no {kind} data for key {key}" + (f" (label {label})" if label else ""))
