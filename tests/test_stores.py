"""Stores: the embedded default survives serialisation; results go where query finds them."""

from __future__ import annotations

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
