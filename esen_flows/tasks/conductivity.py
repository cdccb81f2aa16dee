"""Lattice thermal conductivity of a batch of structures: symmetric relaxation, fc2 of all of
them in batches, the stability check, fc3 of the stable ones in batches, phono3py's transport
equation, one document per structure.

Stored results are reused (key = structure, potential checksum, settings); each chunk's
documents and arrays are written as soon as the chunk finishes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import spglib
from ase import Atoms
from jobflow import JobStore
from phono3py import Phono3py
from pymatgen.core import Structure
from tqdm.auto import tqdm

from esen_flows.analysis.conductivity import kappa_average
from esen_flows.dynamics.conductivity import (
    Conductivity,
    build_phono3py,
    compute_fc2,
    compute_fc3,
    conductivity,
    count_displacements,
    mesh_frequencies,
    phono3py_yaml,
)
from esen_flows.dynamics.phonon_properties import dynamic_stability
from esen_flows.dynamics.phonons import supercell_for_length
from esen_flows.io import UnreadableInput, to_atoms, to_structure
from esen_flows.potentials import Potential, batch_budget
from esen_flows.schemas import MODE_ARRAYS, ConductivityDocument
from esen_flows.stores import encode_array, save_data
from esen_flows.tasks.conductivity_settings import (
    DISPLACEMENTS,
    FC2_SUPERCELL,
    FC3_SUPERCELL,
    PHONO3PY_TEMPERATURES,
    Q_MESH,
    RANDOM_FIELDS,
    ConductivitySettings,
    overrides_from_properties,
)
from esen_flows.tasks.phonons import CHUNK_BUDGETS
from esen_flows.tasks.relaxed_cells import Prepared, chunks, prepare
from esen_flows.tasks.settings import checked_mesh

__all__ = [
    "DISPLACEMENTS",
    "FC2_SUPERCELL",
    "FC3_SUPERCELL",
    "PHONO3PY_TEMPERATURES",
    "Q_MESH",
    "RANDOM_FIELDS",
    "ConductivitySettings",
    "checked_mesh",
    "conventional_cell",
    "overrides_from_properties",
    "run_conductivity",
]


def run_conductivity(
    items: Sequence[Structure | UnreadableInput],
    potential: Potential,
    settings: ConductivitySettings,
    store: JobStore | None = None,
    retry_failed: bool = False,
    desc: str = "conductivity",
    overrides: Sequence[dict[str, Any] | None] | None = None,
) -> list[ConductivityDocument]:
    """Lattice thermal conductivity of every structure in ``items``; one document per input,
    in input order.

    One batched relaxation; then, chunk by chunk, the fc2 supercells of the chunk's structures
    evaluated together, the imaginary-mode check on each conductivity grid, the fc3 supercells
    of the stable ones evaluated together, and phono3py's conductivity of each; documents and
    arrays are written per chunk. A dynamically unstable structure gets a document that says so
    (no fc3, no kappa); one that fails gets a ``failed`` document.

    ``overrides``: per structure, None or its own ``supercell_matrix``, ``fc2_supercell_matrix``
    and ``mesh``; by default those of its Matbench Discovery properties
    (``overrides_from_properties``).
    """
    if overrides is None:
        overrides = overrides_from_properties(items)
    state = prepare(
        items,
        potential,
        settings,
        ConductivityDocument,
        settings.phono3py_symprec,
        overrides=overrides,
        allowed=("supercell_matrix", "fc2_supercell_matrix", "mesh"),
        store=store,
        retry_failed=retry_failed,
        desc=desc,
    )
    # counted from the datasets (the displaced supercells are built chunk by chunk only), in
    # the set-up, so that a dataset phono3py cannot count fails its structure alone
    counts: dict[int, tuple[int, int]] = {}

    def setup(i: int) -> Phono3py:
        ph3 = _setup(state, i, settings)
        counts[i] = count_displacements(ph3)
        return ph3

    ph3s = state.build_each(setup, "phono3py set-up")
    bar = tqdm(
        total=sum(sum(c) for c in counts.values()),
        desc=f"{desc}: supercells",
        unit="supercell",
        disable=None,
    )
    kbar = tqdm(total=len(ph3s), desc=f"{desc}: kappa", unit="structure", disable=None)
    limit = CHUNK_BUDGETS * batch_budget(potential).max_atoms

    def size(i: int) -> int:
        return counts[i][1] * len(ph3s[i].supercell)

    try:
        for chunk in chunks(state.todo, size, limit):
            _run_chunk(state, chunk, ph3s, counts, potential, settings, bar.update)
            kbar.update(len(chunk))
    finally:
        bar.close()
        kbar.close()
    return state.results()  # type: ignore[return-value]


def _setup(state: Prepared, i: int, settings: ConductivitySettings) -> Phono3py:
    """phono3py with fc3 and fc2 displacements for one (relaxed) unit cell.

    With neither supercell given, the cell becomes its conventional standard cell (same
    orientation) first: diagonal supercells of it keep the point group, where those of an
    arbitrary cell may not (phono3py then warns, and the lost symmetry multiplies the fc3
    displacements). The document stores the cell used.
    """
    sd = state.sdicts[i]
    fc3_matrix = sd["supercell_matrix"]
    fc2_matrix = sd["fc2_supercell_matrix"]
    if fc3_matrix is None and fc2_matrix is None:
        state.cells[i] = conventional_cell(state.cells[i], settings.phono3py_symprec)
    cell = state.cells[i].cell.array
    if fc3_matrix is None:
        fc3_matrix = supercell_for_length(cell, settings.min_length)
    if fc2_matrix is None:
        fc2_matrix = supercell_for_length(cell, settings.fc2_min_length)
    return build_phono3py(
        state.cells[i],
        fc3_matrix,
        fc2_matrix,
        displacement=settings.displacement,
        symprec=settings.phono3py_symprec,
        cutoff_pair_distance=settings.cutoff_pair_distance,
        random=settings.random(),
    )


def conventional_cell(atoms: Atoms, symprec: float) -> Atoms:
    """spglib's conventional standard cell of ``atoms`` without idealisation (the relaxed
    geometry and its orientation kept), as the document will store it; ``atoms`` unchanged
    when spglib finds no symmetry."""
    data = (atoms.cell.array, atoms.get_scaled_positions(), atoms.numbers)
    found = spglib.standardize_cell(data, to_primitive=False, no_idealize=True, symprec=symprec)
    if found is None:
        return atoms
    lattice, positions, numbers = found
    cell = Atoms(numbers=numbers, cell=lattice, scaled_positions=positions, pbc=True)
    cell.info = dict(atoms.info)
    return to_atoms(to_structure(cell))


def _run_chunk(
    state: Prepared,
    chunk: list[int],
    ph3s: dict[int, Phono3py],
    counts: dict[int, tuple[int, int]],
    potential: Potential,
    settings: ConductivitySettings,
    progress: Callable[[int], None],
) -> None:
    """fc2 of the chunk in batches, the stability check, fc3 of the stable ones in batches,
    then each one's conductivity, document and arrays."""
    labels = [state.labels[i] for i in chunk]
    errors = compute_fc2(
        potential, [ph3s[i] for i in chunk], labels, settings.symmetrize, progress=progress
    )
    stable: list[int] = []
    docs: dict[int, ConductivityDocument] = {}
    for i, error in zip(chunk, errors, strict=True):
        ph3 = ph3s[i]
        if error is not None:
            state.fail(i, error)
            ph3s.pop(i)
            progress(counts[i][1])  # its fc3 supercells will not be evaluated
            continue
        try:
            docs[i] = _harmonic_document(state, i, ph3, settings)
        except Exception as exc:
            state.fail(i, f"{state.labels[i]}: phonons failed ({type(exc).__name__}: {exc})")
            ph3s.pop(i)
            progress(counts[i][1])
            continue
        if docs[i].dynamically_stable:
            stable.append(i)
        else:  # Matbench Discovery's rule: no fc3 for a structure with imaginary modes
            progress(counts[i][1])
            _save(state, i, ph3s.pop(i), docs[i], None)
    errors = compute_fc3(
        potential,
        [ph3s[i] for i in stable],
        [state.labels[i] for i in stable],
        settings.symmetrize,
        progress=progress,
    )
    for i, error in zip(stable, errors, strict=True):
        ph3 = ph3s.pop(i)
        if error is not None:
            state.fail(i, error)
            continue
        try:
            result = conductivity(
                ph3,
                state.sdicts[i]["mesh"],
                settings.temperatures,
                method=settings.method,
                wigner=settings.wigner,
                isotope=settings.isotope,
                boundary_mfp=settings.boundary_mfp,
            )
        except Exception as exc:
            state.fail(i, f"{state.labels[i]}: conductivity failed ({type(exc).__name__}: {exc})")
            continue
        if not np.all(np.isfinite(result.kappa)):
            state.fail(i, f"{state.labels[i]}: conductivity is not finite (NaN or inf)")
            continue
        doc = docs[i].model_copy(
            update={
                "n_fc3_displacements": counts[i][1],
                "temperatures": result.temperatures.tolist(),
                "kappa": result.kappa.tolist(),
                "kappa_mean": kappa_average(result.kappa).tolist(),
                "kappa_particle": result.kappa_particle.tolist(),
                "kappa_coherence": result.kappa_coherence.tolist(),
                "wall_time": time.perf_counter() - state.start[i],
            }
        )
        _save(state, i, ph3, doc, result)


