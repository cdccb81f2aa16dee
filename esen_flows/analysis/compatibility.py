"""Energy corrections that put model energies and Materials Project references on one hull.

Materials Project mixes GGA and GGA+U calculations and corrects anion energies; its entries
(``ComputedStructureEntry``, as served) carry those corrections. A model trained on MP data
(MPtrj, eSEN-30M-MP, eSEN-30M-OAM) predicts *uncorrected* GGA/GGA+U energies, so to screen
against the MP hull its energies get the same corrections, the way Matbench Discovery scores
models: ``MaterialsProject2020Compatibility`` applied to an entry of the model's energy with
the parameters MP's own calculation of that composition would have had (GGA+U with MP's U
values for oxides and fluorides of Co, Cr, Fe, Mn, Mo, Ni, V, W; GGA otherwise). The
references are processed by the same scheme (their own parameters, POTCARs checked).

A correction depends on the composition, on the oxide/sulfide type for oxygen and sulfur
compounds (peroxide, superoxide, ozonide, polysulfide: from the relaxed structure, recorded
in each relaxation document), and on guessed oxidation states (anion corrections).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from functools import cache
from typing import Any

from pymatgen.analysis.compatibility import (
    CompatibilityError,
    MaterialsProject2020Compatibility,
)
from pymatgen.analysis.structure_analyzer import oxide_type, sulfide_type
from pymatgen.core import Composition, Structure
from pymatgen.entries.computed_entries import ComputedEntry
from pymatgen.io.vasp.sets import MPRelaxSet

#: The correction schemes a screen or a hull can apply (``None``: none).
SCHEMES = ("mp2020",)


def check_scheme(scheme: str | None) -> str | None:
    """``scheme`` when known (``None`` allowed), else ``ValueError`` naming the known ones."""
    if scheme is not None and scheme not in SCHEMES:
        raise ValueError(f"unknown compatibility {scheme!r}: choose from {', '.join(SCHEMES)}")
    return scheme


@cache
def _mp2020(check_potcar: bool) -> MaterialsProject2020Compatibility:
    return MaterialsProject2020Compatibility(check_potcar=check_potcar)


def mp_parameters(composition: Composition) -> dict[str, Any]:
    """``run_type`` and ``hubbards`` of the MP calculation of ``composition`` (MPRelaxSet):
    GGA+U with MP's U values where the most electronegative element is O or F and a U element
    is present, GGA otherwise."""
    u_values = MPRelaxSet.CONFIG["INCAR"]["LDAUU"]
    elements = sorted(composition.elements, key=lambda el: el.X)
    anion = elements[-1].symbol if elements else ""
    hubbards = {
        el.symbol: float(u)
        for el in elements
        if (u := u_values.get(anion, {}).get(el.symbol, 0)) and float(u) != 0.0
    }
    return {"run_type": "GGA+U" if hubbards else "GGA", "hubbards": hubbards}


def anion_types(structure: Structure) -> dict[str, str]:
    """``oxide_type`` and ``sulfide_type`` of a structure holding O or S (pymatgen's
    analysis, as MP2020 does it), for the relaxation document; empty otherwise."""
    out: dict[str, str] = {}
    elements = {el.symbol for el in structure.composition.elements}
    try:
        if "O" in elements:
            out["oxide_type"] = str(oxide_type(structure, 1.05))
        if "S" in elements and (kind := sulfide_type(structure)) is not None:
            out["sulfide_type"] = str(kind)
    except Exception:  # an odd cell: MP2020 then falls back on the formula
        pass
    return out


@cache
def _correction(formula: str, oxide: str | None, sulfide: str | None) -> float:
    comp = Composition(formula)
    data = {k: v for k, v in (("oxide_type", oxide), ("sulfide_type", sulfide)) if v}
    entry = ComputedEntry(comp, 0.0, parameters=mp_parameters(comp), data=data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "failed to guess oxidation states" and the like
        adjustments = _mp2020(False).get_adjustments(entry)
    return float(sum(a.value for a in adjustments)) / comp.num_atoms


def model_correction(
    formula: str, scheme: str, oxide: str | None = None, sulfide: str | None = None
) -> float:
    """The correction (eV/atom) ``scheme`` adds to a model energy of ``formula``.

    Parameters
    ----------
    formula
        Reduced formula of the structure.
    scheme
        ``"mp2020"``.
    oxide, sulfide
        The structure's ``oxide_type`` / ``sulfide_type`` (``anion_types``); without them
        MP2020 guesses peroxides and the like from the formula.

    Raises
    ------
    ValueError
        When the scheme refuses the composition (the reason, naming the formula).
    """
    check_scheme(scheme)
    try:
        return _correction(Composition(formula).reduced_formula, oxide, sulfide)
    except CompatibilityError as exc:
        raise ValueError(f"{formula}: {scheme} compatibility refuses it ({exc})") from exc


def corrected_references(
    entries: Sequence[ComputedEntry], scheme: str, source: str = "references"
) -> list[ComputedEntry]:
    """``entries`` processed by ``scheme`` (corrections cleared and applied anew, POTCARs and
    U values checked): the energies that share a hull with corrected model energies.

    Raises
    ------
    ValueError
        Naming the entries the scheme discards and why (one line).
    """
    check_scheme(scheme)
    compat = _mp2020(True)
    out = []
    refused = []
    for i, entry in enumerate(entries):
        e = entry.copy()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                e.energy_adjustments = compat.get_adjustments(e)  # all others cleared
        except (CompatibilityError, ValueError, KeyError) as exc:
            refused.append(f"{entry.entry_id or i} ({entry.reduced_formula}): {str(exc)[:160]}")
            continue
        out.append(e)
    if refused:
        raise ValueError(
            f"{source}: {scheme} compatibility refuses {len(refused)} of {len(entries)} "
            f"entries: {'; '.join(refused[:3])}" + ("; ..." if len(refused) > 3 else "")
        )
    return out
