"""The batch-task skeleton: keys, the one reuse policy, input screening, failure documents,
persistence (``esen_flows.tasks.batch``)."""

from __future__ import annotations

from ase.build import bulk
from jobflow import JobStore
from maggma.stores import MemoryStore

from esen_flows.io import UnreadableInput, to_structure, with_label
from esen_flows.potentials import get_potential
from esen_flows.schemas import ConservationDocument, RelaxationDocument
from esen_flows.stores import find_documents
from esen_flows.tasks.batch import Batch, precision
from esen_flows.tasks.settings import RelaxSettings


def _store() -> JobStore:
    return JobStore(MemoryStore("outputs"), additional_stores={"results": MemoryStore("res")})


def _cu(label: str, a: float = 3.6):
    return with_label(to_structure(bulk("Cu", "fcc", a=a)), label)


def _open(items, store, doc_class=RelaxationDocument, **kw) -> Batch:
    emt = get_potential("emt")
    sdict = {**RelaxSettings().key_dict(), "dtype": precision(emt)}
    return Batch.open(items, emt, doc_class, [sdict] * len(items), store=store, **kw)


def test_same_key_and_label_is_reused_another_label_gets_a_relabelled_copy():
    store = _store()
    first = _open([_cu("a")], store)
    assert first.todo == [0]
    first.finish(0, RelaxationDocument(**first.fields(0), energy=-1.0))
    again = _open([_cu("a"), _cu("b"), _cu("c", a=3.7)], store)
    assert again.todo == [2]  # another structure: to compute
    assert again.docs[0].label == "a" and again.docs[0].energy == -1.0
    assert again.docs[1].label == "b" and again.docs[1].key == again.docs[0].key
    stored = {d.label for d in find_documents(store, "relaxation")}
    assert stored == {"a", "b"}  # the copy is saved at once


def test_failed_results_are_reused_unless_retried_for_every_kind():
    for doc_class in (RelaxationDocument, ConservationDocument):
        store = _store()
        batch = _open([_cu("x")], store, doc_class)
        batch.fail(0, "x: it broke")
        assert _open([_cu("x")], store, doc_class).docs[0].reason == "x: it broke"
        retried = _open([_cu("x")], store, doc_class, retry_failed=True)
        assert retried.todo == [0] and retried.docs[0] is None


def test_bad_inputs_fail_alone_without_a_model_call():
    overlapping = with_label(to_structure(bulk("Cu", "fcc", a=0.5)), "squashed")
    unreadable = UnreadableInput("broken", "broken.cif", "no structure in the file")
    batch = _open([overlapping, unreadable, _cu("fine")], _store(), bad=None)
    assert batch.todo == [2]
    assert batch.docs[0].status == "failed" and batch.docs[0].reason.startswith("squashed: ")
    assert batch.docs[0].relax_status == "failed"  # the kind's own failed fields
    assert batch.docs[1].reason == "no structure in the file"
    known = _open([_cu("odd")], _store(), bad={0: "bad per-structure setting (mesh)"})
    assert known.docs[0].reason == "odd: bad per-structure setting (mesh)"


def test_a_document_the_store_refuses_becomes_a_failed_one_it_takes():
    store = _store()
    batch = _open([_cu("y")], store)
    batch.finish(0, RelaxationDocument(**batch.fields(0), energy=-1.0, extra=object()))
    assert batch.docs[0].status == "failed" and "cannot be stored" in batch.docs[0].reason
    (stored,) = find_documents(store, "relaxation")
    assert stored.status == "failed"


def test_a_malformed_per_structure_setting_is_keyed_apart_from_the_well_set_structure():
    """A bad supercell fails its input alone, under its own key: the same structure without
    it is computed, not handed that failure (nor the reverse)."""
    from esen_flows.schemas import PhononDocument
    from esen_flows.tasks.relaxed_cells import prepare
    from esen_flows.tasks.settings import PhononSettings

    store, emt = _store(), get_potential("emt")
    settings = PhononSettings(relax=None)
    kw = dict(store=store, allowed=("supercell_matrix",))
    bad = prepare(
        [_cu("A")], emt, settings, PhononDocument, 1e-3, [{"supercell_matrix": [[1, 2, 3]]}], **kw
    )
    assert bad.docs[0].status == "failed" and "bad per-structure setting" in bad.docs[0].reason
    good = prepare([_cu("B")], emt, settings, PhononDocument, 1e-3, [None], **kw)
    assert good.todo == [0] and good.keys[0] != bad.keys[0]
