"""A batch of periodic structures as flat tensors, and the packing of structures into batches."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from ase import Atoms

from esen_flows.packing import pack


@dataclass
class AtomsBatch:
    """A batch of periodic structures as flat tensors (torch-sim style: one system index/atom).

    Attributes
    ----------
    positions
        (N, 3) Angstrom.
    numbers
        (N,) atomic numbers.
    cell
        (B, 3, 3) lattice vectors as rows, Angstrom.
    system
        (N,) structure index of each atom (``system`` as in ``esen_flows.dynamics.state``).
    """

    positions: torch.Tensor
    numbers: torch.Tensor
    cell: torch.Tensor
    system: torch.Tensor

    @property
    def num_structures(self) -> int:
        return int(self.cell.shape[0])

    def select(self, structures: list[int]) -> AtomsBatch:
        """The sub-batch of consecutive ``structures`` (renumbered from 0)."""
        first, last = structures[0], structures[-1]
        mask = (self.system >= first) & (self.system <= last)
        return AtomsBatch(
            positions=self.positions[mask],
            numbers=self.numbers[mask],
            cell=self.cell[first : last + 1],
            system=self.system[mask] - first,
        )

    @classmethod
    def from_atoms(
        cls, atoms_list: Sequence[Atoms], dtype: torch.dtype = torch.float32, device: Any = "cpu"
    ) -> AtomsBatch:
        """Concatenate ASE ``Atoms`` (all periodic in 3D) into one batch."""
        for k, a in enumerate(atoms_list):
            if not all(a.pbc) or a.cell.rank < 3:
                label = a.info.get("label", f"structure {k}")
                raise ValueError(
                    f"{label}: eSEN here needs a 3D-periodic cell (pbc=True, 3 vectors)"
                )
        pos = np.concatenate([a.positions for a in atoms_list]) if atoms_list else np.zeros((0, 3))
        nums = np.concatenate([a.numbers for a in atoms_list]) if atoms_list else np.zeros(0)
        cell = np.stack([a.cell.array for a in atoms_list]) if atoms_list else np.zeros((0, 3, 3))
        counts = [len(a) for a in atoms_list]
        system = np.repeat(np.arange(len(atoms_list)), counts)
        return cls(
            positions=torch.as_tensor(pos, dtype=dtype, device=device),
            numbers=torch.as_tensor(nums, dtype=torch.long, device=device),
            cell=torch.as_tensor(cell, dtype=dtype, device=device),
            system=torch.as_tensor(system, dtype=torch.long, device=device),
        )


def pack_structures(sizes: Sequence[int], max_atoms: int | None) -> list[list[int]]:
    """Consecutive structure indices grouped so that each group has at most ``max_atoms``
    atoms (a structure larger than that is a group of its own). None: one group."""
    return pack(list(sizes), max_atoms)
