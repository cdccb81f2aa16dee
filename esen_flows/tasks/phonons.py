"""Phonons of a batch of structures: symmetric relaxation, phonopy displacements evaluated in
batches across all structures, force constants, analysis, one document per structure.

Stored results are reused (key = structure, potential checksum, settings); each structure's
document is written as soon as its chunk finishes, so an interrupted job loses at most one chunk.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from ase import Atoms
from jobflow import JobStore
from monty.json import jsanitize
from phonopy import Phonopy
from pymatgen.core import Structure
from tqdm.auto import tqdm

from esen_flows.dynamics.phonon_properties import (
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
    supercell_for_length,
)
from esen_flows.io import UnreadableInput
from esen_flows.potentials import Potential, batch_budget
from esen_flows.schemas import PhononDocument, ThermalProperties
from esen_flows.stores import phonopy_record, save_data, save_documents
from esen_flows.tasks.lattice import chunks, prepare

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
    state = prepare(
        items,
        potential,
        settings,
        _own_settings,
        PhononDocument,
        settings.symprec,
        store=store,
        retry_failed=retry_failed,
        desc=desc,
    )
    phonons = state.build_each(
        lambda i: _setup(state.cells[i], settings, state.sdicts[i]["supercell_matrix"]),
        "phonopy set-up",
    )
    bar = tqdm(
        total=sum(len(p.dataset["first_atoms"]) for p in phonons.values()),  # not built yet
        desc=f"{desc}: supercells",
        unit="supercell",
        disable=None,
    )
    limit = CHUNK_BUDGETS * batch_budget(potential).max_atoms
    try:
        for chunk in chunks(
            state.todo,
            lambda i: len(phonons[i].dataset["first_atoms"]) * len(phonons[i].supercell),
            limit,
        ):
            errors = compute_force_constants(
                potential,
                [phonons[i] for i in chunk],
                labels=[state.labels[i] for i in chunk],
                progress=bar.update,
            )
            for i, error in zip(chunk, errors, strict=True):
                phonon = phonons.pop(i)  # the chunk's memory goes with it
                if error is not None:
                    state.fail(i, error)
                    continue
                try:
                    doc = _analyse(phonon, settings, state.fields(i))
                except Exception as exc:
                    state.fail(
                        i,
                        f"{state.labels[i]}: phonon analysis failed ({type(exc).__name__}: {exc})",
                    )
                    continue
                doc = state.finish(i, doc, settings.phonopy_symprec)
                if store is not None:
                    key, label = state.keys[i], state.labels[i]
                    record = phonopy_record(phonon)
                    bands = doc.band_structure.as_dict() if doc.band_structure else None
                    if bands is not None and _json_bytes(bands) > BAND_STRUCTURE_INLINE_BYTES:
                        record["band_structure"] = bands  # a large cell's: 1 MB at 500 atoms
                        doc = doc.model_copy(
                            update={"band_structure": None, "band_structure_in_data": True}
                        )
                        state.docs[i] = doc
                    save_data(store, "phonopy", key, label, record)
                    save_documents(store, [doc])
    finally:
        bar.close()
    return state.docs  # type: ignore[return-value]


#: A band structure larger than this as JSON (bytes) goes to the data store (GridFS in
#: production), not into the document: a document stays well below MongoDB's 16 MB.
BAND_STRUCTURE_INLINE_BYTES = 200_000


def _json_bytes(obj: Any) -> int:
    return len(json.dumps(jsanitize(obj, strict=True)))


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
        n_displacements=len(phonon.dataset["first_atoms"]),
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
