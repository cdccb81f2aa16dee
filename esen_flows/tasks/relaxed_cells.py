"""What the phonon and conductivity tasks share before their own work: result keys, stored
documents reused, bad inputs turned into failed documents, and one batched symmetry-constrained
relaxation of everything left."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import spglib
from ase import Atoms
from jobflow import JobStore
from pymatgen.core import Structure

from esen_flows.dynamics.relax import relax_structures
from esen_flows.io import UnreadableInput, to_atoms, to_structure
from esen_flows.packing import pack
from esen_flows.potentials import Potential
from esen_flows.schemas import RelaxedCellDocument
from esen_flows.tasks.batch import Batch, precision
from esen_flows.tasks.settings import own_settings


def spacegroup(atoms: Atoms, symprec: float) -> str | None:
    """spglib's international symbol with its number, e.g. ``"Fm-3m (225)"``; None if none."""
    cell = (atoms.cell.array, atoms.get_scaled_positions(), atoms.numbers)
    try:
        return spglib.get_spacegroup(cell, symprec=symprec)
    except Exception:
        return None


T = TypeVar("T")


@dataclass
class Prepared(Batch[RelaxedCellDocument]):
    """A ``Batch`` of a phonon or conductivity task once stored results are reused and the rest
    relaxed under symmetry.

    Attributes
    ----------
    cells
        Per input to do (by input index): the structure to compute on as ``Atoms``; relaxed
        (and round-tripped through a pymatgen ``Structure``, as the document stores it) when
        the settings ask for a relaxation, else the input as given.
    relax_info
        Per input to do: document fields, ``spacegroup_input`` (before any relaxation) and,
        after one, ``relaxed``, ``relax_converged``, ``relax_steps`` and ``relax_max_force``
        (eV/A); ``complete`` copies them into the document.
    start
        Per input to do: ``time.perf_counter()`` when its work began, s (``complete`` gives the
        ``wall_time`` from it).

    The other fields are those of ``Batch``.
    """

    cells: dict[int, Atoms] = field(default_factory=dict)
    relax_info: dict[int, dict[str, Any]] = field(default_factory=dict)
    start: dict[int, float] = field(default_factory=dict)

    def build_each(self, make: Callable[[int], T], what: str) -> dict[int, T]:
        """``make(i)`` (e.g. a Phonopy object) for every input still to do; one that raises
        fails that input only, with "``what`` failed" and the error."""
        built: dict[int, T] = {}
        for i in list(self.todo):
            try:
                built[i] = make(i)
            except Exception as exc:
                self.fail(i, f"{self.labels[i]}: {what} failed ({type(exc).__name__}: {exc})")
        return built

    def complete(self, i: int, doc: RelaxedCellDocument, symprec: float) -> RelaxedCellDocument:
        """``doc`` completed with the relaxation, the structure used, its space group at
        ``symprec`` and the wall time (not yet saved: ``finish`` does)."""
        structure = to_structure(self.cells[i])
        structure.properties = dict(getattr(self.items[i], "properties", None) or {})
        return doc.model_copy(
            update={
                **self.relax_info[i],
                "structure": structure,
                "spacegroup": spacegroup(self.cells[i], symprec),
                "wall_time": time.perf_counter() - self.start[i],
            }
        )


def prepare(
    items: Sequence[Structure | UnreadableInput],
    potential: Potential,
    settings: Any,
    doc_class: type[RelaxedCellDocument],
    symprec: float,
    overrides: Sequence[dict[str, Any] | None] | None = None,
    allowed: tuple[str, ...] = (),
    store: JobStore | None = None,
    retry_failed: bool = False,
    desc: str = "relax",
) -> Prepared:
    """Keys and stored documents of ``items``, failed documents for bad inputs, then one
    batched relaxation of the rest (``settings.relax``: FIRE, Frechet filter, space group kept).

    ``settings`` has ``key_dict()`` and ``relax`` (a ``SymmetricRelax`` or None); ``overrides``
    gives each structure its own settings (names in ``allowed``: supercells, meshes), checked
    here; ``symprec`` is the tolerance of the space group recorded before
    (``spacegroup_input``).
    """
    if overrides is not None and len(overrides) != len(items):
        raise ValueError(f"got {len(overrides)} per-structure settings for {len(items)} inputs")
    base = {**settings.key_dict(), "dtype": precision(potential)}
    sdicts: list[dict[str, Any]] = []
    bad: dict[int, str] = {}  # a malformed per-structure setting fails its structure only
    for i in range(len(items)):
        try:
            sdicts.append(own_settings(base, overrides[i] if overrides else None, allowed))
        except (TypeError, ValueError) as exc:  # keyed apart: never a well-set result
            sdicts.append({**base, "problem": str(exc)})
            bad[i] = f"bad per-structure setting ({exc})"
    state = Prepared.open(
        items, potential, doc_class, sdicts, store=store, retry_failed=retry_failed, bad=bad
    )
    for i in state.todo:
        state.start[i] = time.perf_counter()
        state.cells[i] = to_atoms(items[i])  # type: ignore[arg-type]
        state.relax_info[i] = {"spacegroup_input": spacegroup(state.cells[i], symprec)}
    relax = settings.relax
    if relax is None or not state.todo:
        return state
    bar = state.progress(f"{desc}: relax")
    try:
        results = relax_structures(
            potential,
            [state.cells[i] for i in state.todo],
            fmax=relax.fmax,
            max_steps=relax.max_steps,
            relax_cell=True,
            symmetry=True,
            symprec=relax.symprec,
            progress=bar.update,
        )
    finally:
        bar.close()
    for i, result in zip(list(state.todo), results, strict=True):
        if result.status == "failed":
            state.fail(i, result.reason or f"{state.labels[i]}: relaxation failed")
            continue
        # the cell exactly as the document will store it: finite displacements depend on the
        # symmetry phono3py finds, which 1e-17 A of round-off can change (0.1 % in kappa)
        state.cells[i] = to_atoms(to_structure(result.atoms))
        state.relax_info[i].update(
            relaxed=True,
            relax_converged=result.status == "converged",
            relax_steps=result.n_steps,
            relax_max_force=result.max_force,
        )
    return state


def chunks(todo: Sequence[int], sizes: Callable[[int], int], limit: int) -> list[list[int]]:
    """Consecutive groups of ``todo`` whose ``sizes`` (e.g. displaced atoms) add up to at most
    ``limit`` (one larger alone): after each group the finished structures are written to the
    store."""
    return [[todo[j] for j in group] for group in pack([sizes(i) for i in todo], limit)]
