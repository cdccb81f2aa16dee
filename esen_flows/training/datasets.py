"""Your own labelled frames: extxyz files, folders of them, or ASE databases, read with their
energies, forces and stresses checked, for training and fine-tuning (#23's first layer).

Labels are read as ASE stores them (the calculator results an extxyz writer or an ASE database
keeps: eV, eV/A, eV/A^3, stress in Voigt or 3x3) or under named keys (``LabelKeys``:
``REF_energy`` in ``atoms.info``, ``REF_forces`` in ``atoms.arrays``, ``REF_stress`` in
``atoms.info``; for a database, the row's key-value pairs and ``data``). A frame that lacks a
label the loss needs is a one-line error naming its file and index, or with
``allow_missing=True`` it is skipped and counted. Values far beyond physical ranges (a stress
given in GPa or kbar, forces in meV/A) are refused with the reason: a unit error caught here
costs nothing, one caught after training costs the training.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read

#: File endings read as extended XYZ, and as ASE databases.
EXTXYZ = (".extxyz", ".xyz")
DATABASES = (".db", ".json")
#: Largest plausible |stress| component, eV/A^3 (160 GPa): beyond it the stress is taken to be
#: in GPa or kbar.
MAX_STRESS = 1.0
#: Largest plausible |force| component, eV/A: beyond it the forces are taken to be in meV/A.
MAX_FORCE = 100.0
#: Largest plausible |energy| per atom, eV: beyond it the energies are taken to be in meV.
MAX_ENERGY_PER_ATOM = 1.0e3
LABELS = ("energy", "forces", "stress")


@dataclass(frozen=True)
class LabelKeys:
    """Where the labels are: None for ASE's own (the calculator results), or a key.

    Attributes
    ----------
    energy
        Key in ``atoms.info`` (eV).
    forces
        Key in ``atoms.arrays`` (eV/A, (n, 3)).
    stress
        Key in ``atoms.info`` (eV/A^3, Voigt 6 or 3x3, ASE's sign).
    """

    energy: str | None = None
    forces: str | None = None
    stress: str | None = None


@dataclass
class Manifest:
    """What was read: files (sha256 and frames each), frames kept and skipped, elements.

    Attributes
    ----------
    files
        One dict per file: ``path``, ``sha256``, ``frames`` (kept), ``skipped``.
    elements
        Sorted element symbols of the kept frames.
    """

    files: list[dict[str, Any]] = field(default_factory=list)
    elements: list[str] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return sum(f["frames"] for f in self.files)

    @property
    def skipped(self) -> int:
        return sum(f["skipped"] for f in self.files)


def dataset_files(paths: str | Path | Iterable[str | Path]) -> list[Path]:
    """The files behind ``paths``: files as given, folders expanded to their extxyz files and
    ``.db`` databases (sorted; a ``.json`` database is read when named). ``ValueError`` naming
    a path that is missing or holds none."""
    items = [paths] if isinstance(paths, str | Path) else list(paths)
    out: list[Path] = []
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            # .json only when named: a folder's JSON files are rarely ASE databases
            found = sorted(p for p in path.iterdir() if p.suffix in (*EXTXYZ, ".db"))
            if not found:
                raise ValueError(f"{path}: no extxyz file or ASE database in this folder")
            out += found
        elif path.is_file():
            out.append(path)
        else:
            raise ValueError(f"{path}: no such file or folder")
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _frames_of(path: Path) -> list[Atoms]:
    if path.suffix in DATABASES:
        from ase.db import connect

        out = []
        try:
            rows = list(connect(path).select())
        except Exception as exc:
            raise ValueError(f"{path}: not readable as an ASE database ({exc})") from None
        for row in rows:
            atoms = row.toatoms(add_additional_information=True)
            atoms.info.update(atoms.info.pop("key_value_pairs", {}) or {})
            for key, value in (atoms.info.pop("data", {}) or {}).items():
                target = atoms.arrays if np.shape(value)[:1] == (len(atoms),) else atoms.info
                target[key] = np.asarray(value)
            out.append(atoms)
        return out
    try:
        return read(path, index=":", format="extxyz")
    except Exception as exc:
        raise ValueError(f"{path}: not readable as extended XYZ ({exc})") from None


def _labels(atoms: Atoms, keys: LabelKeys) -> dict[str, np.ndarray | float | None]:
    """Energy (eV), forces ((n, 3) eV/A) and stress ((3, 3) eV/A^3) of one frame, None where
    missing."""
    calc = atoms.calc
    results = getattr(calc, "results", {}) if calc is not None else {}
    energy = atoms.info.get(keys.energy) if keys.energy else results.get("energy")
    forces = atoms.arrays.get(keys.forces) if keys.forces else results.get("forces")
    stress = atoms.info.get(keys.stress) if keys.stress else results.get("stress")
    if stress is not None:
        stress = np.asarray(stress, dtype=float)
        if stress.shape == (6,):  # Voigt xx yy zz yz xz xy
            xx, yy, zz, yz, xz, xy = stress
            stress = np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
        elif stress.shape == (9,):
            stress = stress.reshape(3, 3)
    return {
        "energy": None if energy is None else float(energy),
        "forces": None if forces is None else np.asarray(forces, dtype=float),
        "stress": stress,
    }


def _problem(labels: dict[str, Any], need: Sequence[str], n_atoms: int) -> str | None:
    """Why a frame's labels cannot be trained on, or None."""
    missing = [name for name in need if labels[name] is None]
    if missing:
        return f"no {' or '.join(missing)}"
    forces, stress, energy = labels["forces"], labels["stress"], labels["energy"]
    if forces is not None and np.shape(forces) != (n_atoms, 3):
        return f"forces of shape {np.shape(forces)} for {n_atoms} atoms"
    if stress is not None and np.shape(stress) != (3, 3):
        return f"stress of shape {np.shape(stress)} (give Voigt 6 or 3x3)"
    for name, value in labels.items():
        if value is not None and not np.all(np.isfinite(value)):
            return f"{name} is not finite"
    if stress is not None and np.abs(stress).max() > MAX_STRESS:
        return (
            f"stress up to {np.abs(stress).max():.3g} eV/A^3 (over {MAX_STRESS * 160.2:.0f} "
            "GPa): is it in GPa or kbar? give eV/A^3 (1 GPa = 0.00624 eV/A^3)"
        )
    if forces is not None and np.abs(forces).max() > MAX_FORCE:
        return f"forces up to {np.abs(forces).max():.3g} eV/A: are they in meV/A? give eV/A"
    if energy is not None and abs(energy) / max(n_atoms, 1) > MAX_ENERGY_PER_ATOM:
        return f"energy of {energy / n_atoms:.3g} eV/atom: is it in meV? give eV"
    return None


def read_labelled(
    paths: str | Path | Iterable[str | Path],
    keys: LabelKeys | None = None,
    need: Sequence[str] = LABELS,
    allow_missing: bool = False,
) -> tuple[list[Atoms], Manifest]:
    """Labelled frames from extxyz files, folders and ASE databases, checked for training.

    Parameters
    ----------
    paths
        A file, a folder (its ``.extxyz``/``.xyz`` files and ``.db``/``.json`` databases) or
        several.
    keys
        Where the labels are (``LabelKeys``; default: ASE's own calculator results).
    need
        The labels the loss needs (``"energy"``, ``"forces"``, ``"stress"``).
    allow_missing
        Skip (and count) a frame that lacks a needed label, instead of refusing the file.

    Returns
    -------
    frames, manifest
        Each frame with a ``SinglePointCalculator`` holding its energy (eV), forces (eV/A) and
        stress (Voigt, eV/A^3) where given, and ``info["source"]`` = "file:index"; the
        manifest of files (sha256), counts and elements.

    Raises
    ------
    ValueError
        One line naming the file and frame: a label missing (without ``allow_missing``), of
        the wrong shape, not finite, or in implausible units (those are never skipped).
    """
    keys = keys or LabelKeys()
    unknown = sorted(set(need) - set(LABELS))
    if unknown:
        raise ValueError(f"need: unknown label(s) {', '.join(unknown)} (choose from {LABELS})")
    frames: list[Atoms] = []
    manifest = Manifest()
    for path in dataset_files(paths):
        kept = skipped = 0
        for index, atoms in enumerate(_frames_of(path)):
            labels = _labels(atoms, keys)
            why = _problem(labels, need, len(atoms))
            if why is not None:
                if allow_missing and why.startswith("no "):
                    skipped += 1
                    continue
                raise ValueError(f"{path}, frame {index}: {why}")
            out = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
            out.info = {k: v for k, v in atoms.info.items() if np.isscalar(v)}
            out.info["source"] = f"{path.name}:{index}"
            stress = labels["stress"]
            out.calc = SinglePointCalculator(
                out,
                energy=labels["energy"],
                forces=labels["forces"],
                stress=None if stress is None else stress.flat[[0, 4, 8, 5, 2, 1]],
            )
            frames.append(out)
            kept += 1
        manifest.files.append(
            {"path": str(path), "sha256": _sha256(path), "frames": kept, "skipped": skipped}
        )
    manifest.elements = sorted({s for a in frames for s in a.get_chemical_symbols()})
    if not frames:
        raise ValueError(f"no usable frame in {', '.join(f['path'] for f in manifest.files)}")
    return frames, manifest


def structure_group(atoms: Atoms, key: str | None = None) -> str:
    """The structure a frame belongs to, for splits that keep a structure's frames together:
    ``atoms.info[key]`` when given (a trajectory or material id), else the chemical formula
    with the atom count (the frames of one relaxation or MD run share both)."""
    if key is not None:
        if key not in atoms.info:
            raise ValueError(f"{atoms.info.get('source', 'a frame')}: no info key {key!r}")
        return str(atoms.info[key])
    return f"{atoms.get_chemical_formula()}/{len(atoms)}"


def split_by_structure(
    frames: Sequence[Atoms], fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0,
    key: str | None = None,
) -> dict[str, list[Atoms]]:  # fmt: skip
    """Train, validation and test frames, split by structure (``structure_group``), not by
    frame: no structure has frames on two sides, so the validation error is that of unseen
    structures. ``fractions`` are of the structures; each split gets at least one when there
    are three or more."""
    from esen_flows.training.data import split_groups

    if len(fractions) != 3 or min(fractions) < 0 or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must be three non-negative numbers summing to 1: {fractions}")
    groups = [structure_group(a, key) for a in frames]
    if len(set(groups)) < 3:
        raise ValueError(
            f"{len(set(groups))} structure(s) cannot be split three ways: give --valid and "
            "--test files, or more structures"
        )
    where = split_groups(groups, fractions, seed)
    out: dict[str, list[Atoms]] = {"train": [], "val": [], "test": []}
    for atoms, group in zip(frames, groups, strict=True):
        out[where[group]].append(atoms)
    return out
