"""Shared fixtures: small, real alloy structures and an embedded store per test."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

#: The tests folder (on sys.path: its helper modules import from anywhere below it) and the
#: data the tests ship.
TESTS = Path(__file__).parent
DATA = TESTS / "data"
sys.path.insert(0, str(TESTS))

LATTICE = {"Cu": 3.61, "Ag": 4.09, "Au": 4.08, "Pd": 3.89}


def alloy_structures(n: int, seed: int = 0, elements=("Cu", "Au", "Ag", "Pd")) -> list[Atoms]:
    """``n`` distinct labelled 4- and 8-atom fcc/bcc alloy cells, strained and rattled."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        k = 2 + i % 2 if len(elements) > 2 else 2
        chosen = list(rng.choice(elements, size=k, replace=False))
        lattice = "fcc" if i % 3 else "bcc"
        if lattice == "fcc":
            atoms = bulk("Cu", "fcc", a=1.0, cubic=True)
        else:
            atoms = bulk("Cu", "bcc", a=1.0, cubic=True).repeat((1, 1, 2))
        symbols = [chosen[j % k] for j in range(len(atoms))]
        rng.shuffle(symbols)
        atoms.set_chemical_symbols(symbols)
        a = float(np.mean([LATTICE[s] for s in symbols]))
        if lattice == "bcc":
            a /= 2 ** (1 / 3)
        strain = np.eye(3) + 0.02 * rng.standard_normal((3, 3))
        atoms.set_cell(atoms.cell.array * a @ strain, scale_atoms=True)
        atoms.rattle(0.03, seed=int(rng.integers(1 << 30)))
        atoms.info["label"] = f"alloy-{i:03d}"
        out.append(atoms)
    return out


@pytest.fixture
def alloys() -> list[Atoms]:
    return alloy_structures(12)


@pytest.fixture
def store(tmp_path):
    from esen_flows.stores import default_store

    return default_store(tmp_path / "store")


@pytest.fixture
def count_evaluations(monkeypatch):
    """Count structures evaluated by the (cached) EMT potential; returns a list of labels."""
    from esen_flows.potentials import get_potential

    potential = get_potential("emt")
    seen: list[str] = []
    original = type(potential).evaluate

    def counting(self, structures):
        seen.extend(str(s.info.get("label")) if isinstance(s, Atoms) else "?" for s in structures)
        return original(self, structures)

    monkeypatch.setattr(type(potential), "evaluate", counting)
    return seen


def tiny_esen_config(**overrides):
    """A small eSEN config for tests (8 channels); ``overrides`` replace any field."""
    from esen_flows.model import ESENConfig

    base = dict(
        lmax=2,
        mmax=2,
        channels=8,
        hidden_channels=8,
        ffn_hidden_channels=8,
        edge_channels=8,
        num_layers=1,
        cutoff=4.0,
        num_rbf=8,
        energy_hidden_channels=8,
    )
    return ESENConfig(**{**base, **overrides})


def small_funnel(**overrides):
    """A ScreeningMaker with EMT, phonons and conductivity at small test settings: the whole
    funnel (hull, then the phonon and conductivity stages added at run time) in seconds."""
    from esen_flows.makers import PhononMaker, ScreeningMaker, ThermalConductivityMaker

    settings = dict(
        potential="emt",
        e_hull_max=0.03,
        phonons=True,
        phonon_maker=PhononMaker(min_length=6.0, fmax=1e-3, max_steps=300),
        conductivity=True,
        conductivity_maker=ThermalConductivityMaker(
            supercell_matrix=[1, 1, 1],
            fc2_supercell_matrix=[2, 2, 2],
            mesh=[4, 4, 4],
            temperatures=[300.0],
            fmax=1e-3,
        ),
    )
    return ScreeningMaker(**{**settings, **overrides})
