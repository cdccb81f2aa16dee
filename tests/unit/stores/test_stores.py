"""Stores: the embedded default survives serialisation; results go where query finds them."""

from __future__ import annotations

import multiprocessing as mp

import pytest
from jobflow import JobStore
from maggma.stores import MemoryStore
from monty.json import MontyDecoder, MontyEncoder

from esen_flows.schemas import RelaxationDocument
from esen_flows.stores import default_store, find_documents, results_store, save_documents


def _doc(label: str, key: str = "k") -> RelaxationDocument:
    return RelaxationDocument(label=label, key=key, potential="emt", checksum="c", energy=-1.0)


def test_default_store_round_trip_and_persistence(tmp_path):
    store = default_store(tmp_path / "s")
    store.connect()
    save_documents(store, [_doc("a"), _doc("b", key="k2")])
    text = MontyEncoder().encode(store)
    again = MontyDecoder().decode(text)
    assert isinstance(again, JobStore)
    docs = find_documents(again, "relaxation")  # a new connection reads what was written
    assert sorted(d.label for d in docs) == ["a", "b"]
    assert find_documents(again, "relaxation", keys=["k2"])[0].label == "b"


def test_upsert_on_key_and_label(tmp_path):
    store = default_store(tmp_path / "s")
    save_documents(store, [_doc("a")])
    save_documents(store, [_doc("a").model_copy(update={"energy": -2.0})])
    (doc,) = find_documents(store, "relaxation")
    assert doc.energy == -2.0


def test_results_store_derived_when_not_configured():
    store = JobStore(MemoryStore(collection_name="outputs"))
    derived = results_store(store)
    assert derived.collection_name == "outputs_results"
    save_documents(store, [_doc("x")])
    assert [d.label for d in find_documents(store, "relaxation")] == ["x"]
    indexed = [spec["key"][0][0] for spec in derived._collection.index_information().values()]
    assert "key" in indexed  # MongoDB (here mongomock) gets an index on the result key


def test_key_lookups_on_the_embedded_store_skip_the_collection_for_new_keys(tmp_path, monkeypatch):
    """montydb decodes every document of a query: a lookup of keys the store does not hold
    (every relaxation job of a new screen) must not query the collection at all, and the key
    index must not hide a document saved later or one written before the index existed."""
    import shutil

    from maggma.stores import MontyStore

    from esen_flows.stores import results as stores

    store = default_store(tmp_path / "s")
    save_documents(store, [_doc("a", key="k1"), _doc("b", key="k2")])
    assert find_documents(store, "relaxation", keys=["k1"])[0].label == "a"
    calls = []
    real_query = MontyStore.query

    def counting(self, *args, **kwargs):
        calls.append(self.collection_name)
        return real_query(self, *args, **kwargs)

    monkeypatch.setattr(MontyStore, "query", counting)
    assert find_documents(store, "relaxation", keys=["new-1", "new-2"]) == []
    assert find_documents(store, "phonon", keys=["k1"]) == []  # the key under another kind
    assert calls == []
    assert [d.label for d in find_documents(store, "relaxation", keys=["k2", "new-1"])] == ["b"]
    assert calls == ["results"]
    save_documents(store, [_doc("c", key="k3")])  # a key saved into a current index
    assert [d.label for d in find_documents(store, "relaxation", keys=["k3"])] == ["c"]
    monkeypatch.undo()

    # documents written without the index (an older store) are found: it is rebuilt once
    old = default_store(tmp_path / "old")
    stores._write(results_store(old), [_doc("d", key="k4").to_store()])
    assert not list((tmp_path / "old").glob("*.keys.sqlite"))
    assert [d.label for d in find_documents(old, "relaxation", keys=["k4"])] == ["d"]
    assert list((tmp_path / "old").glob("*.keys.sqlite"))
    # a collection file copied in alone is not in the index; deleting the index rebuilds it
    target = tmp_path / "s" / "esen_flows" / "results.collection"
    shutil.copy(tmp_path / "old" / "esen_flows" / "results.collection", target)
    for f in (tmp_path / "s").glob("*.keys.sqlite"):
        f.unlink()
    assert [d.label for d in find_documents(store, "relaxation", keys=["k4"])] == ["d"]
    # a store that is not a folder (in-memory montydb) scans, as before the index
    memory = MontyStore("results", database_path=":memory:", storage="memory")
    assert stores._KeyIndex.of(memory) is None


def _connect_repeatedly(path: str, barrier, queue) -> None:
    barrier.wait()
    failures = []
    for _ in range(15):
        try:
            results_store(default_store(path)).connect(force_reset=True)
        except Exception as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
    queue.put(failures)


@pytest.mark.slow
def test_processes_connecting_at_once_to_one_embedded_store_all_succeed(tmp_path):
    """maggma rewrites montydb's storage files on every connect; unserialised, a process reading
    them mid-write failed with 'Empty module name' (about a third of connects, 4 processes)."""
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(3), ctx.Queue()
    path = str(tmp_path / "store")
    procs = [ctx.Process(target=_connect_repeatedly, args=(path, barrier, queue)) for _ in range(3)]
    for p in procs:
        p.start()
    failures = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert failures == [[], [], []]