def _harmonic_document(
    state: Prepared, i: int, ph3: Phono3py, settings: ConductivitySettings
) -> ConductivityDocument:
    """Everything known once fc2 is: supercells, grid and the imaginary-mode verdict."""
    qpoints, freqs = mesh_frequencies(ph3, state.sdicts[i]["mesh"])
    stability = dynamic_stability(qpoints, freqs, gamma_tolerance=settings.gamma_tolerance)
    spg_input = state.relax_info[i].get("spacegroup_input")
    doc = ConductivityDocument(
        **state.fields(i),
        supercell_matrix=np.asarray(ph3.supercell_matrix, dtype=int).tolist(),
        fc2_supercell_matrix=np.asarray(ph3.phonon_supercell_matrix, dtype=int).tolist(),
        primitive_matrix=np.asarray(ph3.primitive_matrix, dtype=float).tolist(),
        n_fc2_displacements=count_displacements(ph3)[0],
        n_fc3_displacements=0,
        n_supercell_atoms=len(ph3.supercell),
        mesh=[int(m) for m in ph3.mesh_numbers],
        method=settings.method,
        wigner=settings.wigner,
        isotope=settings.isotope,
        dynamically_stable=stability.dynamically_stable,
        n_imaginary=stability.n_imaginary,
        min_frequency=stability.min_frequency,
        max_frequency=stability.max_frequency,
    )
    doc = state.complete(i, doc, settings.phono3py_symprec)
    update: dict[str, Any] = {
        "symmetry_broken": None
        if spg_input is None or doc.spacegroup is None
        else spg_input != doc.spacegroup
    }
    if not doc.dynamically_stable:
        update["reason"] = (
            f"dynamically unstable: {stability.n_imaginary} imaginary modes on the q-grid "
            f"(lowest {stability.min_frequency:.3g} THz); no fc3 computed"
        )
    state.docs[i] = doc = doc.model_copy(update=update)
    return doc


def _save(
    state: Prepared,
    i: int,
    ph3: Phono3py,
    doc: ConductivityDocument,
    result: Conductivity | None,
) -> None:
    """Write the arrays of input ``i`` (yaml with forces, fc2, fc3 and the mode conductivity)
    to the data store, then its document (``finish``): a stored document has its data."""
    if state.store is not None:
        try:
            yaml = np.frombuffer(phono3py_yaml(ph3).encode(), dtype=np.uint8)
            payload: dict[str, Any] = {"yaml": encode_array(yaml), "fc2": encode_array(ph3.fc2)}
            if result is not None:
                payload["fc3"] = encode_array(ph3.fc3)
                payload.update({n: encode_array(getattr(result, n)) for n in MODE_ARRAYS})
            save_data(state.store, "phono3py", state.keys[i], state.labels[i], payload)
        except Exception as exc:  # e.g. a record beyond the store's size limit: keep the result
            note = f"arrays not stored ({type(exc).__name__}: {exc})"
            doc = doc.model_copy(update={"reason": f"{doc.reason}; {note}" if doc.reason else note})
    state.finish(i, doc)
