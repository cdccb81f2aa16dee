"""The batched engine: refill under a memory budget, the symmetry constraint, out-of-memory
splitting, and agreement with ASE's FIRE + FrechetCellFilter on 50 structures."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import spglib
import torch
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.constraints import FixSymmetry
from ase.filters import FrechetCellFilter
from ase.neighborlist import neighbor_list
from ase.optimize import FIRE
from conftest import alloy_structures

from esen_flows.dynamics.evaluate import evaluate_batched
from esen_flows.dynamics.relax import relax_structures
from esen_flows.dynamics.symmetry import find_symmetry, refine_symmetry, symmetrize_vectors
from esen_flows.potentials import BatchBudget, estimate_edges, get_potential
from esen_flows.potentials.esen import ESENPotential


def _ase(atoms, fmax, steps=1000, symmetric=False, calc=None):
    a = atoms.copy()
    a.calc = calc or EMT()
    if symmetric:
        a.set_constraint(FixSymmetry(a, symprec=0.01))
    opt = FIRE(FrechetCellFilter(a), logfile=None)
    converged = opt.run(fmax=fmax, steps=steps)
    return a, opt.nsteps, converged


def _spacegroup(atoms, symprec=1e-4):
    cell = (atoms.cell.array, atoms.get_scaled_positions(), atoms.numbers)
    return spglib.get_symmetry_dataset(cell, symprec=symprec).international


class Recording:
    """EMT that records how many structures (and atoms) each batched call holds."""

    def __init__(self):
        self.inner = get_potential("emt")
        self.name, self.checksum, self.elements = "emt", self.inner.checksum, self.inner.elements
        self.calls: list[tuple[int, int]] = []

    def evaluate(self, structures):
        self.calls.append((len(structures), sum(len(s) for s in structures)))
        return self.inner.evaluate(structures)

    def as_calculator(self):
        return self.inner.as_calculator()


@pytest.mark.slow
def test_fifty_structures_match_ase_within_a_mev(tmp_path):
    structures = alloy_structures(50, seed=7)
    results = relax_structures(get_potential("emt"), structures, fmax=0.05, max_steps=1000)
    worst = 0.0
    for atoms, res in zip(structures, results, strict=True):
        ref, _, converged = _ase(atoms, 0.05)
        assert res.status == "converged" and converged, atoms.info["label"]
        n = len(atoms)
        worst = max(worst, abs(res.energy - ref.get_potential_energy()) / n)
    assert worst < 1e-3  # eV/atom


@pytest.mark.slow
def test_refill_keeps_the_batch_full_and_changes_nothing():
    structures = alloy_structures(16, seed=3)
    free = relax_structures(get_potential("emt"), structures, fmax=0.01, max_steps=400)
    rec = Recording()
    budget = BatchBudget(max_atoms=24)  # three to six structures at once
    tight = relax_structures(rec, structures, fmax=0.01, max_steps=400, budget=budget)
    for a, b in zip(free, tight, strict=True):
        assert a.status == b.status == "converged"
        assert a.n_steps == b.n_steps
        assert a.energy == pytest.approx(b.energy, abs=1e-9)
    assert max(n_atoms for _, n_atoms in rec.calls) <= 24
    # while structures wait the batch is refilled above 16 atoms (an 8-atom one always fits
    # below that); once it drops to 16 or fewer the queue is empty and it only shrinks
    atoms_per_call = [n_atoms for _, n_atoms in rec.calls]
    first_low = next(k for k, n in enumerate(atoms_per_call) if n <= 16)
    tail = atoms_per_call[first_low:]
    assert all(b <= a for a, b in itertools.pairwise(tail)), atoms_per_call
    assert first_low > len(atoms_per_call) // 2
    assert len(rec.calls) < sum(r.n_steps + 1 for r in tight)  # batched, not one by one


@pytest.mark.slow
def test_symmetry_constraint_keeps_the_space_group_and_matches_ase():
    cu3au = bulk("Cu", "fcc", a=3.85, cubic=True)
    cu3au.symbols[0] = "Au"
    hcp = bulk("Cu", "hcp", a=2.7, c=4.2)
    l10 = bulk("Cu", "fcc", a=3.9, cubic=True)
    l10.symbols[[0, 1]] = "Au"
    structures = []
    for k, base in enumerate((cu3au, hcp, l10)):
        a = base.copy()
        strain = np.eye(3) + np.diag([0.03, -0.02, 0.01])
        a.set_cell(a.cell.array @ strain, scale_atoms=True)
        a.rattle(0.002, seed=k)  # below symprec: the constraint keeps the group
        a.info["label"] = f"sym-{k}"
        structures.append(a)
    results = relax_structures(
        get_potential("emt"), structures, fmax=1e-3, max_steps=2000, symmetry=True
    )
    for atoms, res in zip(structures, results, strict=True):
        assert res.status == "converged", res.reason
        start = find_symmetry(refine_symmetry(atoms, 0.01), 0.01)  # the group it keeps
        assert res.spacegroup == start.symbol
        # no operation is lost (a relaxation may reach a higher symmetry, never a lower one)
        assert len(find_symmetry(res.atoms, 1e-4)) >= len(start)
        ref, _, _ = _ase(atoms, 1e-3, steps=2000, symmetric=True)
        # ASE's FixSymmetry refines once, so it can keep a smaller group (L1_0 here: Pm, where
        # this engine keeps Cmmm); never a larger one
        assert len(find_symmetry(ref, 1e-4)) <= len(find_symmetry(res.atoms, 1e-4))
        n = len(atoms)
        assert res.energy / n == pytest.approx(ref.get_potential_energy() / n, abs=1e-4)
    # without the constraint a rattled cell is free to lose its symmetry
    rattled = structures[0].copy()
    rattled.rattle(0.05, seed=9)
    (free,) = relax_structures(get_potential("emt"), [rattled], fmax=1e-3, max_steps=2000)
    assert free.spacegroup is None


def test_symmetrised_forces_are_invariant_and_steps_stay_symmetric():
    a = bulk("Cu", "hcp", a=2.6, c=4.3).repeat((2, 1, 1))
    a.symbols[0] = "Au"
    ops = find_symmetry(a, 0.01)
    a.calc = EMT()
    forces = a.get_forces()
    sym = symmetrize_vectors(a.cell.array, forces, ops)
    # a symmetric structure's forces are symmetric already (EMT is exact)
    np.testing.assert_allclose(sym, forces, atol=1e-10)
    noisy = forces + np.random.default_rng(0).normal(scale=0.1, size=forces.shape)
    once = symmetrize_vectors(a.cell.array, noisy, ops)
    np.testing.assert_allclose(symmetrize_vectors(a.cell.array, once, ops), once, atol=1e-12)


def test_edge_estimate_is_close_to_the_real_count():
    for atoms in (bulk("Cu", "fcc", a=3.61).repeat(3), bulk("Au", "bcc", a=3.3).repeat(2)):
        real = len(neighbor_list("i", atoms, 6.0))
        assert estimate_edges(atoms, 6.0) == pytest.approx(real, rel=0.2)


def test_esen_budget_comes_from_memory():
    p = get_potential("esen-emt-tiny")
    budget = p.batch_budget()
    assert budget.cutoff == p.model.config.cutoff
    assert budget.max_edges > 10_000 and budget.max_atoms >= 1
    if p.device.type == "cpu":  # capped for throughput, not memory
        from esen_flows.potentials.esen import CPU_BATCH_BYTES

        assert budget.max_edges <= CPU_BATCH_BYTES // p.bytes_per_edge()
    # float64 holds twice the bytes per edge
    assert get_potential("esen-emt-tiny", dtype="float64").bytes_per_edge() == (
        2 * p.bytes_per_edge()
    )


class RunsOutOfMemory(ESENPotential):
    """The shipped model on a pretend device that holds at most ``limit`` atoms per batch."""

    limit = 40
    batches: list[int]

    def _run_batch(self, batch):
        n = sum(len(a) for a in batch)
        self.batches.append(n)
        if n > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super()._run_batch(batch)


def test_a_batch_that_runs_out_of_memory_is_split_never_lost():
    shipped = get_potential("esen-emt-tiny")
    p = RunsOutOfMemory(
        shipped.model, "esen-emt-tiny", shipped.checksum, budget=BatchBudget(max_atoms=10_000)
    )
    p.batches = []
    structures = alloy_structures(12, seed=5)
    big = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((3, 3, 2))  # 72 atoms: never fits
    big.info["label"] = "too-big"
    outputs = evaluate_batched(p, [*structures[:6], big, *structures[6:]])
    reference = shipped.evaluate(structures)
    ok = [o for o in outputs if o.error is None]
    assert len(ok) == 12
    np.testing.assert_allclose([o.energy for o in ok], reference.energies, rtol=1e-5)
    assert "too-big" in outputs[6].error and "do not fit" in outputs[6].error
    assert p.batch_budget().max_atoms <= 40 and max(p.batches[-3:]) <= 40
    # the relaxation engine keeps going around the structure that cannot fit
    p.batches = []
    results = relax_structures(p, [structures[0], big, structures[1]], fmax=0.2, max_steps=3)
    assert [r.status for r in results][1] == "failed" and "too-big" in results[1].reason
    assert {results[0].status, results[2].status} <= {"converged", "max_steps"}


@pytest.mark.slow
def test_tiny_esen_relaxations_match_ase_driven_directly():
    p = get_potential("esen-emt-tiny", dtype="float64")
    structures = alloy_structures(4, seed=11)
    results = relax_structures(p, structures, fmax=0.02, max_steps=300)
    for atoms, res in zip(structures, results, strict=True):
        ref, _, _ = _ase(atoms, 0.02, steps=300, calc=p.as_calculator())
        n = len(atoms)
        assert res.energy / n == pytest.approx(ref.get_potential_energy() / n, abs=1e-3)
