"""fairchem's eSEN checkpoints: read as data, converted, and giving fairchem's numbers.

The fixtures under ``tests/data/fairchem`` were written by fairchem itself
(``make fairchem-fixtures``: fairchem-core 1.10.0 and 2.24.0, random weights, non-trivial
normalizers and element references, an EMA copy that differs from the raw weights) together
with fairchem's own energies, forces and stresses on six cells (1 to 200 atoms, triclinic,
edges along each axis, over 300 neighbours within the cutoff).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
from conftest import DATA as TESTS_DATA

from esen_flows.cli import main as cli_main
from esen_flows.model.checkpoints import convert, load_model
from esen_flows.model.esen import ESEN, CheckpointError
from esen_flows.model.fairchem import UnsupportedCheckpointError, load_fairchem, sha256
from esen_flows.model.parity import Reference, parity
from esen_flows.model.safe_load import load_data
from esen_flows.potentials import PotentialError, clear_cache, get_potential

DATA = TESTS_DATA / "fairchem"
# (energy relative, forces and stress relative to the set's largest). Both references are
# fairchem in float64 (1.x: its float32 graph handed to the float64 model); what is left is
# fairchem's float32 constant tables (Jd, the Gaussians' width): 3e-6 of the largest force
TOLERANCE = {"v2": (1e-6, 1e-6), "v1": (1e-6, 1e-5)}


def _worst(rows: list[dict]) -> tuple[float, float]:
    energy = max(r["energy_rel"] for r in rows)
    rest = max(max(r["forces_rel"], r["stress_rel"]) for r in rows)
    return energy, rest


def _model(version: str, task: str = "omat", **system):
    """The fixture's model as fairchem's inference runs it (2.x: for one task)."""
    path = DATA / version / "checkpoint.pt"
    return load_model(path) if version == "v1" else load_fairchem(path, task=task, **system)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_fairchem_checkpoint_gives_fairchem_numbers(version, tmp_path):
    clear_cache()
    path = DATA / version / "checkpoint.pt"
    if version == "v2":  # two tasks (omat, omol): esen:PATH needs a converted file
        with pytest.raises(PotentialError, match="--task"):
            get_potential(f"esen:{path}")
        converted = tmp_path / "omat.pt"
        assert cli_main(["convert", str(path), str(converted), "--task", "omat"]) == 0
        path = converted
    potential = get_potential(f"esen:{path}", dtype="float64")
    reference = Reference.read(DATA / version / "reference.npz")
    rows = parity(potential.model, reference)
    energy, rest = _worst(rows)
    tol_e, tol_fs = TOLERANCE[version]
    assert energy < tol_e and rest < tol_fs, rows
    assert {r["label"] for r in rows} >= {"CuAgPdAu-200-sheared", "LiBe-dense-over-300-neighbours"}
    # the batched Potential path gives the same energies as one structure at a time
    ev = potential.evaluate(reference.structures)
    assert max(abs(e - r["energy"]) for e, r in zip(ev.energies, rows, strict=True)) < 1e-9
    assert potential.checksum == sha256(path)[:16]
    source = potential.model.metadata["source"]
    assert source["format"] == f"fairchem-{version[1]}"
    assert source["weights"].startswith("ema" if version == "v2" else "state_dict")


def test_v2_other_task_and_system(tmp_path):
    """The omol task at charge +1, spin 2 (fairchem evaluated it there): another normalizer,
    other element references, another point of the charge/spin embeddings."""
    reference = Reference.read(DATA / "v2" / "reference_omol.npz")
    energy, rest = _worst(parity(_model("v2", "omol", charge=1, spin=2), reference))
    assert energy < 1e-6 and rest < 1e-6
    energy, rest = _worst(parity(_model("v2", "omol", charge=1), reference))  # spin 1
    assert energy > 1e-3
    # a potential made for one system refuses a structure that states another
    target = tmp_path / "omol.pt"
    convert(DATA / "v2" / "checkpoint.pt", target, task="omol", charge=1, spin=2)
    potential = get_potential(f"esen:{target}")
    atoms = reference.structures[0].copy()
    atoms.info.update(label="neutral", charge=0)
    with pytest.raises(PotentialError, match="neutral: charge 0 differs"):
        potential.evaluate([atoms])
    with pytest.raises(CheckpointError, match="spin=500"):
        load_fairchem(DATA / "v2" / "checkpoint.pt", task="omol", spin=500)


def _ablations(version: str) -> dict:
    """Models each missing one thing fairchem's inference applies."""
    out = {}
    model = _model(version)

    def variant(**changes):
        m = ESEN(dataclasses.replace(model.config, **changes))
        state = {k: v for k, v in model.state_dict().items() if k in m.state_dict()}
        m.load_state_dict(state, strict=False)
        return m

    out["no normalizers"] = variant(normalizers=None)
    out["no neighbour cap"] = variant(max_neighbors=None)
    if version == "v1":
        out["no y clip"] = variant(y_clip=False)
    no_refs = variant()
    no_refs.element_energies.zero_()
    out["no element references"] = no_refs
    if version == "v2":
        out["no system embedding"] = variant(system_embedding=False)
        data = load_data(DATA / version / "checkpoint.pt")
        data.state["ema_state_dict"] = {}  # the raw weights instead of the EMA
        out["raw weights"] = load_fairchem(DATA / version / "checkpoint.pt", "omat", data=data)
        out["another task's normalizers"] = _model(version, "omol", charge=0, spin=0)
    return out


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_each_ingredient_matters(version):
    """Leaving out any part of fairchem's inference breaks the agreement (the test can fail);
    the 1.x y clip (edges along y in the dense cell) moves stresses by 7e-5 of the largest."""
    reference = Reference.read(DATA / version / "reference.npz")
    tol_e, tol_fs = TOLERANCE[version]
    for what, model in _ablations(version).items():
        energy, rest = _worst(parity(model, reference))
        assert energy > 3 * tol_e or rest > 3 * tol_fs, what


