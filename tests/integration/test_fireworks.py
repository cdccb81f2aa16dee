"""The same screen through FireWorks (LaunchPad on mongomock) and through run_locally."""

from __future__ import annotations

import pytest
from conftest import alloy_structures
from jobflow import run_locally

from esen_flows.analysis import hull_table, query
from esen_flows.makers import ScreeningMaker
from esen_flows.stores import default_store

fireworks = pytest.importorskip("fireworks")
mongomock = pytest.importorskip("mongomock")


@pytest.fixture
def launchpad(monkeypatch):
    """A FireWorks LaunchPad on mongomock (no MongoDB server can run here)."""
    import mongomock.gridfs
    from fireworks.core import launchpad as lp_module

    mongomock.gridfs.enable_gridfs_integration()
    monkeypatch.setattr(lp_module, "MongoClient", mongomock.MongoClient)
    lp = lp_module.LaunchPad(name="esen_flows_test", strm_lvl="ERROR")
    lp.reset("", require_password=False, max_reset_wo_password=1000)
    return lp


def test_fireworks_run_equals_run_locally(tmp_path, monkeypatch, launchpad):
    from fireworks import FWorker
    from fireworks.core.rocket_launcher import rapidfire
    from jobflow.managers.fireworks import flow_to_workflow

    structures = alloy_structures(6, seed=7)
    maker = ScreeningMaker(potential="emt", batch_size=3)

    local_store = default_store(tmp_path / "local")
    run_locally(maker.make(structures), store=local_store, create_folders=False, log=False)

    fw_store = default_store(tmp_path / "fw")
    flow = maker.make(structures)
    wf = flow_to_workflow(flow, store=fw_store)
    # the workflow (with its store) survives serialisation, as it must to reach a LaunchPad
    assert wf.to_dict()["fws"][0]["spec"]["_tasks"][0]["store"]["docs_store"]
    launchpad.add_wf(wf)
    monkeypatch.chdir(tmp_path)
    rapidfire(launchpad, FWorker(), strm_lvl="ERROR")

    states = {fw["state"] for fw in launchpad.fireworks.find({}, {"state": 1})}
    assert states == {"COMPLETED"}
    assert len(flow.jobs) == 4  # 2 batches + references + hull

    local, remote = hull_table(local_store), hull_table(fw_store)
    assert list(local.label) == list(remote.label)
    assert local.e_above_hull.tolist() == pytest.approx(remote.e_above_hull.tolist(), abs=1e-12)
    assert local.stable.tolist() == remote.stable.tolist()
    local_docs = {d.label: d.energy for d in query(local_store, "relaxation")}
    remote_docs = {d.label: d.energy for d in query(fw_store, "relaxation")}
    assert local_docs == pytest.approx(remote_docs, abs=1e-12)
