"""Lattice thermal conductivity of many structures with phono3py (finite displacements).

phono3py's staged API, with the forces of every displaced supercell of every structure evaluated
as batches: ``build_phono3py`` (supercells and displacements) -> ``compute_fc2`` (one
``evaluate_batched`` over all structures' fc2 supercells) -> ``mesh_frequencies`` (the
stability check, before any third-order work) -> ``compute_fc3`` -> ``conductivity``. What comes
out is phono3py's own ``Phono3py`` object and plain arrays; no jobflow, no documents.
"""

from __future__ import annotations

import importlib.util
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from phono3py import Phono3py
from phonopy.structure.cells import get_primitive_matrix_with_auto
from pymatgen.core import Structure

from esen_flows.dynamics.phonons import (
    PHONOPY_SYMPREC,
    evaluate_displaced,
    from_phonopy_atoms,
    to_phonopy_atoms,
)
from esen_flows.dynamics.phonons import (
    is_random_dataset as is_random,
)
from esen_flows.potentials import BatchBudget, Potential

#: phono3py's default displacement distance, A (phonopy's is 0.01).
PHONO3PY_DISPLACEMENT = 0.03
#: Methods of the Boltzmann equation: relaxation-time approximation and the direct solution.
METHODS = ("rta", "lbte")


def wigner_available() -> bool:
    """Whether the installed phono3py has the Wigner (Simoncelli-Marzari-Mauri 2019) solver,
    registered as ``transport_type="SMM19"`` since phono3py 4."""
    return importlib.util.find_spec("phono3py.conductivity.smm19") is not None


def build_phono3py(
    atoms: Atoms | Structure,
    supercell_matrix: Sequence[Sequence[int]] | np.ndarray,
    fc2_supercell_matrix: Sequence[Sequence[int]] | np.ndarray | None = None,
    displacement: float = PHONO3PY_DISPLACEMENT,
    symprec: float = PHONOPY_SYMPREC,
    primitive_matrix: str | Sequence[Sequence[float]] | None = "auto",
    cutoff_pair_distance: float | None = None,
    random: RandomDisplacements | None = None,
) -> Phono3py:
    """A ``Phono3py`` object of ``atoms`` with its fc3 (and fc2) displacements generated.

    Parameters
    ----------
    atoms
        The unit cell (relaxed).
    supercell_matrix
        (3, 3) integer supercell of the third-order force constants.
    fc2_supercell_matrix
        (3, 3) integer supercell of the second-order ones (phono3py's
        ``phonon_supercell_matrix``); None: the fc3 supercell (with its own fc2 displacements,
        so that fc2 and the stability check never wait for fc3 work).
    displacement
        Displacement distance, A (phono3py's default 0.03).
    symprec
        Symmetry tolerance, A (phono3py's default 1e-5).
    primitive_matrix
        "auto" (phono3py's default: found from the symmetry), resolved here and stated.
    cutoff_pair_distance
        phono3py's pair cutoff (A): atom pairs farther apart get no second displacement
        (their fc3 is zero). None: all pairs, phono3py's default.
    random
        Random displacements of every atom in each supercell (fitted with symfc) instead of
        phono3py's systematic single and pair displacements: far fewer supercells.
    """
    unitcell = to_phonopy_atoms(atoms)
    if primitive_matrix is None or primitive_matrix == "auto":
        primitive_matrix = get_primitive_matrix_with_auto(unitcell, "auto", symprec=symprec)
    if fc2_supercell_matrix is None:
        fc2_supercell_matrix = supercell_matrix
    ph3 = Phono3py(
        unitcell,
        supercell_matrix=np.asarray(supercell_matrix, dtype=int),
        phonon_supercell_matrix=np.asarray(fc2_supercell_matrix, dtype=int),
        primitive_matrix=primitive_matrix,
        symprec=symprec,
    )
    if random is None:
        ph3.generate_displacements(distance=displacement, cutoff_pair_distance=cutoff_pair_distance)
        return ph3
    factor = {} if random.factor is None else {"number_estimation_factor": random.factor}
    ph3.generate_displacements(
        distance=displacement,
        number_of_snapshots=random.n_fc3,
        random_seed=random.seed,
        is_plusminus=random.plusminus,
        **factor,
    )
    if random.n_fc2 == "systematic":  # small sets, fitted without symfc's set-up cost
        ph3.generate_fc2_displacements(distance=displacement)
        return ph3
    ph3.generate_fc2_displacements(
        distance=displacement,
        number_of_snapshots=random.n_fc2,
        random_seed=random.seed,
        is_plusminus=random.plusminus,
    )
    return ph3


