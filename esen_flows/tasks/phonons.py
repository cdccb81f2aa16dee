"""Phonons of a batch of structures: symmetric relaxation, phonopy displacements evaluated in
batches across all structures, force constants, analysis, one document per structure.

Stored results are reused (key = structure, potential checksum, settings); each structure's
document is written as soon as its chunk finishes, so an interrupted job loses at most one chunk.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import spglib
from ase import Atoms
from jobflow import JobStore
from phonopy import Phonopy
from pymatgen.core import Structure
from tqdm.auto import tqdm

from esen_flows.analysis.phonons import (
    DEFAULT_MESH,
    GAMMA_ACOUSTIC_TOLERANCE,
    band_path_qpoints,
    band_structure,
    dynamic_stability,
    run_mesh,
    thermal_properties,
    total_dos,
)
from esen_flows.dynamics.phonons import (
    PHONOPY_SYMPREC,
    build_phonopy,
    compute_force_constants,
    phonopy_yaml,
    supercell_for_length,
)
from esen_flows.dynamics.relax import relax_structures
from esen_flows.io import UnreadableInput, get_label, to_atoms, to_structure
from esen_flows.potentials import Potential, batch_budget
from esen_flows.schemas import PhononDocument, ThermalProperties
from esen_flows.stores import find_documents, save_data, save_documents
from esen_flows.tasks.relax import RelaxSettings, _base_fields, _problem, input_key, precision

#: A structure's own supercell matrix, in its ``properties``.
SUPERCELL_PROPERTY = "supercell_matrix"

#: Displaced supercells' atoms per chunk, in multiples of the batch budget: after each chunk the
#: finished structures are written to the store.
CHUNK_BUDGETS = 8


@dataclass(frozen=True)
class PhononSettings:
    """Settings of a phonon calculation; all enter the result key.

    Attributes
    ----------
    relax
        Relax first (FIRE, Frechet cell filter, space group kept as ASE's ``FixSymmetry``).
    fmax
        Force and cell-force threshold of that relaxation, eV/A.
    max_steps
        Its step limit (an unconverged relaxation goes on to phonons and is flagged).
    symprec
        Tolerance (A) for the space group kept in the relaxation; the cell is symmetrised to it
        exactly first, so phonopy then finds the same group at ``phonopy_symprec``.
    supercell_matrix
        (3, 3) integer supercell matrix; None: diagonal, from ``min_length``.
    min_length
        Smallest face-to-face width of the supercell (A) when no matrix is given.
    displacement
        phonopy's displacement distance, A.
    phonopy_symprec
        phonopy's symmetry tolerance, A.
    mesh
        q-mesh of the thermal properties and the stability check: a length (A, phonopy's
        convention) or three numbers; Gamma-centred.
    dos_mesh
        q-mesh of the DOS (tetrahedron method), coarser by default: the DOS is for plots, and
        its cost grows with q-points times frequency points (seconds per structure at 100).
    t_min, t_max, t_step
        Temperatures of the thermal properties, K.
    band_points
        q-points per segment of the band path.
    gamma_tolerance
        Acoustic modes at Gamma may reach -``gamma_tolerance`` THz and stay "stable".
    """

    relax: bool = True
    fmax: float = 1.0e-4
    max_steps: int = 1000
    symprec: float = 1.0e-3
    supercell_matrix: Any = None  # 3 integers or 3x3, kept as a 3x3 tuple of ints
    min_length: float = 15.0
    displacement: float = 0.01
    phonopy_symprec: float = PHONOPY_SYMPREC
    mesh: float | tuple[int, int, int] = DEFAULT_MESH
    dos_mesh: float | tuple[int, int, int] = 50.0
    t_min: float = 0.0
    t_max: float = 1000.0
    t_step: float = 10.0
    band_points: int = 51
    gamma_tolerance: float = GAMMA_ACOUSTIC_TOLERANCE

    def __post_init__(self) -> None:
        if self.supercell_matrix is not None:
            try:
                matrix = np.asarray(self.supercell_matrix, dtype=float)
            except (TypeError, ValueError):
                matrix = np.zeros(0)
            if matrix.shape == (3,):
                matrix = np.diag(matrix)
            if matrix.shape != (3, 3) or not np.allclose(matrix, np.rint(matrix)):
                raise ValueError(
                    f"supercell_matrix must be 3 integers or a 3x3 integer matrix, got "
                    f"{self.supercell_matrix!r}"
                )
            if abs(np.linalg.det(matrix)) < 0.5:
                raise ValueError(f"supercell_matrix {self.supercell_matrix!r} is singular")
            object.__setattr__(self, "supercell_matrix", tuple(map(tuple, matrix.astype(int))))
        for name in ("displacement", "min_length", "fmax", "t_step"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.t_max < self.t_min:
            raise ValueError(f"t_max ({self.t_max}) is below t_min ({self.t_min})")

    def as_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict (relaxation settings only when relaxing)."""
        out = asdict(self)
        out["task"] = "phonon"
        if out["supercell_matrix"] is not None:
            out["supercell_matrix"] = [list(r) for r in out["supercell_matrix"]]
        for name in ("mesh", "dos_mesh"):
            if isinstance(out[name], tuple):
                out[name] = list(out[name])
        if not self.relax:
            for name in ("fmax", "max_steps", "symprec"):
                out.pop(name)
        return out


def _spacegroup(atoms: Atoms, symprec: float) -> str | None:
    cell = (atoms.cell.array, atoms.get_scaled_positions(), atoms.numbers)
    try:
        return spglib.get_spacegroup(cell, symprec=symprec)
    except Exception:
        return None


def run_phonons(
    items: Sequence[Structure | UnreadableInput],
    potential: Potential,
    settings: PhononSettings,
    store: JobStore | None = None,
    retry_failed: bool = False,
    desc: str = "phonons",
) -> list[PhononDocument]:
    """Phonons of every structure in ``items``; one document per input, in input order.

    The relaxations run as one batched FIRE; then the displaced supercells of all structures
    of a chunk are evaluated together (``compute_force_constants``), the chunk's documents
    written, and the next chunk started. A structure that fails (bad input, relaxation or
    evaluation error, NaN) gets a ``failed`` document; one with imaginary modes is a result.
    """
    base = {**settings.as_dict(), "dtype": precision(potential)}
    sdicts = [_own_settings(item, base) for item in items]
    keys = [input_key(item, potential, sd) for item, sd in zip(items, sdicts, strict=True)]
    labels = [get_label(item) or f"input-{i}" for i, item in enumerate(items)]
    docs: list[PhononDocument | None] = [None] * len(items)
    if store is not None:
        found = {
            (d.key, d.label): d for d in find_documents(store, "phonon", keys=sorted(set(keys)))
        }
        for i, (key, label) in enumerate(zip(keys, labels, strict=True)):
            doc = found.get((key, label))
            if doc is not None and not (retry_failed and doc.status == "failed"):
                docs[i] = doc

    def fields(i: int) -> dict[str, Any]:
        out = _base_fields(labels[i], keys[i], potential, sdicts[i])
        item = items[i]
        if isinstance(item, Structure) and len(item):
            out.update(
                formula=item.composition.reduced_formula,
                chemsys=item.composition.chemical_system,
                n_sites=len(item),
                input_structure=item,
            )
        return out

    def fail(i: int, reason: str) -> None:
        docs[i] = PhononDocument(**fields(i), status="failed", reason=reason)
        if store is not None:
            save_documents(store, [docs[i]])

    todo: list[int] = []
    for i, item in enumerate(items):
        if docs[i] is not None:
            continue
        if isinstance(item, UnreadableInput):
            fail(i, item.reason)
            continue
        problem = _problem(item, potential, RelaxSettings())
        if problem:
            fail(i, f"{labels[i]}: {problem}")
        else:
            todo.append(i)
    if not todo:
        return docs  # type: ignore[return-value]

    start = {i: time.perf_counter() for i in todo}
    cells: dict[int, Atoms] = {i: to_atoms(items[i]) for i in todo}
    relax_info: dict[int, dict[str, Any]] = {}
    for i in todo:
        relax_info[i] = {"spacegroup_input": _spacegroup(cells[i], settings.symprec)}
    if settings.relax:
        bar = tqdm(total=len(todo), desc=f"{desc}: relax", unit="structure", disable=None)
        try:
            results = relax_structures(
                potential,
                [cells[i] for i in todo],
                fmax=settings.fmax,
                max_steps=settings.max_steps,
                relax_cell=True,
                symmetry=True,
                symprec=settings.symprec,
                progress=bar.update,
            )
        finally:
            bar.close()
        for i, result in zip(list(todo), results, strict=True):
            if result.status == "failed":
                fail(i, result.reason or f"{labels[i]}: relaxation failed")
                todo.remove(i)
                continue
            cells[i] = result.atoms
            relax_info[i].update(
                relaxed=True,
                relax_converged=result.status == "converged",
                relax_steps=result.n_steps,
                relax_max_force=result.max_force,
            )

    def finish(chunk: list[int]) -> None:
        """Force constants of a chunk's structures (one batched evaluation of all their
        supercells), then each one's analysis, document and force constants in the store."""
        errors = compute_force_constants(
            potential,
            [phonons[i] for i in chunk],
            labels=[labels[i] for i in chunk],
            progress=bar.update,
        )
        for i, error in zip(chunk, errors, strict=True):
            phonon = phonons.pop(i)  # the chunk's memory goes with it
            if error is not None:
                fail(i, error)
                continue
            try:
                doc = _analyse(phonon, settings, fields(i))
            except Exception as exc:
                fail(i, f"{labels[i]}: phonon analysis failed ({type(exc).__name__}: {exc})")
                continue
            structure = to_structure(cells[i])
            structure.properties = dict(getattr(items[i], "properties", None) or {})
            docs[i] = doc.model_copy(
                update={
                    **relax_info[i],
                    "structure": structure,
                    "spacegroup": _spacegroup(cells[i], settings.phonopy_symprec),
                    "wall_time": time.perf_counter() - start[i],
                }
            )
            if store is not None:
                save_data(store, "phonopy", keys[i], labels[i], {"yaml": phonopy_yaml(phonon)})
                save_documents(store, [docs[i]])

    budget = batch_budget(potential)
    chunk: list[int] = []
    chunk_atoms = 0
    phonons: dict[int, Phonopy] = {}
    bar = tqdm(total=0, desc=f"{desc}: supercells", unit="supercell", disable=None)
    try:
        for i in todo:
            try:
                phonons[i] = _setup(cells[i], settings, sdicts[i]["supercell_matrix"])
            except Exception as exc:
                fail(i, f"{labels[i]}: phonopy set-up failed ({type(exc).__name__}: {exc})")
                continue
            n_cells = len(phonons[i].supercells_with_displacements)
            bar.total += n_cells
            bar.refresh()
            chunk.append(i)
            chunk_atoms += n_cells * len(phonons[i].supercell)
            if chunk_atoms >= CHUNK_BUDGETS * budget.max_atoms:
                finish(chunk)
                chunk, chunk_atoms = [], 0
        if chunk:
            finish(chunk)
    finally:
        bar.close()
    return docs  # type: ignore[return-value]


def checked_supercell(matrix: Any) -> list[list[int]]:
    """A supercell matrix (3 integers or 3x3) as a 3x3 list of ints; ``ValueError`` if bad."""
    return [list(r) for r in PhononSettings(supercell_matrix=matrix).supercell_matrix]


def _own_settings(item: Structure | UnreadableInput, base: dict[str, Any]) -> dict[str, Any]:
    """The settings of one structure: its own ``properties["supercell_matrix"]`` (set by
    ``PhononMaker.make(..., supercell_matrices=...)``) replaces the common one."""
    own = getattr(item, "properties", {}).get(SUPERCELL_PROPERTY)
    if own is None:
        return base
    return {**base, "supercell_matrix": checked_supercell(own)}


def _setup(atoms: Atoms, settings: PhononSettings, matrix: Any) -> Phonopy:
    """phonopy with displacements for one (relaxed) unit cell."""
    if matrix is None:
        matrix = supercell_for_length(atoms.cell.array, settings.min_length)
    return build_phonopy(
        atoms, matrix, displacement=settings.displacement, symprec=settings.phonopy_symprec
    )


def _mesh(mesh: float | tuple[int, int, int]) -> float | list[int]:
    return list(mesh) if isinstance(mesh, tuple) else mesh


def _analyse(phonon: Phonopy, settings: PhononSettings, fields: dict[str, Any]) -> PhononDocument:
    """Mesh, thermal properties, DOS, band structure and dynamic stability of one structure."""
    mesh = run_mesh(phonon, _mesh(settings.mesh))
    thermo = thermal_properties(phonon, settings.t_min, settings.t_max, settings.t_step)
    dos_mesh = run_mesh(phonon, _mesh(settings.dos_mesh))["mesh"]
    dos = total_dos(phonon)
    bs = band_structure(phonon, settings.band_points)
    stability = dynamic_stability(
        np.vstack([mesh["qpoints"], band_path_qpoints(bs)]),
        np.vstack([mesh["frequencies"], np.asarray(bs.bands).T]),
        gamma_tolerance=settings.gamma_tolerance,
    )
    return PhononDocument(
        **fields,
        supercell_matrix=np.asarray(phonon.supercell_matrix, dtype=int).tolist(),
        primitive_matrix=np.asarray(phonon.primitive_matrix, dtype=float).tolist(),
        n_displacements=len(phonon.supercells_with_displacements),
        n_supercell_atoms=len(phonon.supercell),
        mesh=[int(m) for m in mesh["mesh"]],
        dos_mesh=[int(m) for m in dos_mesh],
        thermal_properties=ThermalProperties(**thermo),
        band_structure=bs,
        dos=dos,
        dynamically_stable=stability.dynamically_stable,
        n_imaginary=stability.n_imaginary,
        min_frequency=stability.min_frequency,
        max_frequency=stability.max_frequency,
    )
