"""One batched state for every step loop: structures as flat arrays, torch-sim's layout.

A state holds B structures with N atoms in all. Per-atom fields are (N, ...) arrays, with
``system`` (N,) the structure index of each atom; per-structure fields are (B, ...) arrays or
B-tuples of objects. Which fields are per-atom is declared once (``PER_ATOM``), so joining two
states (``concat``) and keeping some of a state's structures (``take``) are written once, for
every state built on this one (``RelaxState``, ``MDState``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar, Self

import numpy as np


@dataclass(frozen=True)
class SystemState:
    """The fields every batched state has.

    Attributes
    ----------
    numbers
        (N,) atomic numbers.
    system
        (N,) index of each atom's structure, 0..B-1, atoms of one structure contiguous.
    """

    numbers: np.ndarray
    system: np.ndarray

    #: The per-atom fields (every other field is per structure).
    PER_ATOM: ClassVar[tuple[str, ...]] = ("numbers", "system")
    #: A per-structure field whose length is B (a state with no structure still has one).
    COUNTED_BY: ClassVar[str | None] = None

    @property
    def n_structures(self) -> int:
        """B, the number of structures."""
        if self.COUNTED_BY is not None:
            return len(getattr(self, self.COUNTED_BY))
        return int(self.system.max(initial=-1)) + 1

    @property
    def counts(self) -> np.ndarray:
        """(B,) atoms per structure."""
        return np.bincount(self.system, minlength=self.n_structures)

    def concat(self, other: Self) -> Self:
        """One state holding the structures of ``self`` then those of ``other``."""
        if self.n_structures == 0:
            return other
        if other.n_structures == 0:
            return self
        out = {}
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if f.name == "system":
                out[f.name] = np.concatenate([a, b + self.n_structures])
            elif isinstance(a, tuple):
                out[f.name] = a + b
            else:
                out[f.name] = np.concatenate([a, b])
        return type(self)(**out)

    def take(self, keep: np.ndarray) -> Self:
        """The state of the structures where ``keep`` (B,) is True, renumbered from 0."""
        keep = np.asarray(keep, dtype=bool)
        atom_keep = keep[self.system]
        renumber = np.cumsum(keep) - 1
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "system":
                out[f.name] = renumber[value[atom_keep]]
            elif f.name in self.PER_ATOM:
                out[f.name] = value[atom_keep]
            elif isinstance(value, tuple):
                out[f.name] = tuple(v for v, k in zip(value, keep, strict=True) if k)
            else:
                out[f.name] = value[keep]
        return type(self)(**out)
