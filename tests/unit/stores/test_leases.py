"""Leases: two processes screening the same inputs at once compute each structure once."""

from __future__ import annotations

import multiprocessing as mp
import time
from queue import Empty

import pytest
from ase.build import bulk
from jobflow import JobStore
from maggma.stores import MemoryStore

from esen_flows.stores import default_store, results_store
from esen_flows.stores.leases import Leases


def memory_store() -> JobStore:
    """A job store on mongomock (maggma's MemoryStore): the MongoDB lease backend."""
    return JobStore(MemoryStore("outputs"), additional_stores={"results": MemoryStore("res")})


@pytest.fixture(params=["embedded", "mongo"])
def store(request, tmp_path):
    return default_store(tmp_path / "store") if request.param == "embedded" else memory_store()


def test_a_held_key_is_not_claimed_twice_and_is_free_once_released(store):
    with Leases(store, "relaxation") as a, Leases(store, "relaxation") as b:
        assert a.claim(["k1", "k2"]) == ({"k1", "k2"}, set())
        assert b.claim(["k1", "k2", "k3"]) == ({"k3"}, {"k1", "k2"})
        assert a.live(["k1", "k2", "k3", "k4"]) == {"k1", "k2", "k3"}
        a.release(["k1"])
        assert b.claim(["k1", "k2"]) == ({"k1"}, {"k2"})
        with Leases(store, "phonon") as c:  # another kind of result: another lease
            assert c.claim(["k2"]) == ({"k2"}, set())
    with Leases(store, "relaxation") as d:  # leaving released everything
        assert d.claim(["k1", "k2", "k3"]) == ({"k1", "k2", "k3"}, set())


def test_an_expired_lease_is_taken_over(store):
    """A holder killed with ``kill -9`` renews nothing: after ``ttl`` its keys are free."""
    dead = Leases(store, "relaxation", ttl=0.3)  # never entered: no heartbeat, never released
    assert dead.claim(["k"]) == ({"k"}, set())
    with Leases(store, "relaxation") as b:
        assert b.claim(["k"]) == (set(), {"k"})
        time.sleep(0.4)
        assert b.claim(["k"]) == ({"k"}, set())


def test_the_heartbeat_keeps_a_lease_alive(store):
    with Leases(store, "relaxation", ttl=0.4) as a, Leases(store, "relaxation") as b:
        a.claim(["k"])
        time.sleep(1.0)  # 2.5 ttl: renewed every ttl / 4
        assert b.claim(["k"]) == (set(), {"k"})


def test_waiting_takes_up_the_others_result(store):
    """``take`` yields nothing for a key another process holds, and returns once its result
    is stored; a key whose holder stops without a result is handed over."""
    done: set[str] = set()

    def stored(keys):
        return keys & done

    holder = Leases(store, "relaxation")
    holder.claim(["a", "b"])
    with Leases(store, "relaxation", poll=0.05) as waiter:
        rounds = waiter.take(["a", "b", "c"], stored)
        assert next(rounds) == {"c"}
        done.add("c")
        done.add("a")  # the holder finished a ...
        holder.release(["a", "b"])  # ... and stopped without b
        assert next(rounds) == {"b"}
        done.add("b")
        assert next(rounds, None) is None
        assert waiter.waited == {"a"}


def _screen(path: str, barrier, queue) -> None:
    from esen_flows.potentials import get_potential
    from esen_flows.stores import default_store
    from esen_flows.tasks.relax import RelaxSettings, run_relaxations

    items = []
    for i, (symbol, a) in enumerate([("Cu", 3.7), ("Au", 4.2), ("Ag", 4.2), ("Ni", 3.6)]):
        atoms = bulk(symbol, "fcc", a=a, cubic=True).repeat((2, 2, 2))
        atoms.rattle(0.05, seed=i)
        atoms.info["label"] = f"{symbol}-rattled"
        items.append(atoms)
    from esen_flows.io import to_structure

    structures = [to_structure(a) for a in items]
    store = default_store(path)
    potential = get_potential("emt")
    barrier.wait()
    docs = run_relaxations(structures, potential, RelaxSettings(fmax=0.01), store=store)
    queue.put({d.label: d.energy for d in docs})


@pytest.mark.slow
def test_two_processes_relax_each_structure_once(tmp_path):
    """Two screens of the same inputs started together into one embedded store: every
    structure is relaxed by one of them, the other waits and takes its result."""
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    path = str(tmp_path / "store")
    procs = [ctx.Process(target=_screen, args=(path, barrier, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    results = []
    deadline = time.monotonic() + 300
    while len(results) < len(procs):  # a process that dies fails the test now, not in 300 s
        try:
            results.append(queue.get(timeout=2))
        except Empty:
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            assert not dead and time.monotonic() < deadline, f"a screen process ended: {dead}"
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert results[0] == results[1] and len(results[0]) == 4
    results_db = results_store(default_store(path))
    results_db.connect()
    rows = list(results_db.query({"kind": "relaxation"}))
    assert len(rows) == 4  # one document per structure: none computed twice


def test_a_lease_of_a_killed_process_on_this_machine_is_taken_at_once(store):
    """``kill -9`` leaves a live lease behind; on the same machine its pid is gone, so a
    re-run takes it over without waiting for it to expire."""
    import socket
    import subprocess

    gone = subprocess.Popen(["true"])
    gone.wait()
    dead = Leases(store, "relaxation")
    dead.owner = f"{socket.gethostname()}:{gone.pid}:killed"
    assert dead.claim(["k"]) == ({"k"}, set())
    alive = Leases(store, "relaxation")  # this process: alive, so its lease is respected
    alive.claim(["j"])
    with Leases(store, "relaxation") as rerun:
        assert rerun.claim(["k", "j"]) == ({"k"}, {"j"})
