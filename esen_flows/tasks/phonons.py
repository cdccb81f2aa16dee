"""Phonons of a batch of structures: symmetric relaxation, phonopy displacements evaluated in
batches across all structures, force constants, analysis, one document per structure.

Stored results are reused (key = structure, potential checksum, settings); each structure's
document is written as soon as its chunk finishes, so an interrupted job loses at most one chunk.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
from ase import Atoms
from jobflow import JobStore
from monty.json import jsanitize
from phonopy import Phonopy
from pymatgen.core import Structure
from tqdm.auto import tqdm

from esen_flows.dynamics.phonon_properties import (
    band_path_qpoints,
    band_structure,
    dynamic_stability,
    run_mesh,
    thermal_properties,
    total_dos,
)
from esen_flows.dynamics.phonons import (
    build_phonopy,
    compute_force_constants,
    count_displacements,
    supercell_for_length,
)
from esen_flows.io import UnreadableInput
from esen_flows.potentials import Potential, batch_budget
from esen_flows.schemas import PhononDocument, ThermalProperties
from esen_flows.stores import phonopy_record, save_data
from esen_flows.tasks.relaxed_cells import chunks, prepare
from esen_flows.tasks.settings import (  # noqa: F401 - importable from here
    PhononSettings,
    SymmetricRelax,
    checked_supercell,
)

#: Displaced supercells' atoms per chunk, in multiples of the batch budget: after each chunk the
#: finished structures are written to the store.
CHUNK_BUDGETS = 8


def run_phonons(
    items: Sequence[Structure | UnreadableInput],
    potential: Potential,
    settings: PhononSettings,
    store: JobStore | None = None,
    retry_failed: bool = False,
    desc: str = "phonons",
    overrides: Sequence[dict[str, Any] | None] | None = None,
) -> list[PhononDocument]:
    """Phonons of every structure in ``items``; one document per input, in input order.

    The relaxations run as one batched FIRE; then the displaced supercells of all structures
    of a chunk are evaluated together (``compute_force_constants``), the chunk's documents
    written, and the next chunk started. A structure that fails (bad input, relaxation or
    evaluation error, NaN) gets a ``failed`` document; one with imaginary modes is a result.
    ``overrides``: per structure, None or its own ``{"supercell_matrix": ...}``.
    """
    state = prepare(
        items,
        potential,
        settings,
        PhononDocument,
        (settings.relax or SymmetricRelax()).symprec,
        overrides=overrides,
        allowed=("supercell_matrix",),
        store=store,
        retry_failed=retry_failed,
        desc=desc,
    )
    phonons = state.build_each(
        lambda i: _setup(state.cells[i], settings, state.sdicts[i]["supercell_matrix"]),
        "phonopy set-up",
    )
    bar = tqdm(
        total=sum(count_displacements(p) for p in phonons.values()),  # not built yet
        desc=f"{desc}: supercells",
        unit="supercell",
        disable=None,
    )
    limit = CHUNK_BUDGETS * batch_budget(potential).max_atoms
    try:
        for chunk in chunks(
            state.todo,
            lambda i: count_displacements(phonons[i]) * len(phonons[i].supercell),
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
                doc = state.complete(i, doc, settings.phonopy_symprec)
                if store is not None:  # the arrays first: a stored document has its data
                    key, label = state.keys[i], state.labels[i]
                    record = phonopy_record(phonon)
                    bands = doc.band_structure.as_dict() if doc.band_structure else None
                    if bands is not None and _json_bytes(bands) > BAND_STRUCTURE_INLINE_BYTES:
                        record["band_structure"] = bands  # a large cell's: 1 MB at 500 atoms
                        doc = doc.model_copy(
                            update={"band_structure": None, "band_structure_in_data": True}
                        )
                    save_data(store, "phonopy", key, label, record)
                state.finish(i, doc)
    finally:
        bar.close()
    return state.results()  # type: ignore[return-value]


#: A band structure larger than this as JSON (bytes) goes to the data store (GridFS in
#: production), not into the document: a document stays well below MongoDB's 16 MB.
BAND_STRUCTURE_INLINE_BYTES = 200_000


def _json_bytes(obj: Any) -> int:
    return len(json.dumps(jsanitize(obj, strict=True)))


def _setup(atoms: Atoms, settings: PhononSettings, matrix: Any) -> Phonopy:
    """phonopy with displacements for one (relaxed) unit cell."""
    if matrix is None:
        matrix = supercell_for_length(atoms.cell.array, settings.min_length)
    random = settings.displacements == "random"
    return build_phonopy(
        atoms,
        matrix,
        displacement=settings.displacement,
        symprec=settings.phonopy_symprec,
        is_plusminus=settings.plusminus if random else "auto",
        n_snapshots=settings.n_snapshots if random else None,
        random_seed=settings.random_seed,
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
        n_displacements=count_displacements(phonon),
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