def test_convert_keeps_results_and_provenance(tmp_path):
    source = DATA / "v2" / "checkpoint.pt"
    target = tmp_path / "esen-small.pt"
    assert cli_main(["convert", str(source), str(target), "--task", "omat", "--json"]) == 0
    converted = load_model(target)
    assert converted.metadata["source"]["source_sha256"] == sha256(source)
    assert converted.metadata["source"]["task"] == "omat"
    reference = Reference.read(DATA / "v2" / "reference.npz")
    a = parity(_model("v2"), reference)
    b = parity(converted, reference)
    assert [r["energy"] for r in a] == [r["energy"] for r in b]
    # the converted file is plain data: torch's own weights_only loader reads it
    torch.load(target, weights_only=True)
    with pytest.raises(CheckpointError, match="overwrite"):
        convert(target, target)


def _v1_dict() -> dict:
    return load_data(DATA / "v1" / "checkpoint.pt")


@pytest.mark.parametrize(
    "field, value",
    [("act_type", "s2"), ("mlp_type", "grid"), ("norm_type", "layer_norm"), ("model", "escn")],
)
def test_unsupported_models_are_refused_by_name(tmp_path, field, value):
    data = _v1_dict()
    data["config"]["model"]["backbone"][field] = value
    path = tmp_path / "odd.pt"
    torch.save(data, path)
    with pytest.raises(UnsupportedCheckpointError, match=f"{field}={value!r}"):
        load_model(path)


def test_v1_without_direct_forces_field_loads(tmp_path):
    """1.x's EFS head makes the backbone conservative itself: the field is moot."""
    data = _v1_dict()
    data["config"]["model"]["backbone"].pop("direct_forces")
    path = tmp_path / "no-field.pt"
    torch.save(data, path)
    reference = Reference.read(DATA / "v1" / "reference.npz")
    assert max(_worst(parity(load_model(path), reference))) < 1e-5


def test_weights_without_a_place_are_refused(tmp_path):
    data = _v1_dict()
    data["state_dict"]["module.backbone.force_block.weight"] = torch.zeros(3)
    path = tmp_path / "extra.pt"
    torch.save(data, path)
    with pytest.raises(UnsupportedCheckpointError, match="force_block"):
        load_model(path)


def test_unknown_head_is_refused(tmp_path):
    data = _v1_dict()
    data["config"]["model"]["heads"] = {"mptrj": {"module": "esen_linear_force_head"}}
    path = tmp_path / "odd.pt"
    torch.save(data, path)
    with pytest.raises(UnsupportedCheckpointError, match="esen_linear_force_head"):
        load_model(path)


