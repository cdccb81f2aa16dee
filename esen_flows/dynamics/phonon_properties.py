"""Phonon properties of a ``Phonopy`` object with force constants: thermal properties, band
structure along seekpath's standard path, density of states, dynamic stability.

Frequencies in THz. Thermal properties in phonopy's units, per mole of phonopy's primitive cell:
free energy kJ/mol, entropy and heat capacity J/K/mol, temperatures K.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from phonopy import Phonopy
from pymatgen.core import Lattice
from pymatgen.phonon.bandstructure import PhononBandStructureSymmLine
from pymatgen.phonon.dos import PhononDos

#: Acoustic modes at Gamma may dip this far below zero (THz) before a structure counts as
#: dynamically unstable; every other mode must be non-negative (Matbench Discovery, MDR).
GAMMA_ACOUSTIC_TOLERANCE = 0.01

#: phonopy's default sampling mesh: a length (A), the q-mesh follows the reciprocal lattice.
DEFAULT_MESH = 100.0


@dataclass(frozen=True)
class Stability:
    """Dynamic stability of a structure from sampled frequencies.

    Attributes
    ----------
    dynamically_stable
        No imaginary mode: acoustic modes at Gamma above -``gamma_tolerance`` THz, every other
        mode >= 0.
    min_frequency, max_frequency
        Lowest and highest sampled frequency, THz (negative: imaginary).
    n_imaginary
        Sampled modes that break the rule above (one per q-point and band).
    """

    dynamically_stable: bool
    min_frequency: float
    max_frequency: float
    n_imaginary: int


def dynamic_stability(
    qpoints: np.ndarray,
    frequencies: np.ndarray,
    gamma_tolerance: float = GAMMA_ACOUSTIC_TOLERANCE,
) -> Stability:
    """Whether sampled phonon frequencies show imaginary modes.

    Parameters
    ----------
    qpoints
        (n_q, 3) reduced coordinates; Gamma is any point with integer coordinates.
    frequencies
        (n_q, n_bands) THz, each row sorted ascending (phonopy's order); imaginary modes are
        negative.
    gamma_tolerance
        The three lowest modes at Gamma (the acoustic ones) may reach -``gamma_tolerance`` THz.
    """
    qpoints = np.asarray(qpoints, dtype=float).reshape(-1, 3)
    freqs = np.asarray(frequencies, dtype=float)
    if freqs.ndim != 2 or len(freqs) != len(qpoints):
        raise ValueError(
            f"frequencies must be (n_q, n_bands) with n_q = {len(qpoints)}, got {freqs.shape}"
        )
    gamma = np.all(np.abs(qpoints - np.rint(qpoints)) < 1e-8, axis=1)
    threshold = np.zeros_like(freqs)
    threshold[gamma, :3] = -gamma_tolerance
    bad = (freqs < threshold) | ~np.isfinite(freqs)  # NaN counts as imaginary (as in MBD)
    return Stability(
        dynamically_stable=not bool(bad.any()),
        min_frequency=float(freqs.min()),
        max_frequency=float(freqs.max()),
        n_imaginary=int(bad.sum()),
    )


def run_mesh(phonon: Phonopy, mesh: float | Sequence[int] = DEFAULT_MESH) -> dict[str, np.ndarray]:
    """Frequencies on a Gamma-centred q-mesh (irreducible points with weights): phonopy's
    ``run_mesh``; the mesh that the thermal properties and the DOS then use.

    Returns
    -------
    dict
        ``qpoints`` (n_q, 3) reduced, ``weights`` (n_q,), ``frequencies`` (n_q, n_bands) THz,
        ``mesh`` the three mesh numbers.
    """
    with warnings.catch_warnings():
        # phonopy 4 notes when it turns a length mesh into a generalized regular grid to keep
        # the point group: its own choice, stated in the document's mesh numbers
        warnings.filterwarnings("ignore", message=".*generalized regular grid.*")
        phonon.run_mesh(mesh, is_gamma_center=True)
    data = phonon.get_mesh_dict()
    return {
        "qpoints": np.asarray(data["qpoints"]),
        "weights": np.asarray(data["weights"]),
        "frequencies": np.asarray(data["frequencies"]),
        "mesh": np.asarray(phonon.mesh.mesh_numbers),
    }


def thermal_properties(
    phonon: Phonopy, t_min: float = 0.0, t_max: float = 1000.0, t_step: float = 10.0
) -> dict[str, list[float]]:
    """Harmonic free energy, entropy and heat capacity on the current mesh (``run_mesh``).

    The three acoustic modes at Gamma are left out of the sums (phonopy's
    ``exclude_gamma_acoustic``): their frequencies are zero up to numerical noise, and a mode
    at 1e-7 THz would add a noise-driven k T ln(h nu / k T) to the free energy.

    Returns
    -------
    dict
        ``temperatures`` (K), ``free_energy`` (kJ/mol), ``entropy`` (J/K/mol),
        ``heat_capacity`` (J/K/mol); per mole of phonopy's primitive cell.
    """
    if phonon.mesh is None:
        raise ValueError("no q-mesh: call run_mesh(phonon) before thermal_properties")
    phonon.run_thermal_properties(
        t_min=t_min, t_max=t_max, t_step=t_step, exclude_gamma_acoustic=True
    )
    data = phonon.get_thermal_properties_dict()
    keys = ("temperatures", "free_energy", "entropy", "heat_capacity")
    return {k: np.asarray(data[k], dtype=float).tolist() for k in keys}


def total_dos(phonon: Phonopy) -> PhononDos:
    """The total phonon DOS on the current mesh (``run_mesh``), states/THz per primitive cell,
    as a pymatgen ``PhononDos``."""
    if phonon.mesh is None:
        raise ValueError("no q-mesh: call run_mesh(phonon) before total_dos")
    phonon.run_total_dos()
    data = phonon.get_total_dos_dict()
    return PhononDos(np.asarray(data["frequency_points"]), np.asarray(data["total_dos"]))


def _label(text: str) -> str:
    """phonopy's LaTeX label (``$\\mathrm{X}$``, ``$\\Gamma$``) as pymatgen writes it."""
    text = text.strip("$").replace("\\mathrm{", "").replace("}", "").replace("{", "")
    return "\\Gamma" if text in ("\\Gamma", "GAMMA", "G") else text


def band_structure(phonon: Phonopy, npoints: int = 51) -> PhononBandStructureSymmLine:
    """Frequencies along seekpath's standard path for the primitive cell (Hinuma et al. 2017),
    as a pymatgen ``PhononBandStructureSymmLine`` (THz; reciprocal lattice without 2 pi, as
    phonopy's band.yaml).

    Parameters
    ----------
    npoints
        q-points per path segment, both ends included.
    """
    from phonopy.phonon.band_structure import get_band_qpoints_by_seekpath
    from pymatgen.io.phonopy import get_pmg_structure

    bands, labels, connections = get_band_qpoints_by_seekpath(phonon.primitive, npoints)
    phonon.run_band_structure(bands, path_connections=connections, labels=labels)
    data = phonon.get_band_structure_dict()
    qpoints = np.concatenate([np.asarray(q) for q in data["qpoints"]])
    freqs = np.concatenate([np.asarray(f) for f in data["frequencies"]])
    # segment ends carry labels: (start, end) of each segment, a new start after a break
    names = [_label(t) for t in labels]
    labels_dict: dict[str, Any] = {}
    k = 0
    for segment, connected in zip(data["qpoints"], connections, strict=True):
        labels_dict.setdefault(names[k], np.asarray(segment[0]))
        labels_dict.setdefault(names[k + 1], np.asarray(segment[-1]))
        k += 1 if connected else 2
    reciprocal = Lattice(np.linalg.inv(np.asarray(phonon.primitive.cell)).T)
    return PhononBandStructureSymmLine(
        qpoints,
        freqs.T,
        reciprocal,
        labels_dict=labels_dict,
        coords_are_cartesian=False,
        structure=get_pmg_structure(phonon.primitive),
    )


def band_path_qpoints(bs: PhononBandStructureSymmLine) -> np.ndarray:
    """(n_q, 3) reduced q-points of a band structure."""
    return np.array([q.frac_coords for q in bs.qpoints])
