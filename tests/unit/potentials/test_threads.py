"""numpy's BLAS runs on one thread inside the step loops, and gets its threads back after."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from threadpoolctl import threadpool_info, threadpool_limits

from esen_flows.dynamics.md import run_nve
from esen_flows.dynamics.relax import relax_structures
from esen_flows.dynamics.threads import single_threaded_blas
from esen_flows.potentials import get_potential


def blas_threads() -> list[int]:
    return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]


class Recording:
    """A potential that records numpy's BLAS threads at every evaluation (EMT underneath)."""

    def __init__(self):
        self.inner = get_potential("emt")
        self.name, self.checksum, self.elements = "emt", self.inner.checksum, None
        self.seen: list[list[int]] = []

    def evaluate(self, structures):
        self.seen.append(blas_threads())
        return self.inner.evaluate(structures)

    def as_calculator(self):
        return self.inner.as_calculator()


@pytest.fixture
def two_blas_threads():
    if not blas_threads():
        pytest.skip("numpy has no BLAS threadpoolctl can see")
    with threadpool_limits(limits=2, user_api="blas"):
        yield


def test_step_loops_run_with_one_blas_thread_and_restore_it(two_blas_threads):
    rattled = bulk("Cu", "fcc", a=3.7, cubic=True)
    rattled.rattle(0.05, seed=0)
    pot = Recording()
    results = relax_structures(pot, [rattled], fmax=0.05, max_steps=20)
    assert results[0].n_steps > 1
    assert pot.seen and all(set(s) == {1} for s in pot.seen)
    assert set(blas_threads()) == {2}
    pot.seen.clear()
    run_nve(pot, [bulk("Cu", "fcc", a=3.6, cubic=True)], temperature=300.0, steps=3)
    assert pot.seen and all(set(s) == {1} for s in pot.seen)
    assert set(blas_threads()) == {2}


def test_limit_is_restored_after_an_error_and_nests(two_blas_threads):
    guard = single_threaded_blas()
    with pytest.raises(RuntimeError), guard:
        with guard:
            assert set(blas_threads()) == {1}
        assert set(blas_threads()) == {1}  # the outer block still holds it
        raise RuntimeError("boom")
    assert set(blas_threads()) == {2}
    np.dot(np.ones((64, 64)), np.ones((64, 64)))  # BLAS still works afterwards


def test_environment_switch_leaves_blas_alone(two_blas_threads, monkeypatch):
    monkeypatch.setenv("ESEN_FLOWS_SINGLE_THREADED_BLAS", "0")
    with single_threaded_blas():
        assert set(blas_threads()) == {2}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["emt", "esen-emt-tiny"])
def test_two_threads_sharing_a_cached_potential_give_the_serial_results(name):
    """Jobs of one process share the cached potential; two relaxing at once in threads (of
    4-atom and 2-atom cells, so a shared calculator's state would not even fit) get exactly
    what each gets alone."""
    from concurrent.futures import ThreadPoolExecutor

    def cells(symbol: str, n: int, cubic: bool) -> list:
        out = []
        for i in range(n):
            a = bulk(symbol, "fcc", a=4.0 if symbol == "Au" else 3.6, cubic=cubic)
            a.rattle(0.05, seed=i)
            out.append(a)
        return out

    jobs = [cells("Cu", 3, True), cells("Au", 3, False)]
    steps = 60 if name == "emt" else 8

    def relax(atoms_list):
        results = relax_structures(
            get_potential(name), [a.copy() for a in atoms_list], fmax=1e-4, max_steps=steps
        )
        return [(r.energy, r.atoms.get_positions().copy()) for r in results]

    serial = [relax(j) for j in jobs]
    with ThreadPoolExecutor(2) as pool:
        for _ in range(3):
            threaded = list(pool.map(relax, jobs))
            for got, want in zip(threaded, serial, strict=True):
                for (e1, p1), (e2, p2) in zip(got, want, strict=True):
                    assert e1 == e2
                    np.testing.assert_array_equal(p1, p2)
