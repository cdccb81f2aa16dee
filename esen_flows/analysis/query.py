"""Reading results back as tables: ``hull_table``, ``phonon_table``, ``conductivity_table``.

The documents themselves come from ``esen_flows.analysis.documents`` (``query``,
``latest_documents``), whose names are also importable from here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from jobflow import JobStore

from esen_flows.analysis.conductivity import conductivity_frame
from esen_flows.analysis.documents import (  # noqa: F401 - query and kin importable from here
    _in_chemsys,
    latest_documents,
    latest_per_label,
    normalise_chemsys,
    query,
)
from esen_flows.schemas import ResultDocument

HULL_COLUMNS = [
    "label",
    "formula",
    "chemsys",
    "energy_per_atom",
    "e_form",
    "e_above_hull",
    "stable",
    "candidate",
    "converged",
    "n_steps",
    "duplicate_of",
    "status",
    "reason",
]


def hull_table(
    store: JobStore | str | Path,
    chemsys: str | None = None,
    include_failed: bool = True,
    potential: str | None = None,
    include_unconverged: bool = False,
    e_hull_max: float = 0.05,
    compatibility: str | None = None,
) -> pd.DataFrame:
    """The stability of every structure in a store, against the store's whole hull.

    Computed when asked (``esen_flows.analysis.store_hull``): each label's newest relaxation is
    placed on the hull of every finished, converged relaxation in the store made with the same
    potential checksum and relaxation settings, whichever screen made it.

    Parameters
    ----------
    store
        A ``JobStore`` or the folder of an embedded store.
    chemsys
        ``"Cu-Au"`` keeps the structures whose elements all lie in that system.
    include_failed
        Keep rows of structures whose relaxation or hull placement failed (with ``reason``).
    potential
        Only relaxations computed with this potential (by default the newest relaxation of
        each label, whatever the potential).
    include_unconverged
        Keep the rows of relaxations that stopped at the step limit (``converged=False``,
        never ``stable`` nor ``candidate``, the reason says so); left out by default.
    e_hull_max
        A converged structure within this distance of the hull (eV/atom) is a ``candidate``.
    compatibility
        ``"mp2020"``: energies corrected with ``MaterialsProject2020Compatibility`` (model
        energies and the references a screen was given), as when screening against the
        Materials Project hull; the ``energy_correction`` column says by how much.

    Returns
    -------
    DataFrame
        Columns ``label, formula, chemsys, energy_per_atom, e_form, e_above_hull`` (eV/atom),
        ``stable, candidate, converged`` (bool), ``n_steps``, ``duplicate_of``, ``status,
        reason``; sorted by e_above_hull.
    """
    from esen_flows.analysis.store_hull import store_stability

    if chemsys is not None:
        chemsys = normalise_chemsys(chemsys)
    docs = store_stability(
        store, potential=potential, e_hull_max=e_hull_max, compatibility=compatibility
    )
    if chemsys is not None:
        docs = [d for d in docs if _in_chemsys(d.chemsys, chemsys)]
    columns = HULL_COLUMNS if compatibility is None else [*HULL_COLUMNS, "energy_correction"]
    return hull_frame(docs, include_failed, include_unconverged, columns)


def hull_frame(
    docs: Iterable[Any],
    include_failed: bool = True,
    include_unconverged: bool = False,
    columns: Sequence[str] = tuple(HULL_COLUMNS),
) -> pd.DataFrame:
    """``hull_table``'s rows from stability documents already placed on a hull (for a caller
    that holds them, so the hull is not computed again), sorted by e_above_hull."""
    rows = []
    for d in docs:
        if d.status != "ok" and not include_failed:
            continue
        if d.status == "ok" and d.converged is False and not include_unconverged:
            continue
        rows.append({c: getattr(d, c) for c in columns})
    table = pd.DataFrame(rows, columns=list(columns))
    return table.sort_values(["e_above_hull", "label"], na_position="last").reset_index(drop=True)


#: Columns of ``phonon_table``; frequencies THz, thermal properties at ``temperature`` in
#: phonopy's units (kJ/mol, J/K/mol per mole of primitive cells).
PHONON_COLUMNS = [
    "label",
    "formula",
    "dynamically_stable",
    "min_frequency",
    "max_frequency",
    "n_imaginary",
    "free_energy",
    "entropy",
    "heat_capacity",
    "n_supercell_atoms",
    "n_displacements",
    "status",
    "reason",
]


def phonon_documents(
    store: JobStore | str | Path, potential: str | None = None, chemsys: str | None = None
) -> list[ResultDocument]:
    """The newest phonon document of each label (``latest_documents``)."""
    return latest_documents(store, "phonon", potential, chemsys)


def phonon_frame(docs: list[ResultDocument], temperature: float = 300.0) -> pd.DataFrame:
    """``PHONON_COLUMNS`` of phonon documents; unstable structures first, then by label."""
    rows = []
    for d in docs:
        row = {c: getattr(d, c, None) for c in PHONON_COLUMNS}
        if d.thermal_properties is not None:
            with contextlib.suppress(ValueError):  # that temperature was not computed
                row.update(d.thermal_properties.at(temperature))
        rows.append(row)
    table = pd.DataFrame(rows, columns=PHONON_COLUMNS)
    return table.sort_values(["dynamically_stable", "label"], na_position="first").reset_index(
        drop=True
    )


def phonon_table(
    store: JobStore | str | Path,
    temperature: float = 300.0,
    potential: str | None = None,
    chemsys: str | None = None,
) -> pd.DataFrame:
    """Dynamic stability and thermal properties of every phonon result, one row per label.

    Returns
    -------
    DataFrame
        ``PHONON_COLUMNS``: ``min_frequency``/``max_frequency`` in THz; ``free_energy``
        (kJ/mol), ``entropy`` and ``heat_capacity`` (J/K/mol) at ``temperature`` K, per mole
        of primitive cells; unstable structures first, then by label.
    """
    return phonon_frame(phonon_documents(store, potential, chemsys), temperature)


def conductivity_table(
    store: JobStore | str | Path,
    temperature: float = 300.0,
    potential: str | None = None,
    chemsys: str | None = None,
) -> pd.DataFrame:
    """Lattice thermal conductivity of every conductivity result, one row per label.

    Returns
    -------
    DataFrame
        ``CONDUCTIVITY_COLUMNS``: ``kappa`` and its particle and coherence parts at
        ``temperature`` K, W/(m K), (xx+yy+zz)/3; highest kappa first.
    """
    docs = latest_documents(store, "conductivity", potential, chemsys)
    table = conductivity_frame(docs, temperature)  # type: ignore[arg-type]
    return table.sort_values(["kappa", "label"], ascending=[False, True], na_position="last")
