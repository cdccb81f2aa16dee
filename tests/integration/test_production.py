"""The production path: FireWorks on a LaunchPad, a MongoDB job store (``MongoStore`` for
documents and results, ``GridFSStore`` for arrays), the stages added at run time; all on one
mongomock client (``tests/_mongo.py``), compared with ``run_locally`` on the embedded store."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from _mongo import mongo_job_store, use_mongomock
from ase.build import bulk
from conftest import alloy_structures, small_funnel
from jobflow import run_locally

from esen_flows.analysis import hull_table, query
from esen_flows.makers import (
    BatchRelaxMaker,
    PhononMaker,
    ScreeningMaker,
    ThermalConductivityMaker,
)
from esen_flows.stores import (
    default_store,
    load_band_structure,
    load_data,
    load_phonopy,
    results_store,
)

fireworks = pytest.importorskip("fireworks")
DB = "esen_fw_test"


@pytest.fixture
def launchpad(monkeypatch):
    use_mongomock(monkeypatch)
    from fireworks import LaunchPad

    lp = LaunchPad(name=DB, strm_lvl="ERROR")
    lp.reset("", require_password=False, max_reset_wo_password=1000)
    return lp


def rapidfire(launchpad, tmp_path, monkeypatch) -> None:
    from fireworks import FWorker
    from fireworks.core.rocket_launcher import rapidfire as fire

    monkeypatch.chdir(tmp_path)
    fire(launchpad, FWorker(), strm_lvl="ERROR")


def states(launchpad) -> dict[str, str]:
    return {fw["name"]: fw["state"] for fw in launchpad.fireworks.find({}, {"name": 1, "state": 1})}


def funnel() -> tuple[ScreeningMaker, list]:
    cu3au = bulk("Cu", "fcc", a=3.75, cubic=True)
    cu3au.set_chemical_symbols(["Au", "Cu", "Cu", "Cu"])
    cu3au.info["label"] = "Cu3Au-L12"
    return small_funnel(batch_size=2), [*alloy_structures(2, seed=3), cu3au]


def created(store, kind: str) -> dict[str, object]:
    """When each (key, label) document of ``kind`` was last written."""
    target = results_store(store)
    target.connect()
    out = {}
    for row in target.query({"kind": kind}, properties=["key", "label", "created_at"]):
        out[(row["key"], row["label"])] = max(
            out.get((row["key"], row["label"])) or row["created_at"], row["created_at"]
        )
    return out


def test_funnel_through_fireworks_on_mongodb_equals_run_locally(tmp_path, monkeypatch, launchpad):
    """Relaxations, hull, then the phonon and conductivity stages the flow adds at run time,
    through FireWorks into MongoDB + GridFS: the same hull, phonons and kappa as
    ``run_locally`` on the embedded store. Rerunning the workflow's fireworks then computes
    nothing again."""
    from jobflow.managers.fireworks import flow_to_workflow

    maker, items = funnel()
    local = default_store(tmp_path / "local")
    run_locally(maker.make(items), store=local, create_folders=False, log=False)

    store = mongo_job_store(DB)
    wf = flow_to_workflow(maker.make(items), store=store)
    n_initial = len(wf.fws)
    launchpad.add_wf(wf)
    rapidfire(launchpad, tmp_path, monkeypatch)
    done = states(launchpad)
    assert set(done.values()) == {"COMPLETED"}
    assert len(done) > n_initial  # the phonon and conductivity jobs were added at run time
    assert any(name.startswith("phonons") for name in done)
    assert any(name.startswith("conductivity ") for name in done)

    a, b = hull_table(local), hull_table(store)
    assert list(a.label) == list(b.label)
    np.testing.assert_allclose(a.e_above_hull, b.e_above_hull, atol=1e-12)
    assert a.stable.tolist() == b.stable.tolist()
    ph_a = {d.label: d for d in query(local, "phonon")}
    ph_b = {d.label: d for d in query(store, "phonon")}
    assert set(ph_a) == set(ph_b) and "Cu3Au-L12" in ph_b
    for label, d in ph_b.items():
        assert d.dynamically_stable == ph_a[label].dynamically_stable
        assert d.max_frequency == pytest.approx(ph_a[label].max_frequency, abs=1e-9)
        record = load_data(store, "phonopy", d.key, label)  # arrays live in GridFS
        assert record["force_constants"]["shape"][-2:] == [3, 3]
    k_a = {d.label: d for d in query(local, "conductivity")}
    k_b = {d.label: d for d in query(store, "conductivity")}
    assert set(k_a) == set(k_b) and k_b
    for label, d in k_b.items():
        assert d.status == "ok"
        np.testing.assert_allclose(d.kappa_mean, k_a[label].kappa_mean, rtol=1e-9)

    # rerun every firework of the workflow: nothing is computed twice
    before = {kind: created(store, kind) for kind in ("relaxation", "phonon", "conductivity")}
    for fw_id in launchpad.get_fw_ids():
        launchpad.rerun_fw(fw_id)
    rapidfire(launchpad, tmp_path, monkeypatch)
    assert set(states(launchpad).values()) == {"COMPLETED"}
    for kind, when in before.items():
        assert created(store, kind) == when, kind


def test_a_fizzled_firework_rerun_with_lpad_completes(tmp_path, monkeypatch, launchpad):
    """A relaxation job that dies (a node lost mid-job, here an injected error) fizzles;
    ``lpad rerun_fws`` and a new ``rapidfire`` finish it, into the MongoDB store."""
    from fireworks.scripts.lpad_run import lpad
    from jobflow.managers.fireworks import flow_to_workflow

    import esen_flows.tasks.relax as relax_tasks

    store = mongo_job_store(DB)
    flow = BatchRelaxMaker(potential="emt").make(alloy_structures(3, seed=5))
    launchpad.add_wf(flow_to_workflow(flow, store=store))

    def lost(*args, **kwargs):
        raise RuntimeError("node lost")

    with monkeypatch.context() as m:
        m.setattr(relax_tasks, "relax_structures", lost)
        rapidfire(launchpad, tmp_path, monkeypatch)
    (state,) = states(launchpad).values()
    assert state == "FIZZLED"
    assert not query(store, "relaxation")

    config = tmp_path / "my_launchpad.yaml"
    config.write_text(f"host: localhost\nport: 27017\nname: {DB}\nstrm_lvl: ERROR\n")
    (fw_id,) = launchpad.get_fw_ids()
    monkeypatch.setattr(sys, "argv", ["lpad", "-l", str(config), "rerun_fws", "-i", str(fw_id)])
    lpad()
    rapidfire(launchpad, tmp_path, monkeypatch)
    (state,) = states(launchpad).values()
    assert state == "COMPLETED"
    docs = query(store, "relaxation")
    assert len(docs) == 3 and all(d.status == "ok" for d in docs)


JOBFLOW_YAML = """JOB_STORE:
  docs_store: {{type: MongoStore, database: {db}, collection_name: outputs, host: localhost}}
  additional_stores:
    data: {{type: GridFSStore, database: {db}, collection_name: data, host: localhost}}
    results: {{type: MongoStore, database: {db}, collection_name: results, host: localhost}}
