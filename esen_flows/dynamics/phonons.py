"""Harmonic force constants of many structures at once with phonopy (finite displacements).

phonopy's staged API, with the forces of every displaced supercell of every structure evaluated
as batches: ``build_phonopy`` (supercell and displacements) -> ``displaced_supercells`` ->
``compute_force_constants`` (one ``evaluate_batched`` over all of them, then phonopy's force
constants, symmetrised). No jobflow, no documents: what comes out is phonopy's own ``Phonopy``
object, so anything phonopy can do next stays available.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from ase import Atoms
from phonopy import Phonopy
from phonopy.structure.atoms import PhonopyAtoms
from phonopy.structure.cells import get_primitive_matrix_with_auto
from pymatgen.core import Structure

from esen_flows.dynamics.evaluate import evaluate_batched
from esen_flows.io import to_atoms
from esen_flows.potentials import BatchBudget, Potential

#: phonopy's default symmetry tolerance (A)
PHONOPY_SYMPREC = 1.0e-5


def to_phonopy_atoms(atoms: Atoms | Structure) -> PhonopyAtoms:
    """A ``PhonopyAtoms`` with the same cell (A), species and fractional positions (phonopy's
    own masses, as phonopy run on a file would use)."""
    atoms = to_atoms(atoms) if isinstance(atoms, Structure) else atoms
    return PhonopyAtoms(
        symbols=atoms.get_chemical_symbols(),
        cell=np.asarray(atoms.cell.array, dtype=float),
        scaled_positions=atoms.get_scaled_positions(),  # wrapped into [0, 1), as users do
    )


def from_phonopy_atoms(cell: PhonopyAtoms) -> Atoms:
    """An ASE ``Atoms`` (periodic) from a ``PhonopyAtoms``."""
    return Atoms(
        symbols=list(cell.symbols),
        cell=np.asarray(cell.cell),
        scaled_positions=np.asarray(cell.scaled_positions),
        pbc=True,
    )


def supercell_for_length(cell: np.ndarray, min_length: float) -> np.ndarray:
    """The diagonal supercell matrix whose cell is at least ``min_length`` (A) thick in every
    direction: n_i = ceil(min_length / w_i), w_i the distance between the cell's two faces
    spanned by the other two lattice vectors (V / |a_j x a_k|). Every periodic image of an atom
    is then at least ``min_length`` away, the condition the force constants' range needs.

    Parameters
    ----------
    cell
        Lattice vectors as rows, (3, 3), A.
    min_length
        Smallest allowed face-to-face width of the supercell, A.

    Returns
    -------
    numpy.ndarray
        (3, 3) integer diagonal matrix.
    """
    if not min_length > 0:
        raise ValueError(f"min_length must be positive, got {min_length}")
    cell = np.asarray(cell, dtype=float)
    volume = abs(float(np.linalg.det(cell)))
    widths = [
        volume / np.linalg.norm(np.cross(cell[(i + 1) % 3], cell[(i + 2) % 3])) for i in range(3)
    ]
    return np.diag([max(1, math.ceil(min_length / w - 1e-9)) for w in widths])


def build_phonopy(
    atoms: Atoms | Structure,
    supercell_matrix: Sequence[Sequence[int]] | np.ndarray,
    displacement: float = 0.01,
    symprec: float = PHONOPY_SYMPREC,
    primitive_matrix: str | Sequence[Sequence[float]] | None = "auto",
    is_plusminus: str | bool = "auto",
    n_snapshots: int | str | None = None,
    random_seed: int = 0,
) -> Phonopy:
    """A ``Phonopy`` object of ``atoms`` with its displacements generated.

    Parameters
    ----------
    atoms
        The unit cell (relaxed: phonopy's force constants assume forces vanish at rest).
    supercell_matrix
        (3, 3) integer matrix (or 3 diagonal entries) of the supercell in the unit cell's
        lattice vectors.
    displacement
        Displacement distance, A (phonopy's default 0.01).
    symprec
        Symmetry tolerance, A (phonopy's default 1e-5).
    primitive_matrix
        phonopy's ``primitive_matrix`` ("auto": found from the symmetry at ``symprec``, as
        phonopy 4 does by default).
    is_plusminus
        phonopy's choice of +/- displacement pairs ("auto": where symmetry does not supply the
        opposite one); with random displacements, True adds each one reversed.
    n_snapshots
        None: phonopy's systematic single displacements. A number or ``"auto"`` (phonopy's
        estimate from the symmetry-independent force constants): that many supercells with
        every atom displaced by ``displacement`` in a random direction (a type-II dataset,
        fitted with symfc by ``set_forces``).
    random_seed
        Seed of the random directions (same seed, same supercells).
    """
    unitcell = to_phonopy_atoms(atoms)
    if primitive_matrix is None or primitive_matrix == "auto":  # resolved here, and stated
        primitive_matrix = get_primitive_matrix_with_auto(unitcell, "auto", symprec=symprec)
    phonon = Phonopy(
        unitcell,
        supercell_matrix=np.asarray(supercell_matrix, dtype=int),
        primitive_matrix=primitive_matrix,
        symprec=symprec,
    )
    if n_snapshots is None:
        phonon.generate_displacements(distance=displacement, is_plusminus=is_plusminus)
    else:
        phonon.generate_displacements(
            distance=displacement,
            number_of_snapshots=n_snapshots,
            random_seed=random_seed,
            is_plusminus=is_plusminus is True,
        )
    return phonon


def is_random_dataset(dataset: dict | None) -> bool:
    """True for a type-II (random-displacement) dataset: every atom displaced per supercell."""
    return bool(dataset) and "displacements" in dataset


def count_displacements(phonon: Phonopy) -> int:
    """Displaced supercells of ``phonon``'s dataset (systematic or random)."""
    dataset = phonon.dataset or {}
    if is_random_dataset(dataset):
        return len(dataset["displacements"])
    return len(dataset.get("first_atoms", []))


