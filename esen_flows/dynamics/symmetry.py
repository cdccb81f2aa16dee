"""Space-group constraint for relaxations (what ASE's ``FixSymmetry`` does, for a batch).

spglib finds the operations of the starting structure; forces are symmetrised as vectors and
stresses as rank-2 tensors over them, and each optimiser step is symmetrised the same way, so a
relaxation cannot lower the symmetry it started with (phonon and conductivity preparation need
that: a broken symmetry changes the displacement set and the force constants).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import spglib
from ase import Atoms

from esen_flows.io import get_label


class SymmetryError(ValueError):
    """spglib found no usable symmetry for a structure (the message names it)."""


@dataclass(frozen=True)
class SymmetryOps:
    """The operations of a structure's space group, in fractional coordinates.

    Attributes
    ----------
    rotations
        (K, 3, 3) integer matrices acting on fractional coordinates (column vectors).
    translations
        (K, 3) fractional translations.
    permutations
        (K, n): operation k takes atom i onto atom ``permutations[k, i]``.
    number, symbol
        International space-group number and symbol.
    """

    rotations: np.ndarray
    translations: np.ndarray
    permutations: np.ndarray
    number: int
    symbol: str

    def __len__(self) -> int:
        return len(self.rotations)


def _cell(atoms: Atoms) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return atoms.cell.array, atoms.get_scaled_positions(wrap=False), atoms.numbers


def find_symmetry(atoms: Atoms, symprec: float = 0.01) -> SymmetryOps:
    """The space-group operations of ``atoms`` within ``symprec`` (A), with the atom map.

    Raises
    ------
    SymmetryError
        When spglib fails or an operation does not map the atoms onto each other.
    """
    label = get_label(atoms) or "structure"
    dataset = spglib.get_symmetry_dataset(_cell(atoms), symprec=symprec)
    if dataset is None:
        raise SymmetryError(f"{label}: spglib found no symmetry ({spglib.get_error_message()})")
    rotations = np.asarray(dataset.rotations, dtype=float)
    translations = np.asarray(dataset.translations, dtype=float)
    frac = atoms.get_scaled_positions(wrap=False)
    # image of every atom under every operation, matched to the nearest atom (periodically)
    images = np.einsum("kij,nj->kni", rotations, frac) + translations[:, None, :]
    diff = frac[None, None, :, :] - images[:, :, None, :]
    diff -= np.round(diff)
    dist = np.linalg.norm(diff @ atoms.cell.array, axis=-1)  # (K, n, n) in A
    permutations = dist.argmin(axis=2)
    worst = float(np.take_along_axis(dist, permutations[..., None], axis=2).max(initial=0.0))
    same_species = (atoms.numbers[permutations] == atoms.numbers[None, :]).all()
    bijective = all(len(set(p)) == len(atoms) for p in permutations)
    if not (same_species and bijective) or worst > 2 * symprec:
        raise SymmetryError(
            f"{label}: the operations spglib found do not map the atoms onto each other "
            f"(mismatch {worst:.3g} A at symprec {symprec})"
        )
    return SymmetryOps(
        rotations=rotations,
        translations=translations,
        permutations=permutations,
        number=int(dataset.number),
        symbol=str(dataset.international),
    )


def symmetrize_vectors(cell: np.ndarray, vectors: np.ndarray, ops: SymmetryOps) -> np.ndarray:
    """Average of a per-atom vector field (n, 3) over the group (forces, displacements).

    ``cell`` rows are the lattice vectors of the current cell.
    """
    scaled = vectors @ np.linalg.inv(cell)  # fractional components
    out = np.zeros_like(scaled)
    for rot, perm in zip(ops.rotations, ops.permutations, strict=True):
        out[perm] += scaled @ rot.T
    return (out / len(ops)) @ cell


def symmetrize_tensor(cell: np.ndarray, tensor: np.ndarray, ops: SymmetryOps) -> np.ndarray:
    """Average of a rank-2 Cartesian tensor (3, 3) over the group (stress, cell steps)."""
    inv = np.linalg.inv(cell)
    scaled = cell @ tensor @ cell.T
    avg = np.einsum("kji,jl,klm->im", ops.rotations, scaled, ops.rotations) / len(ops)
    return inv @ avg @ inv.T


def refine_symmetry(atoms: Atoms, symprec: float = 0.01, tight: float = 1e-5) -> Atoms:
    """A copy of ``atoms`` with the cell and positions made exactly symmetric.

    The cell becomes spglib's idealised standard cell turned back into the input's setting and
    orientation; each position becomes the average of its images under the group. Snapping
    can reveal a larger group within ``symprec``; the refinement repeats until the group found
    at ``tight`` (A) is the one found at ``symprec``.
    """
    label = get_label(atoms) or "structure"
    out = atoms.copy()
    for _ in range(4):
        dataset = spglib.get_symmetry_dataset(_cell(out), symprec=symprec)
        if dataset is None:
            raise SymmetryError(f"{label}: spglib found no symmetry ({spglib.get_error_message()})")
        p = np.asarray(dataset.transformation_matrix, dtype=float)
        rot = np.asarray(dataset.std_rotation_matrix, dtype=float)
        # (a_s b_s c_s) = (a b c) P^-1, rotated by R: undo both on the idealised standard lattice
        out.set_cell(p.T @ np.asarray(dataset.std_lattice) @ rot, scale_atoms=True)
        ops = find_symmetry(out, symprec)
        frac = out.get_scaled_positions(wrap=False)
        acc = np.zeros_like(frac)
        for r, t, perm in zip(ops.rotations, ops.translations, ops.permutations, strict=True):
            delta = frac @ r.T + t - frac[perm]
            delta -= np.round(delta)
            acc[perm] += frac[perm] + delta
        out.set_scaled_positions(acc / len(ops))
        exact = spglib.get_symmetry_dataset(_cell(out), symprec=tight)
        loose = spglib.get_symmetry_dataset(_cell(out), symprec=symprec)
        if exact is not None and loose is not None and exact.number == loose.number:
            return out
    raise SymmetryError(
        f"{label}: the structure could not be made exactly symmetric within {symprec} A"
    )