@dataclass(frozen=True)
class RandomDisplacements:
    """Random-displacement force constants (phono3py's type-II datasets, fitted with symfc).

    Attributes
    ----------
    n_fc3, n_fc2
        Supercells for fc3 and fc2: a number, or ``"auto"`` (phono3py's estimate from the
        number of symmetry-independent force constants, times ``factor``); ``n_fc2`` may
        also be ``"systematic"``: phono3py's systematic fc2 set (a handful of supercells even
        for low symmetry, and no symfc fit, whose symmetry set-up costs seconds for large
        high-symmetry supercells).
    seed
        Seed of the random directions (same seed, same supercells, same result).
    plusminus
        Each displacement also with the opposite sign (twice the supercells; cancels the
        even-order error of each finite difference).
    factor
        phono3py's ``number_estimation_factor`` for ``"auto"`` fc3 (None: its default).
    """

    n_fc3: int | str = "auto"
    n_fc2: int | str = "auto"
    seed: int = 0
    plusminus: bool = False
    factor: float | None = None


def _as_atoms(cells: Sequence | None, what: str) -> list[Atoms | None]:
    if cells is None:
        raise ValueError(f"this Phono3py object has no {what}: call build_phono3py first")
    return [None if c is None else from_phonopy_atoms(c) for c in cells]


def fc2_supercells(ph3: Phono3py) -> list[Atoms | None]:
    """The displaced supercells of the second-order force constants, in phono3py's order."""
    return _as_atoms(ph3.phonon_supercells_with_displacements, "fc2 displacements")


def count_displacements(ph3: Phono3py) -> tuple[int, int]:
    """(fc2, fc3) supercells to evaluate, read from the displacement datasets without building
    the supercells (pairs beyond ``cutoff_pair_distance`` are not counted)."""
    fc2 = ph3.phonon_dataset
    fc2_count = len(fc2["displacements"] if is_random(fc2) else fc2["first_atoms"])
    if is_random(ph3.dataset):
        return fc2_count, len(ph3.dataset["displacements"])
    fc3 = 0
    for first in ph3.dataset["first_atoms"]:
        fc3 += 1 + sum(1 for s in first.get("second_atoms", []) if s.get("included", True))
    return fc2_count, fc3


def fc3_supercells(ph3: Phono3py) -> list[Atoms | None]:
    """The displaced supercells of the third-order force constants (single and pair
    displacements, None for pairs beyond the cutoff), in phono3py's order."""
    return _as_atoms(ph3.supercells_with_displacements, "displacements")


def _produce(ph3: Phono3py, order: int, forces: list[np.ndarray], symmetrize: bool) -> None:
    """Forces in, compact force constants out (symmetrised: translational invariance and index
    permutation, as Matbench Discovery does). Random displacements are fitted with symfc,
    whose force constants satisfy the symmetries and sum rules by construction."""
    if order == 2:
        ph3.phonon_forces = np.asarray(forces, dtype=float)
        if is_random(ph3.phonon_dataset):
            ph3.produce_fc2(is_compact_fc=True, fc_calculator="symfc")
            return
        ph3.produce_fc2(is_compact_fc=True)
        if symmetrize:
            ph3.symmetrize_fc2()
    else:
        ph3.forces = np.asarray(forces, dtype=float)
        if is_random(ph3.dataset):
            ph3.produce_fc3(is_compact_fc=True, fc_calculator="symfc")
            return
        ph3.produce_fc3(is_compact_fc=True)
        if symmetrize:
            ph3.symmetrize_fc3()


