"""The bad cases of a screen: each a clear one-line error or a handled case."""

from __future__ import annotations

import os

import pytest
from ase.build import bulk
from ase.io import write

from esen_flows.cli import main
from esen_flows.io import UnreadableInput, get_label, load_structures
from esen_flows.makers import ScreeningMaker
from esen_flows.schemas import RelaxationDocument
from esen_flows.stores import default_store, find_documents, save_documents


def _doc(label, key):
    return RelaxationDocument(label=label, key=key, potential="emt", checksum="c", energy=-1.0)


@pytest.fixture
def screened(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write(folder / "Cu.extxyz", bulk("Cu", "fcc", a=3.7), format="extxyz")
    store = tmp_path / "store"
    assert main(["screen", str(folder), "--store", str(store)]) == 0
    return folder, store


def _one_line_error(capsys, *words):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for w in words:
        assert w in err, err
    return err


def test_summary_on_stdout_progress_on_stderr(screened, capsys):
    folder, store = screened
    assert main(["screen", str(folder), "--store", str(store)]) == 0
    captured = capsys.readouterr()
    assert "screen summary" in captured.out and "screen summary" not in captured.err
    assert "screening 1 structures" in captured.err


def test_truncated_key_index_is_rebuilt_with_a_warning(tmp_path):
    store = default_store(tmp_path / "s")
    save_documents(store, [_doc("a", "k1")])
    (index,) = (tmp_path / "s").glob("*.keys.sqlite")
    index.write_bytes(index.read_bytes()[:100])  # truncated
    again = default_store(tmp_path / "s")
    with pytest.warns(UserWarning, match="key index cannot be read"):
        assert [d.label for d in find_documents(again, "relaxation", keys=["k1"])] == ["a"]
    save_documents(again, [_doc("b", "k2")])
    assert [d.label for d in find_documents(again, "relaxation", keys=["k2"])] == ["b"]


def test_truncated_job_outputs_are_set_aside_and_the_screen_goes_on(screened, capsys):
    folder, store = screened
    outputs = store / "esen_flows" / "outputs.collection"
    outputs.write_bytes(outputs.read_bytes()[:512])
    with pytest.warns(UserWarning, match="job-outputs collection cannot be read"):
        assert main(["screen", str(folder), "--store", str(store)]) == 0
    assert list(outputs.parent.glob("outputs.collection.unreadable-*"))


def test_corrupt_results_collection_is_an_error_naming_the_file(screened, capsys):
    _, store = screened
    results = store / "esen_flows" / "results.collection"
    results.write_bytes(b"garbage" * 100)
    capsys.readouterr()
    assert main(["hull", "--store", str(store)]) == 1
    _one_line_error(capsys, "results.collection", "cannot be read", "backup")


def test_deleted_results_collection_is_not_an_empty_hull(screened, capsys):
    _, store = screened
    (store / "esen_flows" / "results.collection").unlink()
    capsys.readouterr()
    assert main(["hull", "--store", str(store), "--json"]) == 1
    _one_line_error(capsys, "no results collection")


@pytest.mark.parametrize("command", ["screen", "hull", "report"])
def test_store_that_is_a_file(tmp_path, capsys, command):
    path = tmp_path / "afile"
    path.write_text("x")
    argv = [command, "--store", str(path)]
    if command == "screen":
        argv.insert(1, str(tmp_path))
    assert main(argv) == 2
    _one_line_error(capsys, "is a file, not a store folder")


@pytest.mark.parametrize("device", ["bogus", "cuda"])
def test_bad_device(tmp_path, capsys, device):
    import torch

    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    write(tmp_path / "Cu.extxyz", bulk("Cu", "fcc", a=3.7), format="extxyz")
    argv = ["screen", str(tmp_path), "--store", str(tmp_path / "s"), "--device", device]
    assert main(argv) == 2
    _one_line_error(capsys, f"--device {device!r}")


def test_report_out_an_existing_folder(screened, capsys, tmp_path):
    _, store = screened
    capsys.readouterr()
    assert main(["report", "--store", str(store), "--out", str(tmp_path)]) == 2
    _one_line_error(capsys, "is a folder")


def test_maker_with_an_unknown_potential_fails_at_make():
    with pytest.raises(ValueError, match="unknown potential 'nosuch'"):
        ScreeningMaker(potential="nosuch").make([bulk("Cu", "fcc", a=3.7)])


def test_truncated_last_frame_keeps_the_good_frames(tmp_path):
    path = tmp_path / "many.extxyz"
    frames = [bulk("Cu", "fcc", a=a) for a in (3.6, 3.7, 3.8)]
    write(path, frames, format="extxyz")
    text = path.read_text()
    path.write_text(text[: len(text) - 60])  # cut into the last frame's atoms
    out = load_structures(path)
    assert [get_label(x) for x in out] == ["many-0", "many-1", "many-2"]
    assert not isinstance(out[0], UnreadableInput) and not isinstance(out[1], UnreadableInput)
    assert isinstance(out[2], UnreadableInput)
    assert "many.extxyz: frame 2 cannot be read" in out[2].reason


POSCAR = """Cu
1.0
3.6 0 0
0 3.6 0
0 0 3.6
Cu
{count}
Direct
0 0 0
0.5 0.5 0
0.5 0 0.5
0 0.5 0.5
"""


def test_poscar_whose_counts_disagree_with_its_coordinates(tmp_path):
    good = tmp_path / "good.vasp"
    good.write_text(POSCAR.format(count=4))
    bad = tmp_path / "bad.vasp"
    bad.write_text(POSCAR.format(count=2))
    ok, failed = load_structures([good, bad])
    assert len(ok) == 4
    assert isinstance(failed, UnreadableInput)
    assert "bad.vasp" in failed.reason and "2 atoms but 4 coordinate lines" in failed.reason


def test_malformed_file_errors_name_the_file(tmp_path):
    path = tmp_path / "zero.vasp"
    path.write_text(POSCAR.format(count=4).replace("3.6 0 0", "0 0 0"))
    (item,) = load_structures(path)
    from esen_flows.io import structure_problem

    if isinstance(item, UnreadableInput):
        assert "zero.vasp" in item.reason
    else:  # read: the relaxation refuses it with a reason naming the cell
        assert "degenerate cell" in structure_problem(item)


def test_duplicate_labels_name_the_files(tmp_path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        write(tmp_path / sub / "Cu.extxyz", bulk("Cu", "fcc", a=3.7), format="extxyz")
    with pytest.raises(ValueError, match="duplicate label 'Cu'") as exc:
        load_structures([tmp_path / "a", tmp_path / "b"])
    assert str(tmp_path / "a" / "Cu.extxyz") in str(exc.value)
    assert str(tmp_path / "b" / "Cu.extxyz") in str(exc.value)


def test_broken_links_in_a_folder_are_reported(tmp_path):
    write(tmp_path / "Cu.extxyz", bulk("Cu", "fcc", a=3.7), format="extxyz")
    os.symlink(tmp_path / "gone.extxyz", tmp_path / "dangling.extxyz")
    os.symlink(tmp_path / "loop.cif", tmp_path / "loop.cif")
    out = {get_label(x): x for x in load_structures(tmp_path)}
    assert not isinstance(out["Cu"], UnreadableInput)
    assert "dangling symbolic link" in out["dangling"].reason
    assert "symbolic link loop" in out["loop"].reason
