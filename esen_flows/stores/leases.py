"""Leases in the results store: a result being computed by one process is waited for by the
others, not computed again.

Two screens of the same inputs started at once (two terminals, two FireWorks workers, a job
array) would otherwise both find nothing in the store and compute everything twice. Before
computing, a process *claims* the result keys it is missing; a key another live process holds
is waited for (the store is polled for its result) and taken over only when that lease is
released without a result or expires.

A lease lasts ``ttl`` seconds and is renewed by a heartbeat thread while its holder lives; a
process that stops in any way but ``kill -9`` releases its leases (``try``/``finally``). The
lease of a process killed with ``kill -9`` is taken over at once on the same machine (its pid
is gone), elsewhere after at most ``ttl``.

Where the leases live:

- the embedded store (montydb on SQLite): a small SQLite table next to the results collection
  (``esen_flows.<collection>.leases.sqlite``), whose transactions make a claim atomic across
  processes on one file system;
- a MongoDB results store (maggma ``MongoStore``, or ``MemoryStore`` on mongomock): a sibling
  collection ``<collection>_leases``; a claim is an upsert on ``_id``, atomic on the server;
- any other store: no leases (every process computes what it misses, as before).
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any, Protocol

from jobflow import JobStore
from maggma.stores import MontyStore

from esen_flows.stores.results import _connected, results_store, select_in

#: Seconds a lease lasts without renewal (a killed holder blocks others this long at most).
TTL = 120.0
#: Seconds between two looks at the store while waiting for another process's results.
POLL = 2.0


class _Backend(Protocol):
    def claim(self, names: list[str], owner: str, ttl: float) -> set[str]: ...
    def renew(self, names: list[str], owner: str, ttl: float) -> None: ...
    def release(self, names: list[str], owner: str) -> None: ...
    def live(self, names: list[str]) -> set[str]: ...
    def owners(self, names: list[str]) -> dict[str, str]: ...
    def take_over(self, name: str, old: str, owner: str, ttl: float) -> bool: ...


class _SQLiteBackend:
    """Leases in an SQLite table: ``name`` (primary key), ``owner``, ``expires`` (epoch s)."""

    def __init__(self, path: Path):
        self.path = path

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        con.execute(
            "CREATE TABLE IF NOT EXISTS leases (name TEXT PRIMARY KEY, owner TEXT, expires REAL)"
        )
        return con

    def _run(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        con = self._connect()
        try:
            con.execute("BEGIN IMMEDIATE")  # one writer at a time: the claim is atomic
            try:
                out = work(con)
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
            return out
        finally:
            con.close()

    def claim(self, names: list[str], owner: str, ttl: float) -> set[str]:
        def work(con: sqlite3.Connection) -> set[str]:
            now = time.time()
            con.executemany(
                "INSERT INTO leases VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
                "owner = excluded.owner, expires = excluded.expires "
                "WHERE leases.expires < ? OR leases.owner = excluded.owner",
                [(n, owner, now + ttl, now) for n in names],
            )
            return self._held(con, names, owner)

        return self._run(work)

    @staticmethod
    def _held(con: sqlite3.Connection, names: list[str], owner: str) -> set[str]:
        query = "SELECT name FROM leases WHERE owner = ? AND name IN ({marks})"
        return {n for (n,) in select_in(con, query, names, owner)}

    def renew(self, names: list[str], owner: str, ttl: float) -> None:
        expires = time.time() + ttl
        self._run(
            lambda con: con.executemany(
                "UPDATE leases SET expires = ? WHERE name = ? AND owner = ?",
                [(expires, n, owner) for n in names],
            )
        )

    def release(self, names: list[str], owner: str) -> None:
        self._run(
            lambda con: con.executemany(
                "DELETE FROM leases WHERE name = ? AND owner = ?", [(n, owner) for n in names]
            )
        )

    def owners(self, names: list[str]) -> dict[str, str]:
        def work(con: sqlite3.Connection) -> dict[str, str]:
            query = "SELECT name, owner FROM leases WHERE name IN ({marks})"
            return dict(select_in(con, query, names))

        return self._run(work)

    def take_over(self, name: str, old: str, owner: str, ttl: float) -> bool:
        def work(con: sqlite3.Connection) -> bool:
            cur = con.execute(
                "UPDATE leases SET owner = ?, expires = ? WHERE name = ? AND owner = ?",
                (owner, time.time() + ttl, name, old),
            )
            return cur.rowcount == 1

        return self._run(work)

    def live(self, names: list[str]) -> set[str]:
        def work(con: sqlite3.Connection) -> set[str]:
            query = "SELECT name FROM leases WHERE expires >= ? AND name IN ({marks})"
            return {n for (n,) in select_in(con, query, names, time.time())}

        return self._run(work)


class _MongoBackend:
    """Leases as documents ``{_id: name, owner, expires}`` of a MongoDB collection."""

    def __init__(self, collection: Any):
        self.collection = collection

    def claim(self, names: list[str], owner: str, ttl: float) -> set[str]:
        from pymongo.errors import DuplicateKeyError

        now = time.time()
        held = set()
        for n in names:
            free = {"_id": n, "$or": [{"expires": {"$lt": now}}, {"owner": owner}]}
            try:  # matches a free or own lease, else inserts: a held one is a duplicate _id
                self.collection.update_one(
                    free, {"$set": {"owner": owner, "expires": now + ttl}}, upsert=True
                )
                held.add(n)
            except DuplicateKeyError:
                pass
        return held

    def renew(self, names: list[str], owner: str, ttl: float) -> None:
        self.collection.update_many(
            {"_id": {"$in": names}, "owner": owner}, {"$set": {"expires": time.time() + ttl}}
        )

    def release(self, names: list[str], owner: str) -> None:
        self.collection.delete_many({"_id": {"$in": names}, "owner": owner})

    def owners(self, names: list[str]) -> dict[str, str]:
        return {d["_id"]: d["owner"] for d in self.collection.find({"_id": {"$in": names}})}

    def take_over(self, name: str, old: str, owner: str, ttl: float) -> bool:
        result = self.collection.update_one(
            {"_id": name, "owner": old}, {"$set": {"owner": owner, "expires": time.time() + ttl}}
        )
        return result.modified_count == 1

    def live(self, names: list[str]) -> set[str]:
        query = {"_id": {"$in": names}, "expires": {"$gte": time.time()}}
        return {d["_id"] for d in self.collection.find(query, {"_id": 1})}


def backend(store: JobStore) -> _Backend | None:
    """Where the leases of ``store``'s results live (see module docstring); None for none."""
    results = results_store(store)
    if isinstance(results, MontyStore):
        folder = Path(results.database_path)
        if getattr(results, "storage", "sqlite") == "memory" or not folder.is_dir():
            return None
        name = f"{results.database_name}.{results.collection_name}.leases.sqlite"
        return _SQLiteBackend(folder / name)
    try:
        collection = _connected(results)._collection
        database = collection.database
    except Exception:
        return None
    return _MongoBackend(database[f"{collection.name}_leases"])