def _compute(
    order: int,
    potential: Potential,
    ph3s: Sequence[Phono3py],
    labels: Sequence[str] | None,
    symmetrize: bool,
    budget: BatchBudget | None,
    progress: Callable[[int], None] | None,
) -> list[str | None]:
    labels = list(labels) if labels is not None else [f"structure {i}" for i in range(len(ph3s))]
    sets = [(fc2_supercells if order == 2 else fc3_supercells)(p) for p in ph3s]
    forces, errors = evaluate_displaced(
        potential, sets, labels, what=f"fc{order} supercell", budget=budget, progress=progress
    )
    for i, ph3 in enumerate(ph3s):
        if errors[i] is None:
            try:
                _produce(ph3, order, forces[i], symmetrize)
            except Exception as exc:  # phono3py's own checks
                errors[i] = f"{labels[i]}: fc{order} failed ({type(exc).__name__}: {exc})"
    return errors


def compute_fc2(
    potential: Potential,
    ph3s: Sequence[Phono3py],
    labels: Sequence[str] | None = None,
    symmetrize: bool = True,
    budget: BatchBudget | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[str | None]:
    """Second-order force constants of all ``ph3s``: their fc2 supercells evaluated together
    (batches across structures), then phono3py's ``produce_fc2`` (compact), symmetrised.

    Returns, per structure, None or why it failed (one bad supercell fails its own structure).
    """
    return _compute(2, potential, ph3s, labels, symmetrize, budget, progress)


def compute_fc3(
    potential: Potential,
    ph3s: Sequence[Phono3py],
    labels: Sequence[str] | None = None,
    symmetrize: bool = True,
    budget: BatchBudget | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[str | None]:
    """Third-order force constants of all ``ph3s``, as ``compute_fc2`` does the second."""
    return _compute(3, potential, ph3s, labels, symmetrize, budget, progress)


def set_mesh(ph3: Phono3py, mesh: float | Sequence[int]) -> None:
    """phono3py's q-mesh: three numbers, or a length in A (phonopy's convention). A bare
    integer would be read by phono3py as a length, so three numbers stay three numbers."""
    ph3.mesh_numbers = float(mesh) if isinstance(mesh, int | float) else [int(m) for m in mesh]


def mesh_frequencies(ph3: Phono3py, mesh: float | Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies (THz) on phono3py's grid for ``mesh``, from fc2 alone: the q-points the
    conductivity sums over (all of them, Gamma first), as Matbench Discovery checks for
    imaginary modes before any third-order work.

    Returns
    -------
    qpoints, frequencies
        (n_q, 3) reduced coordinates; (n_q, n_bands) THz.
    """
    if ph3.fc2 is None:
        raise ValueError("no fc2 yet: call compute_fc2 first")
    set_mesh(ph3, mesh)
    ph3.init_phph_interaction()
    ph3.run_phonon_solver()
    freqs, _vectors, addresses = ph3.get_phonon_data()
    # QDinv maps grid addresses to reduced coordinates on any grid (also phono3py's
    # generalized regular grid, where addresses / D_diag would not)
    qpoints = np.asarray(addresses, dtype=float) @ np.asarray(ph3.grid.QDinv, dtype=float).T
    return qpoints, np.asarray(freqs, dtype=float)


@dataclass
class Conductivity:
    """phono3py's lattice thermal conductivity of one structure (first sigma: tetrahedron).

    Attributes
    ----------
    temperatures
        (n_T,) K.
    kappa
        (n_T, 6) W/(m K), Voigt order xx, yy, zz, yz, xz, xy: particle plus coherence when
        ``wigner``.
    kappa_particle
        (n_T, 6): the particle-like (Peierls-Boltzmann) part.
    kappa_coherence
        (n_T, 6): the wave-like coherence part (zeros without ``wigner``).
    mode_kappa
        (n_T, n_q, n_bands, 6): each irreducible q-point's and band's share, with its q-weight,
        so that ``mode_kappa.sum((1, 2)) / weights.sum() == kappa``; with ``wigner`` the
        coherence between bands s and s' is split between them in proportion to their heat
        capacities, as Matbench Discovery does.
    weights
        (n_q,) integer q-point weights (their sum is the number of mesh points).
    qpoints
        (n_q, 3) reduced coordinates of the irreducible q-points.
    frequencies
        (n_q, n_bands) THz.
    heat_capacity
        (n_T, n_q, n_bands) mode heat capacities, eV/K.
    gamma
        (n_T, n_q, n_bands) imaginary self-energy (half linewidth), THz.
    """

    temperatures: np.ndarray
    kappa: np.ndarray
    kappa_particle: np.ndarray
    kappa_coherence: np.ndarray
    mode_kappa: np.ndarray
    weights: np.ndarray
    qpoints: np.ndarray
    frequencies: np.ndarray
    heat_capacity: np.ndarray
    gamma: np.ndarray


def split_coherence(mode_kappa_matrix: np.ndarray, heat_capacity: np.ndarray) -> np.ndarray:
    """Per-mode conductivity from the band-pair matrix of the Wigner equation.

    ``mode_kappa_matrix`` (n_T, n_q, n_b, n_b, 6) holds the particle term on its diagonal and the
    coherence between bands s, s' off it; each pair's share goes to s in proportion
    2 C_s / (C_s + C_s'), (n_T, n_q, n_b) heat capacities (pairs of two zero heat capacities,
    the acoustic modes at Gamma, give nothing). Returns (n_T, n_q, n_b, 6).
    """
    cv = heat_capacity
    with np.errstate(divide="ignore", invalid="ignore"):
        share = 2.0 * cv[..., :, None] / (cv[..., :, None] + cv[..., None, :])
    share = np.nan_to_num(share, nan=0.0, posinf=0.0, neginf=0.0)
    return np.einsum("tqab,tqabv->tqav", share, mode_kappa_matrix)


def conductivity(
    ph3: Phono3py,
    mesh: float | Sequence[int],
    temperatures: Sequence[float],
    method: str = "rta",
    wigner: bool = False,
    isotope: bool = False,
    boundary_mfp: float | None = None,
) -> Conductivity:
    """Solve phono3py's Boltzmann (or Wigner) transport equation on ``mesh``.

    Parameters
    ----------
    ph3
        With fc2 and fc3 set.
    mesh
        Three numbers, or a length in A.
    temperatures
        K.
    method
        "rta" (relaxation-time approximation, phono3py's default) or "lbte" (direct solution).
    wigner
        Add the wave-like coherence term (phono3py's ``transport_type="SMM19"``).
    isotope
        Isotope scattering with the natural abundances phono3py knows.
    boundary_mfp
        Boundary mean free path, micrometres (None: none).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if wigner and not wigner_available():
        raise ValueError("this phono3py has no Wigner solver (transport_type 'SMM19')")
    if ph3.fc2 is None or ph3.fc3 is None:
        raise ValueError("fc2 and fc3 are needed: call compute_fc2 and compute_fc3 first")
    set_mesh(ph3, mesh)
    ph3.init_phph_interaction()
    ph3.run_thermal_conductivity(
        is_LBTE=method == "lbte",
        temperatures=np.asarray(temperatures, dtype=float),
        is_isotope=isotope,
        boundary_mfp=boundary_mfp,
        transport_type="SMM19" if wigner else None,
        log_level=0,
    )
    tc = ph3.thermal_conductivity
    kappa = np.asarray(tc.kappa)[0]
    heat_capacity = np.asarray(tc.mode_heat_capacities)
    if wigner:
        pairs = np.asarray(tc.mode_kappa_matrix)[0]  # diagonal: the particle term in the RTA
        diagonal = np.einsum("tqaav->tqav", pairs)
        coherence = pairs.copy()
        n_bands = pairs.shape[2]
        coherence[:, :, np.arange(n_bands), np.arange(n_bands)] = 0.0
        if method == "lbte":  # the particle part is the exact solution's, not the RTA's
            particle = np.asarray(tc.kappa_intra_exact)[0]
            diagonal = np.asarray(tc.mode_kappa)[0]
            # phono3py 4.10's LBTE calculator reports the particle part as ``kappa``
            kappa = particle + np.asarray(tc.kappa_inter)[0]
        else:
            particle = np.asarray(tc.kappa_intra)[0]
        mode = diagonal + split_coherence(coherence, heat_capacity)
    else:
        particle = kappa
        mode = np.asarray(tc.mode_kappa)[0]
    gamma = np.asarray(tc.gamma)[0] if tc.gamma is not None else np.zeros_like(heat_capacity)
    return Conductivity(
        temperatures=np.asarray(tc.temperatures, dtype=float),
        kappa=kappa,
        kappa_particle=particle,
        kappa_coherence=kappa - particle,
        mode_kappa=mode,
        weights=np.asarray(tc.grid_weights),
        qpoints=np.asarray(tc.qpoints),
        frequencies=np.asarray(tc.frequencies),
        heat_capacity=heat_capacity,
        gamma=gamma,
    )


def phono3py_yaml(ph3: Phono3py) -> str:
    """The text of ``phono3py_params.yaml``: cells, supercell and primitive matrices, and the
    fc2 and fc3 displacements with their forces (``phono3py.load`` rebuilds fc2 and fc3)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "phono3py_params.yaml"
        ph3.save(path)
        return path.read_text()


def phono3py_from_yaml(
    text: str, fc2: np.ndarray | None = None, fc3: np.ndarray | None = None
) -> Phono3py:
    """A ``Phono3py`` object from ``phono3py_yaml``'s text with the given force constants (as
    stored, not recomputed); one not given is produced from the forces (symmetrised), fc3 only
    when its forces are there (a structure found unstable has none)."""
    import phono3py

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "phono3py_params.yaml"
        path.write_text(text)
        ph3 = phono3py.load(path, produce_fc=False, log_level=0)
    if fc2 is not None:
        ph3.fc2 = np.asarray(fc2, dtype=float)
    else:
        ph3.produce_fc2(is_compact_fc=True)
        ph3.symmetrize_fc2()
    if fc3 is not None:
        ph3.fc3 = np.asarray(fc3, dtype=float)
    elif _has_fc3_forces(ph3):
        ph3.produce_fc3(is_compact_fc=True)
        ph3.symmetrize_fc3()
    return ph3


def _has_fc3_forces(ph3: Phono3py) -> bool:
    dataset = ph3.dataset or {}
    if "forces" in dataset:
        return True
    first = dataset.get("first_atoms") or []
    return bool(first) and "forces" in first[0]


def write_phono3py_files(ph3: Phono3py, folder: str | Path) -> list[Path]:
    """Write ``phono3py_params.yaml`` (cells, displacements, forces), ``fc2.hdf5`` and, when
    computed, ``fc3.hdf5`` into ``folder``: phono3py's own files, so that ``phono3py.load`` (or
    the ``phono3py`` command in that folder) continues from them."""
    from phono3py.file_IO import write_fc2_to_hdf5, write_fc3_to_hdf5

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / "phono3py_params.yaml"]
    paths[0].write_text(phono3py_yaml(ph3), encoding="utf-8")
    if ph3.fc2 is not None:
        paths.append(folder / "fc2.hdf5")
        write_fc2_to_hdf5(ph3.fc2, str(paths[-1]), p2s_map=ph3.phonon_primitive.p2s_map)
    if ph3.fc3 is not None:
        paths.append(folder / "fc3.hdf5")
        write_fc3_to_hdf5(ph3.fc3, filename=str(paths[-1]), p2s_map=ph3.primitive.p2s_map)
    return paths
