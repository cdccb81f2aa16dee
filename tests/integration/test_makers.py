"""Makers and flows: job counts, idempotent re-runs, error documents, serialisation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.filters import FrechetCellFilter
from ase.optimize import FIRE
from conftest import alloy_structures
from jobflow import Flow, run_locally
from monty.json import MontyDecoder, MontyEncoder

from esen_flows.analysis import hull_table, query
from esen_flows.makers import BatchRelaxMaker, RelaxMaker, ScreeningMaker, StaticMaker


def _run(flow, store):
    return run_locally(flow, store=store, create_folders=False, log=False, raise_immediately=True)


def test_hundreds_of_structures_are_a_few_jobs():
    structures = alloy_structures(320, seed=1)
    # random decorations of small cells repeat: keep them all, this is about the batching
    flow = ScreeningMaker(potential="emt", batch_size=100, deduplicate=False).make(structures)
    names = [j.name for j in flow.jobs]
    # 4 relaxation batches + 1 reference relaxation + 1 hull job
    assert len(flow.jobs) == 6, names
    assert names[-1] == "hull" and "relax references" in names


def test_batch_relax_equals_ase(store, alloys):
    flow = Flow([BatchRelaxMaker(potential="emt", fmax=1e-3, max_steps=2000).make(alloys[:5])])
    responses = _run(flow, store)
    docs = responses[flow.jobs[0].uuid][1].output
    assert len(docs) == 5
    for atoms, doc in zip(alloys[:5], docs, strict=True):
        ref = atoms.copy()
        ref.calc = EMT()
        FIRE(FrechetCellFilter(ref), logfile=None).run(fmax=1e-3, steps=2000)
        assert doc.status == "ok" and doc.converged
        assert doc.energy_per_atom == pytest.approx(ref.get_potential_energy() / len(ref), abs=1e-4)
    stored = query(store, "relaxation")
    assert sorted(d.label for d in stored) == sorted(d.label for d in docs)


def test_rerun_evaluates_nothing(store, alloys, count_evaluations):
    maker = ScreeningMaker(potential="emt", batch_size=5)
    _run(maker.make(alloys), store)
    first = len(count_evaluations)
    assert first > 0
    table1 = hull_table(store)
    count_evaluations.clear()
    _run(maker.make(alloys), store)  # a new flow, same work
    assert count_evaluations == []
    table2 = hull_table(store)
    assert table1[["label", "e_above_hull"]].equals(table2[["label", "e_above_hull"]])
    assert len(query(store, "relaxation")) == len(alloys) + 3 * 4  # + fcc/bcc/hcp references


def test_bad_structures_fail_alone(store, tmp_path, alloys):
    overlapping = bulk("Cu", "fcc", a=3.6, cubic=True)
    overlapping.positions[1] = overlapping.positions[0] + [0.1, 0, 0]
    overlapping.info["label"] = "overlap"
    iron = bulk("Fe", "bcc", a=2.87, cubic=True)
    iron.info["label"] = "iron"
    nan = bulk("Au", "fcc", a=4.1, cubic=True)
    nan.positions[2, 1] = np.nan
    nan.info["label"] = "nan-coords"
    bad_file = tmp_path / "garbage.cif"
    bad_file.write_text("this is not a CIF file\n")
    good = alloys[:3]
    flow = ScreeningMaker(potential="emt", batch_size=50).make(
        [*good, overlapping, iron, nan, bad_file]
    )
    _run(flow, store)
    relax = {d.label: d for d in query(store, "relaxation")}
    assert "overlapping atoms" in relax["overlap"].reason
    assert "element Fe not supported" in relax["iron"].reason
    assert "non-finite" in relax["nan-coords"].reason
    assert "garbage.cif" in relax["garbage"].reason
    for label in ("overlap", "iron", "nan-coords", "garbage"):
        assert relax[label].status == "failed"
    for atoms in good:
        assert relax[atoms.info["label"]].status == "ok"
    table = hull_table(store).set_index("label")
    assert (table.loc[[a.info["label"] for a in good], "status"] == "ok").all()
    assert table.loc["iron", "status"] == "failed"


def test_static_and_single_relax(store, alloys):
    static = StaticMaker(potential="emt").make(alloys[:2])
    relax = RelaxMaker(potential="emt").make(alloys[2])
    responses = _run(Flow([static, relax]), store)
    docs = responses[static.uuid][1].output
    ref = alloys[0].copy()
    ref.calc = EMT()
    assert docs[0].energy == pytest.approx(ref.get_potential_energy())
    assert docs[0].relax_status == "static" and docs[0].n_steps == 0
    single = responses[relax.uuid][1].output
    assert single.label == alloys[2].info["label"] and single.converged


def test_flow_round_trips_through_json(alloys):
    flow = ScreeningMaker(potential="emt", batch_size=4).make(alloys)
    text = json.dumps(flow, cls=MontyEncoder)
    again = json.loads(text, cls=MontyDecoder)
    assert isinstance(again, Flow)
    assert [j.name for j in again.jobs] == [j.name for j in flow.jobs]
    assert again.jobs[0].function_args[0][0].properties["label"] == alloys[0].info["label"]
    # the job is its maker's: Job.maker, with the settings object, survives JSON
    assert isinstance(again.jobs[0].maker, BatchRelaxMaker)
    assert again.jobs[0].maker.settings == flow.jobs[0].maker.settings
    maker = ScreeningMaker.from_dict(ScreeningMaker(e_hull_max=0.1).as_dict())
    assert maker.e_hull_max == 0.1


def test_settings_are_held_once_and_flat_arguments_are_deprecated():
    """A maker holds its settings object; the flat keyword arguments of before still work for
    one release, with a warning, and give the same settings (so the same result keys)."""
    from esen_flows.makers import EnergyConservationMaker, PhononMaker, ThermalConductivityMaker
    from esen_flows.tasks import NVESettings, PhononSettings, RelaxSettings, SymmetricRelax

    new = PhononMaker(settings=PhononSettings(relax=SymmetricRelax(fmax=1e-3), min_length=12))
    with pytest.warns(DeprecationWarning, match="settings=PhononSettings"):
        old = PhononMaker(fmax=1e-3, min_length=12)
    assert old.settings == new.settings and old.settings.key_dict() == new.settings.key_dict()
    with pytest.warns(DeprecationWarning, match="settings.min_length"):
        assert old.min_length == 12
    with pytest.warns(DeprecationWarning):
        assert BatchRelaxMaker(fmax=0.02).settings == RelaxSettings(fmax=0.02)
    with pytest.warns(DeprecationWarning):
        assert EnergyConservationMaker(steps=10).settings == NVESettings(steps=10)
    with pytest.warns(DeprecationWarning, match="maker.settings is the settings"):
        assert new.settings() is new.settings  # the old method, one release
    with pytest.warns(DeprecationWarning, match="temperature"):
        assert EnergyConservationMaker().settings(350.0).temperature == 350.0
    with pytest.warns(DeprecationWarning):  # a relaxation object given flat is kept, not lost
        assert PhononMaker(relax=SymmetricRelax(fmax=0.01)).settings.relax.fmax == 0.01
    # explicit per-structure values win over a structure's own properties, which stay else
    cu = bulk("Cu", "fcc", a=3.6)
    cu.info.update(fc3_supercell=np.diag([2, 2, 2]), fc2_supercell=[[1, 2]])  # fc2 malformed
    job = ThermalConductivityMaker().make([cu], meshes=[[5, 5, 5]])
    (override,) = job.function_args[1]
    assert override["supercell_matrix"] == np.diag([2, 2, 2]).tolist()
    assert override["mesh"] == [5, 5, 5] and "fc2_supercell_matrix" in override["problems"]
    job = ThermalConductivityMaker().make([cu], fc2_supercell_matrices=[[3, 3, 3]])
    (override,) = job.function_args[1]
    assert not override["problems"] and override["fc2_supercell_matrix"][0][0] == 3
    # no relaxation: the relaxation's fields leave the key, as before
    off = PhononSettings(relax=None).key_dict()
    assert off["relax"] is False and "fmax" not in off
    # a preset with flat overrides, and a bad value refused where the settings are made
    kappa = ThermalConductivityMaker.matbench_discovery(mesh=[5, 5, 5], fmax=1e-3)
    assert kappa.settings.mesh == (5, 5, 5) and kappa.settings.relax.fmax == 1e-3
    with pytest.raises(ValueError, match="fmax"):
        RelaxSettings(fmax=0)
    with pytest.raises(TypeError, match="PhononSettings"):
        PhononMaker(settings=RelaxSettings()).make(bulk("Cu", cubic=True))


def test_a_structure_whose_evaluation_raises_is_a_failed_document(store, alloys):
    boom = alloys[0].copy()
    boom.info["label"] = "boom"
    single = RelaxMaker(potential="_potentials:FailingEMT").make(boom)
    batch = BatchRelaxMaker(potential="_potentials:FailingEMT").make([boom, alloys[1]])
    responses = _run(Flow([single, batch]), store)
    doc = responses[single.uuid][1].output
    assert doc.status == "failed" and "calculator exploded" in doc.reason
    docs = responses[batch.uuid][1].output
    assert [d.status for d in docs] == ["failed", "ok"]


def test_same_structure_under_two_labels_is_computed_once(store, alloys, count_evaluations):
    twin = alloys[0].copy()
    twin.info["label"] = "twin"
    _run(Flow([BatchRelaxMaker(potential="emt").make([alloys[0]])]), store)
    count_evaluations.clear()
    _run(Flow([BatchRelaxMaker(potential="emt").make([twin])]), store)
    assert count_evaluations == []
    (doc,) = query(store, "relaxation", label="twin")
    (orig,) = query(store, "relaxation", label=alloys[0].info["label"])
    assert doc.energy == orig.energy and doc.key == orig.key
    assert query(store, "relaxation")[0].label == "twin"  # newest first


def test_screen_relax_jobs_output_keys_and_the_hull_reads_the_store(store, alloys):
    from esen_flows.analysis.hull import compute_stability, entry_from_document
    from esen_flows.makers.screening import relaxation_documents

    flow = ScreeningMaker(potential="emt", batch_size=4, deduplicate=False).make(alloys)
    responses = _run(flow, store)
    relax_jobs = [j for j in flow.jobs if j.name.startswith("relax ")]
    outputs = [responses[j.uuid][1].output for j in relax_jobs]
    # the job outputs are small references, not documents
    assert all(isinstance(o, dict) and set(o) == {"key", "label"} for out in outputs for o in out)
    labels = sorted(o["label"] for out in outputs[:-1] for o in out)  # last: the references
    assert labels == sorted(a.info["label"] for a in alloys)
    # the hull equals one computed by hand from the stored relaxation documents
    hull = responses[flow.jobs[-1].uuid][1].output
    docs = {d.label: d for d in query(store, "relaxation")}
    refs = [entry_from_document(docs[o["label"]]) for o in outputs[-1]]
    screened = [docs[label] for label in labels]
    by_hand = {s.label: s for s in compute_stability(screened, refs)}
    assert len(hull) == len(alloys)
    for s in hull:
        assert s.e_above_hull == pytest.approx(by_hand[s.label].e_above_hull, abs=1e-12)
    # the hull's output (tens of MB for a large screen) is a blob in the data store
    raw = store.docs_store.query_one({"uuid": flow.jobs[-1].uuid})
    assert raw["output"]["store"] == "data" and raw["output"]["blob_uuid"]
    loaded = MontyDecoder().process_decoded(store.get_output(flow.jobs[-1].uuid, load=True))
    assert [d.label for d in loaded] == [s.label for s in hull]
    assert [d.e_above_hull for d in loaded] == [s.e_above_hull for s in hull]
    # a reference to a result that is not in the store is named, not silently dropped
    with pytest.raises(LookupError, match="ghost"):
        relaxation_documents([{"key": "0" * 16, "label": "ghost"}], store)
