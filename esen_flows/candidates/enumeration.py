"""Enumeration of ordered derivative superstructures of the fcc, bcc and hcp parent lattices:
Hermite-normal-form supercells reduced by the parent's symmetry, and site decorations reduced by
the induced site permutations and internal translations (``esen_flows.candidates``)."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
from pymatgen.core import Composition, Lattice, Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

#: Experimental fcc lattice constants (Angstrom) used for Vegard's law.
FCC_LATTICE_CONSTANTS: dict[str, float] = {"Cu": 3.61, "Ag": 4.09, "Au": 4.08, "Pd": 3.89}

#: Parent lattices, in output order.
PARENTS: tuple[str, ...] = ("fcc", "bcc", "hcp")

#: Largest HNF index (supercell size in parent primitive cells) enumerated per parent.
#: The effective index is also limited by ``max_atoms``.
MAX_INDEX: dict[str, int] = {"fcc": 8, "bcc": 6, "hcp": 4}

#: Ideal hcp axial ratio.
HCP_C_OVER_A = 1.633

DEFAULT_MAX_CANDIDATES = 250

_SYMPREC = 1e-3
_TOL = 1e-6


@dataclass(frozen=True)
class _Parent:
    """A parent lattice with unit volume per atom and its space-group operations."""

    name: str
    lattice: np.ndarray  # rows are lattice vectors, volume per atom = 1
    basis: np.ndarray  # fractional coordinates of the basis atoms, shape (nb, 3)
    rotations: tuple[np.ndarray, ...]  # integer rotation matrices acting on frac columns
    translations: tuple[np.ndarray, ...]  # fractional translations of the operations


@dataclass(frozen=True)
class _Candidate:
    """An abstract decorated supercell, cheap to store before building a Structure."""

    parent: str
    hnf: tuple[int, ...]  # flattened 3x3 HNF matrix
    elements: tuple[str, ...]  # chemical system, sorted
    coloring: tuple[int, ...]  # element index per supercell site

    @property
    def composition(self) -> Composition:
        """Composition of the decorated supercell."""
        counts = Counter(self.coloring)
        return Composition({self.elements[i]: n for i, n in counts.items()})

    @property
    def sort_key(self) -> tuple:
        """Deterministic ordering key."""
        return (
            len(self.elements),
            self.elements,
            PARENTS.index(self.parent),
            len(self.coloring),
            self.composition.reduced_formula,
            self.hnf,
            self.coloring,
        )


# --------------------------------------------------------------------------------------
# Parent lattices
# --------------------------------------------------------------------------------------


def _parent_cell(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Return the primitive lattice (rows) and basis of a parent with unit volume per atom."""
    if name == "fcc":
        a = 4.0 ** (1.0 / 3.0)  # a^3 / 4 = 1
        lattice = 0.5 * a * np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
        basis = np.zeros((1, 3))
    elif name == "bcc":
        a = 2.0 ** (1.0 / 3.0)  # a^3 / 2 = 1
        lattice = 0.5 * a * np.array([[-1.0, 1.0, 1.0], [1.0, -1.0, 1.0], [1.0, 1.0, -1.0]])
        basis = np.zeros((1, 3))
    elif name == "hcp":
        # Cell volume sqrt(3)/2 a^2 c = 2 (two atoms), c = HCP_C_OVER_A * a.
        a = (4.0 / (math.sqrt(3.0) * HCP_C_OVER_A)) ** (1.0 / 3.0)
        lattice = Lattice.hexagonal(a, HCP_C_OVER_A * a).matrix
        basis = np.array([[1.0 / 3.0, 2.0 / 3.0, 0.25], [2.0 / 3.0, 1.0 / 3.0, 0.75]])
    else:
        raise ValueError(f"Unknown parent lattice {name!r}; expected one of {PARENTS}.")
    return np.asarray(lattice, dtype=float), basis


@cache
def _parent(name: str) -> _Parent:
    """Build a parent lattice together with its space-group operations."""
    lattice, basis = _parent_cell(name)
    structure = Structure(lattice, ["X0+"] * len(basis), basis)
    ops = SpacegroupAnalyzer(structure, symprec=_SYMPREC).get_symmetry_operations()
    rotations = tuple(np.rint(op.rotation_matrix).astype(int) for op in ops)
    translations = tuple(np.asarray(op.translation_vector, dtype=float) for op in ops)
    return _Parent(name, lattice, basis, rotations, translations)


# --------------------------------------------------------------------------------------
# Superlattices
# --------------------------------------------------------------------------------------


