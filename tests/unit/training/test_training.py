"""Training: EMT reference data, the two-stage recipe, resumable state, the CLI."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from ase.calculators.emt import EMT

from esen_flows.model import ESEN
from esen_flows.model.esen import read_checkpoint
from esen_flows.potentials import get_potential
from esen_flows.training.data import DatasetSettings, generate_dataset, read_frames, write_dataset
from esen_flows.training.train import (
    Frame,
    TrainSettings,
    _val_loss,
    evaluate_frames,
    fit_element_energies,
    new_model,
    tiny_config,
    train_stage,
    train_two_stage,
)

SMALL = DatasetSettings(
    elements=("Cu", "Au"),
    random_cells=6,
    strains=(-0.02, 0.0, 0.02),
    rattled=1,
    md_fractions=(0.6,),
    md_snapshots=1,
    md_interval=5,
    min_md_atoms=8,
    fractions=(0.6, 0.2, 0.2),
)


@pytest.fixture(scope="module")
def small_dataset():
    return generate_dataset(get_potential("emt"), SMALL, progress=False)


def _config(direct_forces=False):
    from conftest import tiny_esen_config

    return tiny_esen_config(
        elements=("Cu", "Au"), lmax=1, mmax=1, cutoff=5.0, direct_forces=direct_forces
    )


def test_dataset_is_split_by_crystal_and_labelled_by_emt(small_dataset):
    groups = {s: {a.info["group"] for a in frames} for s, frames in small_dataset.items()}
    assert all(groups.values())
    assert not (groups["train"] & groups["val"]) and not (groups["train"] & groups["test"])
    assert not (groups["val"] & groups["test"])
    frames = [a for f in small_dataset.values() for a in f]
    kinds = {a.info["frame_kind"].split("-")[0] for a in frames}
    assert kinds == {"strain", "rattle", "vacancy", "md"}
    for a in frames[::7]:  # labels are EMT's, recomputed here
        ref = a.copy()
        ref.calc = EMT()
        assert a.get_potential_energy() == pytest.approx(ref.get_potential_energy(), abs=1e-9)
        np.testing.assert_allclose(a.get_forces(), ref.get_forces(), atol=1e-9)
        np.testing.assert_allclose(a.get_stress(), ref.get_stress(), atol=1e-9)
    # one split regenerated alone gives the same frames (one random stream per crystal)
    test_only = generate_dataset(get_potential("emt"), SMALL, progress=False, splits=("test",))
    assert [a.info["label"] for a in test_only["test"]] == [
        a.info["label"] for a in small_dataset["test"]
    ]
    np.testing.assert_array_equal(
        test_only["test"][-1].positions, small_dataset["test"][-1].positions
    )


def test_dataset_round_trips_through_extxyz(small_dataset, tmp_path):
    write_dataset(small_dataset, tmp_path, SMALL, "emt")
    manifest = json.loads((tmp_path / "dataset.json").read_text())
    assert manifest["frames"]["train"] == len(small_dataset["train"])
    back = read_frames(tmp_path / "val.extxyz")
    assert back[0].get_potential_energy() == small_dataset["val"][0].get_potential_energy()
    (tmp_path / "bad.extxyz").write_text("1\nProperties=species:S:1:pos:R:3\nCu 0 0 0\n")
    with pytest.raises(ValueError, match=r"bad\.extxyz, frame 0"):
        read_frames(tmp_path / "bad.extxyz")


def test_element_energies_fit_the_composition_trend(small_dataset):
    frames = [Frame.from_atoms(a) for a in small_dataset["train"]]
    refs = fit_element_energies(frames, 80)
    residual = [f.energy - float(refs[f.numbers].sum()) for f in frames]
    natoms = [len(f.numbers) for f in frames]
    assert abs(np.dot(residual, natoms)) < 1e-6  # residuals orthogonal to the compositions
    assert refs[29] != 0 and refs[79] != 0 and refs[1] == 0


@pytest.mark.slow
def test_short_two_stage_training_lowers_error_and_resumes(small_dataset, tmp_path):
    train = [Frame.from_atoms(a) for a in small_dataset["train"]]
    val = [Frame.from_atoms(a) for a in small_dataset["val"]]
    config = replace(tiny_config(("Cu", "Au")), cutoff=5.0)  # the shipped architecture
    untrained = new_model(config, train, seed=0)
    before = evaluate_frames(untrained, val)
    direct = TrainSettings(stage="direct", epochs=8, batch_atoms=32, lr=5e-3)
    conservative = TrainSettings(stage="conservative", epochs=8, batch_atoms=32, lr=3e-3)
    result = train_two_stage(config, train, val, tmp_path, direct, conservative, progress=False)
    after = evaluate_frames(result.conservative.model, val)
    assert after["force_mae"] < 0.6 * before["force_mae"]
    assert _val_loss(after, conservative) < 0.7 * _val_loss(before, conservative)
    assert len(result.conservative.history) == 8
    # the saved best model is the one returned, and it is a plain-data checkpoint
    loaded = ESEN.load(tmp_path / "conservative.pt")
    assert loaded.force_head is None
    assert evaluate_frames(loaded, val) == pytest.approx(after)
    direct_model = ESEN.load(tmp_path / "direct.pt")
    assert direct_model.force_head is not None
    assert "direct" in read_checkpoint(tmp_path / "direct.pt")["metadata"]["stage"]
    # resuming a finished stage trains nothing more; other settings are refused
    again = train_stage(
        ESEN.load(tmp_path / "conservative.pt"), train, val, conservative, tmp_path, progress=False
    )
    assert len(again.history) == 8
    with pytest.raises(ValueError, match="other settings"):
        train_stage(
            ESEN.load(tmp_path / "conservative.pt"),
            train,
            val,
            replace(conservative, lr=1e-4),
            tmp_path,
            progress=False,
        )


def test_direct_stage_needs_the_head(small_dataset, tmp_path):
    frames = [Frame.from_atoms(a) for a in small_dataset["val"]]
    with pytest.raises(ValueError, match="direct_forces=True"):
        train_stage(ESEN(_config()), frames, frames, TrainSettings(stage="direct"), tmp_path)
    with pytest.raises(ValueError, match="stage must be"):
        TrainSettings(stage="both")


def test_state_file_loads_as_plain_data(small_dataset, tmp_path):
    frames = [Frame.from_atoms(a) for a in small_dataset["val"]][:6]
    settings = TrainSettings(stage="direct", epochs=1, batch_atoms=64)
    train_stage(
        new_model(_config(True), frames), frames, frames, settings, tmp_path, progress=False
    )
    state = torch.load(tmp_path / "direct-state.pt", weights_only=True)
    assert state["training"]["epoch"] == 1 and "optimizer" in state["training"]


def test_cli_evaluate_reports_errors(small_dataset, tmp_path, capsys):
    from esen_flows.cli import main

    write_dataset(small_dataset, tmp_path / "data", SMALL, "emt")
    model = new_model(_config(), [Frame.from_atoms(a) for a in small_dataset["train"]])
    model.save(tmp_path / "m.pt")
    assert (
        main(["evaluate", str(tmp_path / "m.pt"), str(tmp_path / "data/test.extxyz"), "--json"])
        == 0
    )
    metrics = json.loads(capsys.readouterr().out)
    assert {"energy_mae", "force_mae", "stress_mae"} <= set(metrics)
    assert main(["evaluate", str(tmp_path / "nope.pt"), str(tmp_path / "data/test.extxyz")]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