def _dead_here(owner: str) -> bool:
    """True when ``owner`` (``host:pid:token``) names a process of this machine that has
    ended: its leases can be taken over at once instead of after ``ttl``."""
    host, _, rest = owner.partition(":")
    pid_text = rest.split(":", 1)[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by another user
        return False
    return False


class Leases:
    """The leases one computation holds in one store, renewed while it runs.

    Use as a context manager: on leaving, the heartbeat stops and every lease still held is
    released, whether the work finished, failed or was interrupted.

    Parameters
    ----------
    store
        The job store whose results store holds the results (and the leases); None: no
        store, no leases (every key is this process's to compute).
    kind
        The document kind computed (``"relaxation"``, ``"phonon"``...): a lease names
        ``kind:key``.
    ttl
        Seconds a lease lasts without renewal; renewed every ``ttl / 4`` s.
    poll
        Seconds between two looks at the store while waiting for another process.
    """

    def __init__(
        self, store: JobStore | None, kind: str, ttl: float = TTL, poll: float = POLL
    ) -> None:
        self.backend = backend(store) if store is not None else None
        self.kind = kind
        self.ttl = ttl
        self.poll = poll
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self.held: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: keys whose results another process computed while this one waited
        self.waited: set[str] = set()

    def _name(self, key: str) -> str:
        return f"{self.kind}:{key}"

    def __enter__(self) -> Leases:
        if self.backend is not None:
            self._thread = threading.Thread(target=self._beat, daemon=True, name="esen-lease")
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with suppress(Exception):  # never hide the error that ended the work
            self.release(list(self.held))

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl / 4):
            with self._lock:
                names = sorted(self.held)
            if names:
                with suppress(Exception):  # a store hiccup: the next beat tries again
                    self.backend.renew([self._name(k) for k in names], self.owner, self.ttl)

    def claim(self, keys: Iterable[str]) -> tuple[set[str], set[str]]:
        """Claim ``keys``: those now held by this process, and those another process holds."""
        keys = sorted(set(keys))
        if self.backend is None or not keys:
            return set(keys), set()
        names = {self._name(k): k for k in keys}
        got = self.backend.claim(list(names), self.owner, self.ttl)
        rest = [n for n in names if n not in got]
        if rest:  # a holder on this machine that no longer runs (kill -9): no need to wait
            for name, old in self.backend.owners(rest).items():
                if _dead_here(old) and self.backend.take_over(name, old, self.owner, self.ttl):
                    got.add(name)
        mine = {names[n] for n in got}
        with self._lock:
            self.held |= mine
        return mine, set(keys) - mine

    def release(self, keys: Iterable[str]) -> None:
        """Give up ``keys`` (their results are stored, or will not be)."""
        keys = sorted(set(keys))
        with self._lock:
            self.held -= set(keys)
        if self.backend is not None and keys:
            self.backend.release([self._name(k) for k in keys], self.owner)

    def live(self, keys: Iterable[str]) -> set[str]:
        """Those of ``keys`` some process (this one included) holds a live lease on."""
        keys = sorted(set(keys))
        if self.backend is None or not keys:
            return set()
        return {n.split(":", 1)[1] for n in self.backend.live([self._name(k) for k in keys])}

    def take(
        self, keys: Iterable[str], stored: Callable[[set[str]], set[str]]
    ) -> Iterator[set[str]]:
        """The keys this process must compute, in rounds, until every key has a result.

        ``stored(keys)`` looks the keys up in the store, takes up the results found (the caller
        fills its documents) and returns the keys found. Each round yields the keys claimed
        and still missing (compute them and store the results before asking for the next
        round; their leases are released then); keys other processes hold are waited for
        and taken over if their lease ends without a result.
        """
        pending = set(keys)
        while pending:
            mine, theirs = self.claim(pending)
            mine -= stored(mine)  # finished by another process since the caller looked
            if mine:
                try:
                    yield mine
                finally:
                    self.release(mine)
            pending &= theirs
            while pending:  # wait for the others' results, or for their leases to end
                found = stored(pending)
                self.waited |= found
                pending -= found
                if not pending or not self.live(pending) >= pending:
                    break
                time.sleep(self.poll)