def displaced_supercells(phonon: Phonopy) -> list[Atoms]:
    """The supercells with one atom displaced, in phonopy's order, as ASE ``Atoms``."""
    cells = phonon.supercells_with_displacements
    if cells is None:
        raise ValueError("this Phonopy object has no displacements: call build_phonopy first")
    return [from_phonopy_atoms(c) for c in cells]


def set_forces(phonon: Phonopy, forces: Sequence[np.ndarray], symmetrize: bool = True) -> None:
    """Give phonopy the forces (eV/A) of its displaced supercells and produce the force
    constants (compact, phonopy's default), symmetrised (translational invariance and index
    permutation: the acoustic sum rule) unless ``symmetrize`` is False."""
    phonon.forces = np.asarray(forces, dtype=float)
    if is_random_dataset(phonon.dataset):  # symfc: symmetries and sum rules by construction
        phonon.produce_force_constants(
            calculate_full_force_constants=False, fc_calculator="symfc", show_drift=False
        )
        return
    phonon.produce_force_constants(calculate_full_force_constants=False, show_drift=False)
    if symmetrize:
        phonon.symmetrize_force_constants(show_drift=False)


def evaluate_displaced(
    potential: Potential,
    cell_sets: Sequence[Sequence[Atoms | None]],
    labels: Sequence[str],
    what: str = "displaced supercell",
    budget: BatchBudget | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[list[np.ndarray]], list[str | None]]:
    """Forces (eV/A) of several structures' displaced supercells, all evaluated together in
    batches filling the potential's memory budget (across structures).

    Parameters
    ----------
    cell_sets
        Per structure, its supercells; None stands for one phono3py leaves out (a pair beyond
        its cutoff distance) and gets zero forces without an evaluation.
    labels
        Names for error messages.
    what
        What a supercell is called in error messages.

    Returns
    -------
    forces, errors
        Per structure, its (n_atoms, 3) force arrays in order, and None or why one of its
        supercells could not be used (its forces are then incomplete).
    """
    cells: list[Atoms] = []
    owner: list[tuple[int, int]] = []
    forces: list[list[np.ndarray]] = []
    for i, cell_set in enumerate(cell_sets):
        n = next((len(c) for c in cell_set if c is not None), 0)
        forces.append([np.zeros((n, 3)) for _ in cell_set])  # left-out ones stay zero
        for k, cell in enumerate(cell_set):
            if cell is not None:
                cells.append(cell)
                owner.append((i, k))
    outcomes = evaluate_batched(potential, cells, budget=budget, progress=progress)
    errors: list[str | None] = [None] * len(cell_sets)
    for cell, (i, k), out in zip(cells, owner, outcomes, strict=True):
        problem = out.problem(len(cell), with_stress=False)
        if problem is not None:
            if errors[i] is None:
                errors[i] = f"{labels[i]}: {what} {k + 1}: {problem}"
        else:
            forces[i][k] = np.asarray(out.forces, dtype=float)
    return forces, errors


def compute_force_constants(
    potential: Potential,
    phonons: Sequence[Phonopy],
    labels: Sequence[str] | None = None,
    symmetrize: bool = True,
    budget: BatchBudget | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[str | None]:
    """Evaluate the displaced supercells of all ``phonons`` together (batches filling the
    potential's memory budget, across structures) and produce each one's force constants.

    Parameters
    ----------
    potential
        Forces of the displaced supercells (eV/A).
    phonons
        ``Phonopy`` objects with displacements (``build_phonopy``); their force constants are set
        in place.
    labels
        Names for error messages (default: the index).
    symmetrize
        Symmetrise the force constants (``set_forces``).
    budget
        Batch budget; None: the potential's own.
    progress
        Called with the number of supercells just evaluated.

    Returns
    -------
    list
        Per structure, None when its force constants are set, else why not: one bad supercell
        fails its own structure only.
    """
    labels = list(labels) if labels is not None else [f"structure {i}" for i in range(len(phonons))]
    forces, errors = evaluate_displaced(
        potential,
        [displaced_supercells(p) for p in phonons],
        labels,
        budget=budget,
        progress=progress,
    )
    for i, phonon in enumerate(phonons):
        if errors[i] is None:
            try:
                set_forces(phonon, forces[i], symmetrize=symmetrize)
            except Exception as exc:  # phonopy's own checks (shapes, symmetry)
                errors[i] = f"{labels[i]}: force constants failed ({type(exc).__name__}: {exc})"
    return errors


def phonopy_yaml(phonon: Phonopy, force_constants: bool = True) -> str:
    """The text of ``phonopy_params.yaml`` for ``phonon``: cells, supercell and primitive
    matrices, the displacements with their forces, and (``force_constants``) the force
    constants."""
    return str(phonon.to_phonopy_yaml(settings={"force_constants": force_constants}))


def phonopy_from_yaml(text: str) -> Phonopy:
    """A ``Phonopy`` object from ``phonopy_yaml``'s text, with its force constants as stored
    (not recomputed or re-symmetrised)."""
    import io

    import phonopy

    return phonopy.load(io.StringIO(text), produce_fc=False, symmetrize_fc=False)
