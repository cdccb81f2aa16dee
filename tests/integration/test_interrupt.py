"""A screen killed with SIGKILL inside a batch job loses nothing and recomputes nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import TESTS, alloy_structures
from jobflow import run_locally

from esen_flows.analysis import hull_table, query
from esen_flows.makers import ScreeningMaker
from esen_flows.stores import default_store

N = 24
POTENTIAL = "_potentials:LoggingEMT"

SCRIPT = textwrap.dedent(
    f"""
    import sys
    sys.path.insert(0, {str(TESTS)!r})
    from conftest import alloy_structures
    from jobflow import run_locally
    from esen_flows.makers import ScreeningMaker
    from esen_flows.stores import default_store
    flow = ScreeningMaker(potential={POTENTIAL!r}, batch_size={N}).make(alloy_structures({N}))
    run_locally(flow, store=default_store(sys.argv[1]), create_folders=False, log=False)
    """
)


def _finished(path: Path) -> dict[str, object]:
    docs = query(default_store(path), "relaxation")
    return {d.label: d.created_at for d in docs if d.label.startswith("alloy-")}


@pytest.mark.slow
def test_sigkill_mid_batch_then_rerun(tmp_path, monkeypatch):
    path = tmp_path / "store"
    env = {**os.environ, "ESEN_TEST_SLEEP": "0.004", "ESEN_TEST_EVAL_LOG": str(tmp_path / "a.log")}
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(path)], env=env)
    try:
        deadline = time.monotonic() + 240
        finished: dict[str, object] = {}
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
            if path.exists():
                try:
                    finished = _finished(path)
                except Exception:  # the store may be mid-write; look again
                    continue
            if len(finished) >= 4:
                break
        assert proc.poll() is None, "the screen ended before it could be interrupted"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    before = _finished(path)
    assert 4 <= len(before) < N, f"killed with {len(before)} of {N} finished: not mid-batch"

    # run the same screen again: nothing that had finished is evaluated again
    log = tmp_path / "b.log"
    monkeypatch.setenv("ESEN_TEST_EVAL_LOG", str(log))
    monkeypatch.setenv("ESEN_TEST_SLEEP", "0")
    maker = ScreeningMaker(potential=POTENTIAL, batch_size=N)
    run_locally(
        maker.make(alloy_structures(N)), store=default_store(path), create_folders=False, log=False
    )
    evaluated = set(log.read_text().split())
    assert evaluated, "the re-run should have finished the interrupted work"
    assert not evaluated & set(before), "finished structures were recomputed"
    after = _finished(path)
    assert len(after) == N
    assert all(after[label] == created for label, created in before.items())

    # and the results equal an uninterrupted run's
    clean = default_store(tmp_path / "clean")
    monkeypatch.delenv("ESEN_TEST_EVAL_LOG")
    run_locally(maker.make(alloy_structures(N)), store=clean, create_folders=False, log=False)
    resumed_energy = {d.label: d.energy for d in query(default_store(path), "relaxation")}
    clean_energy = {d.label: d.energy for d in query(clean, "relaxation")}
    assert resumed_energy == pytest.approx(clean_energy, abs=1e-10)
    a, b = hull_table(default_store(path)), hull_table(clean)
    assert list(a.label) == list(b.label)
    assert a.e_above_hull.tolist() == pytest.approx(b.e_above_hull.tolist(), abs=1e-10)
