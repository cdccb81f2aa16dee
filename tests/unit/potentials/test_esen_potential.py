"""The eSEN Potential adapter: get_potential("esen:PATH"), batching, ASE calculator, makers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk
from conftest import alloy_structures, tiny_esen_config
from jobflow import Flow, run_locally

from esen_flows.makers import BatchRelaxMaker
from esen_flows.model import ESEN, AtomsBatch
from esen_flows.potentials import PotentialError, UnsupportedElementError, get_potential


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(1)
    cfg = tiny_esen_config(cutoff=4.5, elements=("Cu", "Au", "Ag", "Pd"))
    model = ESEN(cfg)
    with torch.no_grad():
        model.element_energies[[29, 79, 47, 46]] = torch.tensor([-3.7, -3.2, -2.8, -3.9]).double()
    return model.save(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


def test_evaluate_matches_model_and_calculator(checkpoint):
    potential = get_potential(f"esen:{checkpoint}", device="cpu", dtype="float64")
    assert potential is get_potential(f"esen:{checkpoint}", device="cpu", dtype="float64")
    assert potential.name == f"esen:{checkpoint}" and len(potential.checksum) == 16
    structures = alloy_structures(5, seed=3)
    ev = potential.evaluate(structures)
    model = ESEN.load(checkpoint).double().eval()
    ref = model(AtomsBatch.from_atoms(structures, torch.float64))
    np.testing.assert_allclose(ev.energies, ref["energy"].detach().numpy(), atol=1e-10)
    np.testing.assert_allclose(ev.forces[2], ref["forces"][8:12].detach().numpy(), atol=1e-10)
    calc_atoms = structures[0].copy()
    calc_atoms.calc = potential.as_calculator()
    assert calc_atoms.get_potential_energy() == pytest.approx(ev.energies[0], abs=1e-10)
    np.testing.assert_allclose(calc_atoms.get_stress(voigt=False), ev.stresses[0], atol=1e-12)


def test_errors(checkpoint, tmp_path):
    potential = get_potential(f"esen:{checkpoint}", device="cpu")
    iron = bulk("Fe", "bcc", a=2.87)
    iron.info["label"] = "iron"
    with pytest.raises(UnsupportedElementError, match="iron: element Fe"):
        potential.evaluate([iron])
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    with pytest.raises(PotentialError, match="not an esen-flows checkpoint"):
        get_potential(f"esen:{junk}")
    with pytest.raises(PotentialError, match="float32"):
        get_potential(f"esen:{checkpoint}", dtype="float16")


def test_makers_take_esen_unchanged(checkpoint, tmp_path):
    from esen_flows.stores import default_store

    store = default_store(tmp_path / "store")
    structures = alloy_structures(3, seed=4)
    job = BatchRelaxMaker(potential=f"esen:{checkpoint}", max_steps=3, dtype="float64").make(
        structures
    )
    responses = run_locally(Flow([job]), store=store, create_folders=False, log=False)
    docs = responses[job.uuid][1].output
    assert [d.status for d in docs] == ["ok"] * 3
    assert all(d.potential == f"esen:{checkpoint}" for d in docs)
    assert all(d.n_steps <= 3 for d in docs)


def test_documents_state_the_precision_used(checkpoint, tmp_path):
    from esen_flows.stores import default_store

    store = default_store(tmp_path / "store")
    default = BatchRelaxMaker(potential=f"esen:{checkpoint}", max_steps=1).make(alloy_structures(1))
    explicit = BatchRelaxMaker(potential=f"esen:{checkpoint}", max_steps=1, dtype="float32")
    explicit = explicit.make(alloy_structures(1))
    responses = run_locally(Flow([default, explicit]), store=store, create_folders=False, log=False)
    a = responses[default.uuid][1].output[0]
    b = responses[explicit.uuid][1].output[0]
    assert a.settings["dtype"] == "float32" and a.key == b.key  # same computation, same key


@pytest.mark.slow
def test_keep_freed_memory_applies_once_and_can_be_turned_off():
    import os
    import platform
    import subprocess
    import sys

    code = "from esen_flows.model.allocator import keep_freed_memory as k; print(k(), k())"
    on = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert on.stdout.split() == [str(glibc)] * 2
    env = {**os.environ, "ESEN_FLOWS_KEEP_FREED_MEMORY": "0"}
    off = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert off.stdout.split() == ["False", "False"]