"""


def test_submit_adds_the_screen_to_the_launchpad(tmp_path, monkeypatch, launchpad, capsys):
    """``esen-flows submit FILES --launchpad --jobflow-config``: no Python needed on the HPC
    side; ``--dry-run`` lists the fireworks and adds none; workers then run the screen into
    the MongoDB store the configuration names."""
    import json

    from ase.io import write

    from esen_flows.cli import main

    for atoms in alloy_structures(3, seed=11):
        write(tmp_path / f"{atoms.info['label']}.extxyz", atoms, format="extxyz")
    lp_file = tmp_path / "my_launchpad.yaml"
    lp_file.write_text(f"host: localhost\nport: 27017\nname: {DB}\nstrm_lvl: ERROR\n")
    jf_file = tmp_path / "jobflow.yaml"
    jf_file.write_text(JOBFLOW_YAML.format(db=DB))
    argv = ["submit", *map(str, sorted(tmp_path.glob("*.extxyz"))), "-l", str(lp_file)]
    argv += ["--jobflow-config", str(jf_file), "--batch-size", "2"]

    assert main([*argv, "--dry-run"]) == 0
    fws = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [fw["name"] for fw in fws][-1] == "hull" and len(fws) == 4  # 2 batches, refs, hull
    assert not launchpad.get_fw_ids()

    assert main(argv) == 0
    wf_id = int(capsys.readouterr().out.strip())
    assert wf_id in launchpad.get_fw_ids() and len(launchpad.get_fw_ids()) == 4
    rapidfire(launchpad, tmp_path, monkeypatch)
    assert set(states(launchpad).values()) == {"COMPLETED"}
    table = hull_table(mongo_job_store(DB))
    assert {a.info["label"] for a in alloy_structures(3, seed=11)} <= set(table.label)

    assert main([*argv[:-4], "-l", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml: no such file" in capsys.readouterr().err


def test_documents_of_a_500_atom_cell_stay_below_1_mb(monkeypatch):
    """Every MongoDB document a phonon result of a 500-atom cell writes (results, job
    outputs, GridFS file entries) stays below 1 MB: its 1500-band structure and the force
    constants go to GridFS, the job outputs too. The band structure read back equals
    phonopy's on the stored force constants. The conductivity result's documents likewise
    (its fc3 of a 27-atom supercell in GridFS)."""
    import bson
    from jobflow import Flow

    client = use_mongomock(monkeypatch)
    store = mongo_job_store("esen_sizes")
    big = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((5, 5, 5))
    big.symbols[0] = "Au"  # no translation left: the primitive cell is all 500 atoms
    big.info["label"] = "Cu499Au"
    cu = bulk("Cu", "fcc", a=3.61)
    cu.info["label"] = "Cu"
    phonons = PhononMaker(
        potential="emt",
        relax=False,
        supercell_matrix=[1, 1, 1],
        mesh=[1, 1, 1],
        dos_mesh=[2, 2, 2],
        band_points=2,
    ).make([big])
    kappa = ThermalConductivityMaker(
        potential="emt",
        supercell_matrix=[3, 3, 3],
        fc2_supercell_matrix=[3, 3, 3],
        mesh=[4, 4, 4],
        temperatures=[300.0],
        fmax=1e-3,
    ).make([cu])
    run_locally(Flow([phonons, kappa]), store=store, create_folders=False, log=False)

    db = client["esen_sizes"]
    largest = {
        name: max(len(bson.BSON.encode(d)) for d in db[name].find())
        for name in db.list_collection_names()
        if not name.endswith(".chunks")  # GridFS chunks: 255 kB each by construction
    }
    assert max(largest.values()) < 1_000_000, largest
    assert db["data.files"].count_documents({}) >= 3  # phonopy, phono3py records, outputs

    (doc,) = query(store, "phonon")
    assert doc.band_structure is None and doc.band_structure_in_data
    bands = load_band_structure(doc, store)
    assert np.asarray(bands.bands).shape[0] == 1500
    phonon = load_phonopy(doc, store)
    qpoints = [q.frac_coords for q in bands.qpoints]
    phonon.run_qpoints(qpoints)
    np.testing.assert_allclose(np.asarray(bands.bands).T, phonon.qpoints.frequencies, atol=1e-6)
    (kdoc,) = query(store, "conductivity")
    assert kdoc.status == "ok" and kdoc.kappa_mean[0] > 0


def test_submit_from_a_login_node_names_the_model_by_its_absolute_path(
    tmp_path, monkeypatch, launchpad, capsys
):
    """Workers run each firework in a folder of their own, and a login node has no GPU: a
    relative ``esen:PATH`` reaches the workflow as an absolute path, and ``--device cuda``
    is accepted where CUDA is missing (checked on the CPU)."""
    import shutil

    from ase.io import write

    import esen_flows
    from esen_flows.cli import main

    zoo = next(iter(esen_flows.__path__)) + "/zoo/esen-emt-tiny.pt"
    shutil.copy(zoo, tmp_path / "model.pt")
    write(tmp_path / "Cu.extxyz", bulk("Cu", "fcc", a=3.6), format="extxyz")
    lp_file = tmp_path / "my_launchpad.yaml"
    lp_file.write_text(f"host: localhost\nport: 27017\nname: {DB}\nstrm_lvl: ERROR\n")
    monkeypatch.chdir(tmp_path)
    argv = ["submit", "Cu.extxyz", "-l", str(lp_file), "-p", "esen:model.pt", "--device", "cuda"]
    assert main(argv) == 0
    specs = str(list(launchpad.fireworks.find({}, {"spec": 1})))
    assert f"esen:{tmp_path / 'model.pt'}" in specs
    assert "'esen:model.pt'" not in specs
