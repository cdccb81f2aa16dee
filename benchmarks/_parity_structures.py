"""The structures on which esen-flows is compared with fairchem (numpy + ASE only, so that
fairchem's own virtual environments can import it).

Triclinic cells of several elements from 1 to 200 atoms, cells whose edges lie exactly along
each axis, and a cell with more than 300 neighbours within the cutoff.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.build import bulk


def _random_cell(rng: np.random.Generator, symbols: list[str], cell, min_dist: float) -> Atoms:
    """Atoms at random positions in ``cell`` no closer than ``min_dist`` (periodic)."""
    atoms = Atoms(cell=cell, pbc=True)
    while len(atoms) < len(symbols):
        trial = atoms + Atoms(symbols[len(atoms)], scaled_positions=[rng.random(3)], cell=cell)
        trial.pbc = True
        if len(trial) == 1 or trial.get_distances(-1, range(len(trial) - 1), mic=True).min() > (
            min_dist
        ):
            atoms = trial
    return atoms


def parity_structures(seed: int = 7) -> list[Atoms]:
    """The comparison set, each with ``info["label"]``."""
    rng = np.random.default_rng(seed)
    out = []

    one = Atoms("Cu", positions=[[0.3, 0.2, 0.1]], pbc=True)
    one.cell = [[2.55, 0.0, 0.0], [0.85, 2.45, 0.0], [0.55, 0.75, 2.5]]
    one.info["label"] = "Cu1-triclinic"
    out.append(one)

    axes = Atoms("Na", positions=[[0.0, 0.0, 0.0]], cell=np.eye(3) * 2.9, pbc=True)
    axes.info["label"] = "Na1-cubic-edges-on-axes"
    out.append(axes)

    pair = Atoms("KCl", positions=[[0, 0, 0], [0, 1.6, 0]], cell=[3.2, 3.2, 3.2], pbc=True)
    pair.info["label"] = "KCl-tetragonal-edges-on-axes"
    out.append(pair)

    cell = np.array([[4.6, 0.0, 0.0], [1.1, 4.3, 0.0], [0.7, -0.9, 4.9]])
    tri = _random_cell(rng, ["Cu", "Au", "Ni", "Cu", "Au", "Ni", "Pd", "Cu", "O"], cell, 1.9)
    tri.info["label"] = "CuAuNiPdO-9-triclinic"
    out.append(tri)

    big = bulk("Cu", "fcc", a=3.7, cubic=True).repeat((5, 5, 2))
    big.symbols = rng.choice(["Cu", "Ag", "Pd", "Au"], size=len(big))
    big.positions += rng.normal(scale=0.06, size=big.positions.shape)
    big.set_cell(big.cell.array + np.array([[0, 0, 0], [0.4, 0, 0], [0.3, -0.2, 0]]), True)
    big.info["label"] = "CuAgPdAu-200-sheared"
    out.append(big)

    dense = Atoms(
        "LiBe", positions=[[0.1, 0.0, 0.0], [0.55, 0.62, 1.1]], cell=[1.1, 1.15, 2.3], pbc=True
    )
    dense.info["label"] = "LiBe-dense-over-300-neighbours"
    out.append(dense)
    return out
