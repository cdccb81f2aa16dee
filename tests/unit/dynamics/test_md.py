"""Batched NVE (velocity Verlet) against ASE's VelocityVerlet, and the conservation maker."""

from __future__ import annotations

import numpy as np
import pytest
from ase import units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.md.verlet import VelocityVerlet
from jobflow import run_locally

from esen_flows.dynamics.md import energy_drift, nve_init, nve_step, run_nve
from esen_flows.potentials import get_potential


def _cells():
    cu = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
    cu.info["label"] = "Cu32"
    cuau = bulk("Cu", "fcc", a=3.85, cubic=True).repeat((2, 1, 1))
    cuau.symbols[::2] = "Au"
    cuau.info["label"] = "CuAu8"
    return [cu, cuau]


def test_batched_verlet_equals_ase_velocity_verlet():
    emt = get_potential("emt")
    cells = _cells()
    state = nve_init(emt, cells, temperature=[900.0, 600.0], seed=3)
    assert state.temperatures() == pytest.approx([900.0, 600.0])
    for b in range(len(cells)):  # zero total momentum per structure
        sel = state.system == b
        assert np.abs((state.masses[sel, None] * state.velocities[sel]).sum(0)).max() < 1e-10
    references = []
    for b, cell in enumerate(cells):
        a = cell.copy()
        a.calc = EMT()
        a.set_velocities(state.velocities[state.system == b])
        references.append(a)
    dt = 2.0 * units.fs
    for _ in range(15):
        state = nve_step(emt, state, dt)
    for b, a in enumerate(references):
        VelocityVerlet(a, timestep=dt).run(15)
        sel = state.system == b
        np.testing.assert_allclose(state.positions[sel], a.positions, atol=1e-10)
        np.testing.assert_allclose(state.velocities[sel], a.get_velocities(), atol=1e-10)
        assert state.energies[b] == pytest.approx(a.get_potential_energy(), abs=1e-9)


def test_energy_drift_is_the_slope_after_the_first_tenth():
    t = np.linspace(0, 2.0, 201)  # ps
    e = 0.003 * t + 1e-5 * np.sin(40 * t)  # 3 meV/atom/ps plus a wiggle
    e[:10] += 0.5  # an equilibration transient inside the dropped 10 %
    assert energy_drift(t, e) == pytest.approx(3.0, abs=0.02)
    with pytest.raises(ValueError, match="two samples"):
        energy_drift(t[:1], e[:1])


def test_emt_conserves_energy_in_nve():
    traj = run_nve(get_potential("emt"), _cells(), 1000.0, timestep_fs=2.0, steps=200)
    assert traj.total.shape == (2, 21)
    for b in range(2):
        assert abs(energy_drift(traj.times, traj.total[b])) < 1.0  # meV/atom/ps
        assert np.ptp(traj.potential[b]) > 1e-3  # it really moved


def test_conservation_maker_stores_documents_and_skips_on_rerun(store, count_evaluations):
    from esen_flows.analysis import query
    from esen_flows.makers import EnergyConservationMaker

    maker = EnergyConservationMaker(potential="emt", steps=60, sample_every=5, timestep_fs=2.0)
    flow = maker.make(_cells(), temperatures=[1200.0, 800.0])
    run_locally(flow, store=store, create_folders=False, log=False, raise_immediately=True)
    docs = query(store, "conservation")
    assert sorted(d.label for d in docs) == ["Cu32", "CuAu8"]
    for d in docs:
        assert d.status == "ok" and d.conserves and abs(d.drift) < d.threshold
        assert len(d.times_ps) == len(d.total_energy) == 13
        assert d.settings["temperature"] in (1200.0, 800.0)
    n = len(count_evaluations)
    assert n == 2 * 61
    run_locally(
        maker.make(_cells(), temperatures=[1200.0, 800.0]),
        store=store,
        create_folders=False,
        log=False,
        raise_immediately=True,
    )
    assert len(count_evaluations) == n  # nothing recomputed


def test_conservation_maker_isolates_a_bad_structure(store):
    from esen_flows.makers import EnergyConservationMaker

    cells = _cells()
    bad = bulk("Fe", "bcc", a=2.87, cubic=True)  # EMT has no Fe
    bad.info["label"] = "iron"
    job = EnergyConservationMaker(potential="emt", steps=20, sample_every=5).make([*cells, bad])
    out = run_locally(job, store=store, create_folders=False, log=False, raise_immediately=True)
    docs = {d.label: d for d in out[job.uuid][1].output}
    assert docs["iron"].status == "failed" and "iron" in docs["iron"].reason
    assert "Fe" in docs["iron"].reason
    assert docs["Cu32"].status == "ok" and docs["CuAu8"].status == "ok"
