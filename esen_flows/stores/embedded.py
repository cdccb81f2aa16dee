"""The embedded on-disk store (maggma ``MontyStore``s, montydb on SQLite, no server), the
production store jobflow is configured with, and opening either from a path or a ``JobStore``."""

from __future__ import annotations

import sqlite3
import warnings
from datetime import UTC, datetime
from pathlib import Path

from jobflow import JobStore
from maggma.stores import MontyStore

RESULTS = "results"
DATA = "data"


try:  # POSIX; elsewhere connects are not serialised
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]


class EmbeddedStore(MontyStore):
    """A maggma ``MontyStore`` whose ``connect`` is serialised across processes.

    maggma rewrites montydb's storage files on every connect (truncate, then write) and
    montydb reads them back to pick its engine: a second process connecting to the same folder
    in between fails with "Empty module name". Two screens, or two FireWorks workers, started
    at once into one embedded store do exactly that, so connects take an exclusive
    ``fcntl`` lock on ``<database_path>/.connect.lock``.
    """

    def connect(self, force_reset: bool = False) -> None:
        if self._coll and not force_reset:
            return
        folder = Path(self.database_path)
        if fcntl is None or self.database_path == ":memory:":
            super().connect(force_reset=force_reset)
            return
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / ".connect.lock", "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX)
            except OSError as exc:  # a file system without flock (Lustre without -o flock)
                warnings.warn(
                    f"{folder}: connecting without a lock ({exc}); do not start two screens "
                    "into this store at the same moment",
                    stacklevel=2,
                )
                super().connect(force_reset=force_reset)
                return
            try:
                if not self._coll or force_reset:  # another thread may have connected
                    super().connect(force_reset=force_reset)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def _monty(path: Path, collection: str) -> MontyStore:
    return EmbeddedStore(
        collection_name=collection,
        database_path=str(path),
        database_name="esen_flows",
        storage="sqlite",
    )


class StoreError(RuntimeError):
    """A store file that cannot be read: the message names it and says what to do."""


def sqlite_problem(path: Path) -> str | None:
    """Why an SQLite file cannot be read (truncated, not a database), or None when sound."""
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            row = con.execute("PRAGMA quick_check").fetchone()
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    return None if row and row[0] == "ok" else str(row[0] if row else "unreadable")


def set_aside(path: Path, problem: str, what: str) -> None:
    """Move an unreadable derived file out of the way (it is rebuilt) with a warning."""
    aside = path.with_name(f"{path.name}.unreadable-{datetime.now(UTC):%Y%m%dT%H%M%S}")
    path.rename(aside)
    warnings.warn(
        f"{path}: {what} cannot be read ({problem}); moved to {aside.name}, rebuilt",
        stacklevel=3,
    )


def check_embedded(path: Path) -> None:
    """Check the SQLite files of an embedded store: an unreadable job-outputs collection (job
    bookkeeping, derived) is set aside and started afresh, with a warning; an unreadable
    results collection is a ``StoreError`` naming the file."""
    folder = path / "esen_flows"
    outputs = folder / "outputs.collection"
    if outputs.is_file() and (problem := sqlite_problem(outputs)):
        set_aside(outputs, problem, "the job-outputs collection")
    results = folder / f"{RESULTS}.collection"
    if results.is_file() and (problem := sqlite_problem(results)):
        raise StoreError(
            f"{results}: the results collection cannot be read ({problem}); restore it from a "
            "backup, or move it away to start an empty store"
        )


def default_store(path: str | Path = "./results") -> JobStore:
    """The embedded on-disk store: job outputs, results and large arrays under ``path``.

    It survives serialisation (``as_dict``/``from_dict``), so it can travel inside a Firework.

    Raises
    ------
    StoreError
        When ``path`` is a file, or its results collection cannot be read.

    Examples
    --------
    >>> import tempfile
    >>> store = default_store(tempfile.mkdtemp())
    >>> sorted(store.additional_stores)  # beside the job outputs
    ['data', 'results']
    """
    path = Path(path).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise StoreError(f"{path}: is a file, not a store folder")
    path.mkdir(parents=True, exist_ok=True)
    check_embedded(path)
    return JobStore(
        docs_store=_monty(path, "outputs"),
        additional_stores={DATA: _monty(path / "data", "data"), RESULTS: _monty(path, RESULTS)},
    )


def production_store() -> JobStore:
    """jobflow's configured ``JOB_STORE`` (from ``JOBFLOW_CONFIG_FILE``), MongoDB in production."""
    from jobflow import SETTINGS

    return SETTINGS.JOB_STORE


def open_store(store: JobStore | str | Path) -> JobStore:
    """A ``JobStore`` from a store or a folder of the embedded default store."""
    if isinstance(store, JobStore):
        return store
    path = Path(store)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such store folder")
    return default_store(path)