class _Payload:
    """Pickles as a call of ``os.system`` (what a hostile checkpoint carries)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _fake_fairchem_module():
    """A module named like fairchem 2.x's, so the test can write its dataclass without it."""
    name = "fairchem.core.units.mlip_unit.api.inference"
    module = types.ModuleType(name)

    @dataclasses.dataclass
    class MLIPInferenceCheckpoint:
        model_config: dict
        model_state_dict: dict
        ema_state_dict: dict
        tasks_config: list

    MLIPInferenceCheckpoint.__module__ = name
    MLIPInferenceCheckpoint.__qualname__ = "MLIPInferenceCheckpoint"
    module.MLIPInferenceCheckpoint = MLIPInferenceCheckpoint
    parts = name.split(".")
    for i in range(1, len(parts)):
        sys.modules.setdefault(".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
    sys.modules[name] = module
    return MLIPInferenceCheckpoint


@pytest.mark.slow
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_hostile_files_are_refused_and_never_run(tmp_path, version):
    marker = tmp_path / "payload-ran"
    path = tmp_path / "hostile.pt"
    if version == "v1":
        data = _v1_dict()
        data["val_metrics"] = _Payload(marker)
        torch.save(data, path)
    else:
        cls = _fake_fairchem_module()
        try:
            torch.save(cls({"backbone": _Payload(marker)}, {}, {}, []), path)
        finally:
            for key in [k for k in sys.modules if k.startswith("fairchem")]:
                del sys.modules[key]
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    message = str(info.value)
    assert "system" in message and "refused" in message
    assert "weights_only" not in message
    assert not marker.exists()
    # the command line says the same in one line, exit 2
    out = subprocess.run(
        [sys.executable, "-m", "esen_flows.cli", "convert", str(path), str(tmp_path / "o.pt")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "refused" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert not marker.exists() and not (tmp_path / "o.pt").exists()


def test_v2_shaped_file_of_plain_dicts_and_a_moe_backbone_is_refused(tmp_path):
    cls = _fake_fairchem_module()
    path = tmp_path / "moe.pt"
    try:
        config = {"backbone": {"model": "fairchem.core.models.uma.escn_moe.eSCNMDMoeBackbone"}}
        torch.save(cls(config, {}, {}, []), path)
    finally:
        for key in [k for k in sys.modules if k.startswith("fairchem")]:
            del sys.modules[key]
    with pytest.raises(UnsupportedCheckpointError, match="eSCNMDMoeBackbone"):
        load_model(path)


def test_convert_cli_reports_a_missing_file_in_one_line(tmp_path, capsys):
    code = cli_main(["convert", str(tmp_path / "nope.pt"), str(tmp_path / "out.pt")])
    err = capsys.readouterr().err
    assert code == 2 and "nope.pt" in err and len(err.strip().splitlines()) == 1


def test_meta_records_fairchem_versions():
    for version, major in (("v1", "1."), ("v2", "2.")):
        meta = json.loads((DATA / version / "meta.json").read_text())
        assert meta["fairchem"].startswith(major)


def test_screen_from_the_command_line_with_a_fairchem_file(tmp_path):
    """A screen with fairchem's own file as the potential: results keyed by its checksum."""
    from ase.build import bulk
    from ase.io import write

    from esen_flows.analysis import query
    from esen_flows.stores import default_store

    write(tmp_path / "Cu.cif", bulk("Cu", "fcc", a=3.6))
    write(tmp_path / "Au.cif", bulk("Au", "fcc", a=4.1))
    store = tmp_path / "store"
    path = DATA / "v1" / "checkpoint.pt"  # the published eSEN-30M files' format
    files = [str(tmp_path / "Cu.cif"), str(tmp_path / "Au.cif")]
    code = cli_main(
        ["screen", *files, "--store", str(store), "--potential", f"esen:{path}", "--max-steps", "5"]
    )
    assert code in (0, 3)  # 3: some relaxation did not converge in 5 steps
    docs = query(default_store(str(store)), "relaxation")
    assert {d.label for d in docs} >= {"Cu", "Au"}
    assert {d.checksum for d in docs} == {sha256(path)[:16]}