def _hnf_matrices(n: int) -> Iterator[np.ndarray]:
    """Yield all lower-triangular Hermite normal form matrices of determinant ``n``.

    The supercell vectors, in fractional coordinates of the parent, are the columns of
    the matrix ``[[a, 0, 0], [b, c, 0], [d, e, f]]`` with ``a c f = n``, ``0 <= b < c``
    and ``0 <= d, e < f``.
    """
    for a in range(1, n + 1):
        if n % a:
            continue
        for c in range(1, n // a + 1):
            if (n // a) % c:
                continue
            f = n // (a * c)
            for b in range(c):
                for d in range(f):
                    for e in range(f):
                        yield np.array([[a, 0, 0], [b, c, 0], [d, e, f]], dtype=int)


def _is_integer(matrix: np.ndarray) -> bool:
    """Return whether all entries of ``matrix`` are integers (within tolerance)."""
    return bool(np.all(np.abs(matrix - np.rint(matrix)) < _TOL))


def _unique_hnfs(parent: _Parent, n: int) -> list[np.ndarray]:
    """Return one HNF per class of superlattices equivalent under the parent rotations."""
    unique: list[np.ndarray] = []
    unique_inv: list[np.ndarray] = []
    for hnf in _hnf_matrices(n):
        images = [rot @ hnf for rot in parent.rotations]
        if any(_is_integer(inv @ img) for inv in unique_inv for img in images):
            continue
        unique.append(hnf)
        unique_inv.append(np.linalg.inv(hnf))
    return unique


def _supercell_sites(parent: _Parent, hnf: np.ndarray) -> np.ndarray:
    """Return the parent-fractional coordinates of all sites in the supercell."""
    a, c, f = hnf[0, 0], hnf[1, 1], hnf[2, 2]
    shifts = np.array(list(itertools.product(range(a), range(c), range(f))), dtype=float)
    return np.array([shift + b for shift in shifts for b in parent.basis])


def _site_permutation(sites_super: np.ndarray, images_super: np.ndarray) -> np.ndarray:
    """Map each image position to the index of the supercell site it coincides with."""
    diff = images_super[:, None, :] - sites_super[None, :, :]
    diff -= np.rint(diff)
    match = np.all(np.abs(diff) < 1e-5, axis=2)
    if not np.all(match.sum(axis=1) == 1):
        raise RuntimeError("Symmetry operation does not map the supercell onto itself.")
    return match.argmax(axis=1)


def _site_permutations(parent: _Parent, hnf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return site permutations of the supercell.

    Returns
    -------
    group
        ``(n_perm, n_sites)`` permutations from the parent space-group operations that
        leave the superlattice invariant, combined with the internal translations.
    translations
        ``(n_trans - 1, n_sites)`` permutations from the non-trivial internal lattice
        translations only (used to detect superperiodic decorations).
    """
    hnf_inv = np.linalg.inv(hnf)
    sites = _supercell_sites(parent, hnf)
    sites_super = sites @ hnf_inv.T  # q = H^-1 p for every site
    a, c, f = hnf[0, 0], hnf[1, 1], hnf[2, 2]
    shifts = np.array(list(itertools.product(range(a), range(c), range(f))), dtype=float)

    perms: set[tuple[int, ...]] = set()
    for rot, trans in zip(parent.rotations, parent.translations, strict=True):
        if not _is_integer(hnf_inv @ rot @ hnf):
            continue
        rotated = sites @ rot.T + trans
        for shift in shifts:
            images = (rotated + shift) @ hnf_inv.T
            perms.add(tuple(_site_permutation(sites_super, images)))

    trans_perms = [
        _site_permutation(sites_super, (sites + shift) @ hnf_inv.T) for shift in shifts[1:]
    ]
    n_sites = len(sites)
    translation_array = (
        np.array(trans_perms, dtype=int) if trans_perms else np.zeros((0, n_sites), dtype=int)
    )
    return np.array(sorted(perms), dtype=int), translation_array


# --------------------------------------------------------------------------------------
# Decorations
# --------------------------------------------------------------------------------------


def _encode(colorings: np.ndarray, k: int) -> np.ndarray:
    """Encode colorings (last axis = sites) as base-``k`` integers."""
    n_sites = colorings.shape[-1]
    weights = k ** np.arange(n_sites - 1, -1, -1, dtype=np.int64)
    return colorings.astype(np.int64) @ weights


def _unique_colorings(group: np.ndarray, translations: np.ndarray, k: int) -> np.ndarray:
    """Return symmetry-inequivalent, non-superperiodic colorings using all ``k`` colors."""
    n_sites = group.shape[1]
    if n_sites < k:
        return np.zeros((0, n_sites), dtype=int)
    colorings = np.array(list(itertools.product(range(k), repeat=n_sites)), dtype=int)
    present = np.all([(colorings == color).any(axis=1) for color in range(k)], axis=0)
    colorings = colorings[present]

    codes = _encode(colorings, k)
    if len(translations):
        shifted = _encode(colorings[:, translations], k)  # (n_col, n_trans)
        colorings = colorings[~np.any(shifted == codes[:, None], axis=1)]
        codes = _encode(colorings, k)

    canonical = _encode(colorings[:, group], k).min(axis=1)
    keep = codes == canonical  # the orbit representative with the smallest code
    return colorings[keep]


def _enumerate(elements: Sequence[str], max_atoms: int) -> list[_Candidate]:
    """Enumerate all symmetry-distinct binary and ternary candidates."""
    systems = [
        tuple(sorted(combo))
        for k in (2, 3)
        for combo in itertools.combinations(sorted(set(elements)), k)
    ]
    candidates: list[_Candidate] = []
    for name in PARENTS:
        parent = _parent(name)
        n_basis = len(parent.basis)
        max_index = min(MAX_INDEX[name], max_atoms // n_basis)
        for n in range(1, max_index + 1):
            for hnf in _unique_hnfs(parent, n):
                group, translations = _site_permutations(parent, hnf)
                hnf_key = tuple(int(x) for x in hnf.ravel())
                for k in sorted({len(system) for system in systems}):
                    colorings = _unique_colorings(group, translations, k)
                    for system in (s for s in systems if len(s) == k):
                        candidates.extend(
                            _Candidate(name, hnf_key, system, tuple(int(x) for x in col))
                            for col in colorings
                        )
    return candidates


# --------------------------------------------------------------------------------------
# Structures
# --------------------------------------------------------------------------------------
