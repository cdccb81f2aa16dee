"""Structure input: pymatgen ``Structure``, ASE ``Atoms`` and files, with labels.

Label rules: the ``label`` in an extxyz frame's info, else the file
stem, with ``-N`` appended for the N-th frame (0-based) of a multi-frame file. A ``Structure``
carries its label in ``structure.properties["label"]`` and ``Atoms`` in ``atoms.info["label"]``.
Unlabelled in-memory structures get ``<reduced formula>-<index in the input>``. Labels must be
unique within a screen.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from monty.json import MSONable
from pymatgen.core import Structure
from pymatgen.io.ase import AseAtomsAdaptor

STRUCTURE_SUFFIXES = (".cif", ".vasp", ".poscar", ".xyz", ".extxyz", ".json", ".traj")
STRUCTURE_NAMES = ("POSCAR", "CONTCAR")


@dataclass
class UnreadableInput(MSONable):
    """A placeholder for an input that could not be turned into a structure.

    It travels through a flow in place of the structure so that the job can write a ``failed``
    document with the reason instead of the whole screen stopping.

    Attributes
    ----------
    label
        The label the structure would have had: the file's stem, or ``<stem>-<n>`` for the
        unreadable frame n of a multi-frame file.
    source
        The file's path (``safe_text``: undecodable bytes as ``\\xNN``).
    reason
        Why it could not be read; the failed document's reason. ``source`` and ``reason``
        make its result key (``tasks.batch.input_key``).
    """

    label: str
    source: str
    reason: str


StructureInput = Structure | Atoms | str | Path


def safe_text(text: str) -> str:
    """``text`` as UTF-8 can store it: the undecodable bytes of a file name (which Python
    holds as surrogate escapes) written as ``\\xNN``; any other text unchanged."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # lone surrogates that are not escaped bytes
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def get_label(obj: Structure | Atoms | UnreadableInput) -> str | None:
    """Return the label carried by a structure, or None when it has none."""
    if isinstance(obj, UnreadableInput):
        return obj.label
    label = obj.properties.get("label") if isinstance(obj, Structure) else obj.info.get("label")
    return None if label is None else str(label)


def with_label(structure: Structure, label: str) -> Structure:
    """Return a copy of ``structure`` whose ``properties["label"]`` is ``label``."""
    new = structure.copy()
    new.properties = {**(structure.properties or {}), "label": label}
    return new


#: Per-structure settings an extxyz frame's info may carry (Matbench Discovery's kappa-103 frames
#: carry the first three), kept in ``structure.properties``.
CARRIED_INFO = ("fc2_supercell", "fc3_supercell", "q_point_mesh", "supercell_matrix")


def to_structure(obj: Structure | Atoms) -> Structure:
    """Convert ASE ``Atoms`` to a pymatgen ``Structure`` keeping ``info["label"]`` and the
    per-structure settings of ``CARRIED_INFO``."""
    if isinstance(obj, Structure):
        return obj
    if not isinstance(obj, Atoms):
        raise TypeError(f"expected a pymatgen Structure or ASE Atoms, got {type(obj).__name__}")
    structure = AseAtomsAdaptor.get_structure(obj)
    label = obj.info.get("label")
    props = dict(structure.properties or {})
    if label is not None:
        props["label"] = str(label)
    for name in CARRIED_INFO:
        if obj.info.get(name) is not None:
            props[name] = np.asarray(obj.info[name]).tolist()
    structure.properties = props
    return structure


def to_atoms(obj: Structure | Atoms) -> Atoms:
    """Convert a pymatgen ``Structure`` to ASE ``Atoms`` (a copy), keeping the label."""
    if isinstance(obj, Atoms):
        return obj.copy()
    atoms = AseAtomsAdaptor.get_atoms(obj)
    label = (obj.properties or {}).get("label")
    if label is not None:
        atoms.info["label"] = str(label)
    return atoms


def _is_structure_file(path: Path) -> bool:
    name = path.name
    return path.suffix.lower() in STRUCTURE_SUFFIXES or any(
        name.startswith(stem) for stem in STRUCTURE_NAMES
    )


def read_file(path: str | Path) -> list[Structure | UnreadableInput]:
    """Read every structure of one file (CIF, POSCAR, extxyz with many frames, ...).

    A frame of a multi-frame file that cannot be read (a truncated last frame) becomes an
    ``UnreadableInput`` after the good frames, which are kept.

    Raises
    ------
    ValueError
        When the file cannot be parsed or holds no structure; the message names the file.
    """
    path = Path(path)
    if path.is_symlink() and not path.exists():
        try:
            path.resolve(strict=True)
        except RuntimeError as exc:  # Python 3.11 reports a loop this way
            raise ValueError(safe_text(f"{path}: symbolic link loop ({exc})")) from exc
        except OSError as exc:
            if "loop" in str(exc).lower() or getattr(exc, "errno", None) == 40:
                raise ValueError(safe_text(f"{path}: symbolic link loop")) from exc
            raise ValueError(safe_text(f"{path}: dangling symbolic link")) from exc
        raise ValueError(safe_text(f"{path}: dangling symbolic link"))
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    suffix = path.suffix.lower()
    broken: str | None = None  # why the frame after the last good one could not be read
    try:
        if suffix == ".cif":
            from pymatgen.io.cif import CifParser

            structures = CifParser(path).parse_structures(primitive=False)
            frames: list[Structure | Atoms] = list(structures)
        elif suffix in (".xyz", ".extxyz", ".traj"):
            frames, broken = _read_frames(path)
        else:
            frames = [Structure.from_file(path)]
            if suffix in (".vasp", ".poscar") or path.name.startswith(STRUCTURE_NAMES):
                _check_poscar_counts(path)
    except Exception as exc:  # any parser error is a bad input, not a crash
        raise ValueError(
            safe_text(f"{path}: cannot read structure ({type(exc).__name__}: {exc})")
        ) from exc
    if not frames:
        raise ValueError(safe_text(f"{path}: file holds no structure"))
    out: list[Structure | UnreadableInput] = []
    multi = len(frames) > 1 or broken is not None
    stem = safe_text(path.stem)
    for i, frame in enumerate(frames):
        structure = to_structure(frame)
        label = get_label(frame)
        if label is None:
            label = f"{stem}-{i}" if multi else stem
        structure = with_label(structure, safe_text(label))
        if safe_text(str(path)) != str(path):  # keep the name's exact bytes, as hex
            structure.properties["source_file"] = safe_text(str(path))
            structure.properties["source_file_hex"] = os.fsencode(path).hex()
        out.append(structure)
    if broken is not None:  # the good frames are kept; the bad one fails on its own
        n = len(frames)
        reason = safe_text(f"{path}: frame {n} cannot be read ({broken})")
        out.append(UnreadableInput(label=f"{stem}-{n}", source=safe_text(str(path)), reason=reason))
    return out


def _check_poscar_counts(path: Path) -> None:
    """Raise ``ValueError`` when a POSCAR's species counts disagree with the number of
    coordinate lines (pymatgen would read fewer atoms without a word)."""
    lines = path.read_text(errors="replace").splitlines()

    def ints(line: str) -> list[int] | None:
        try:
            return [int(x) for x in line.split()]
        except ValueError:
            return None

    i = 5 if ints(lines[5]) else 6
    counts = ints(lines[i]) or []
    i += 1
    if lines[i].strip()[:1] in ("s", "S"):  # selective dynamics
        i += 1
    coords = 0
    for line in lines[i + 1 :]:
        parts = line.split()
        try:
            [float(x) for x in parts[:3]]
        except ValueError:
            break
        if len(parts) < 3:
            break
        coords += 1
    if coords != sum(counts):
        raise ValueError(
            f"species counts {' '.join(map(str, counts))} make {sum(counts)} atoms but "
            f"{coords} coordinate lines follow"
        )


def _read_frames(path: Path) -> tuple[list[Atoms], str | None]:
    """The frames of an extxyz/xyz/traj file; when one cannot be read (a truncated last frame),
    the frames before it and why."""
    from ase.io import iread

    frames: list[Atoms] = []
    try:
        for frame in iread(path, index=":"):
            frames.append(frame)
    except Exception as exc:
        if not frames:
            raise
        return frames, f"{type(exc).__name__}: {exc}"
    return frames, None


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Expand folders into the structure files they contain (sorted, not recursive)."""
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            # broken links are kept: reading them says why, instead of skipping them in silence
            out.extend(
                sorted(
                    f
                    for f in p.iterdir()
                    if (f.is_file() or (f.is_symlink() and not f.exists()))
                    and _is_structure_file(f)
                )
            )
        elif p.exists():
            out.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or directory")
    return out


def load_structures(
    inputs: StructureInput | Sequence[StructureInput],
) -> list[Structure | UnreadableInput]:
    """Turn any mix of inputs into labelled structures.

    Parameters
    ----------
    inputs
        Structures, ``Atoms``, file paths or folders (or a list of them).

    Returns
    -------
    list
        One labelled ``Structure`` per structure found, in input order; an ``UnreadableInput``
        for each file that could not be parsed, so the screen can report it and go on.

    Raises
    ------
    FileNotFoundError
        For a path that does not exist (a bad argument, not a bad structure).
    ValueError
        When two structures share a label.
    """
    if isinstance(inputs, Structure | Atoms | str | Path):
        inputs = [inputs]
    out: list[Structure | UnreadableInput] = []
    sources: list[str] = []  # where each of ``out`` came from, for error messages
    for i, item in enumerate(inputs):
        if isinstance(item, UnreadableInput):
            out.append(item)
        elif isinstance(item, str | Path):
            for path in expand_paths([item]):
                try:
                    out.extend(read_file(path))
                except ValueError as exc:
                    out.append(
                        UnreadableInput(
                            label=safe_text(path.stem),
                            source=safe_text(str(path)),
                            reason=safe_text(str(exc)),
                        )
                    )
                sources.extend([safe_text(str(path))] * (len(out) - len(sources)))
        elif isinstance(item, Structure | Atoms):
            structure = to_structure(item)
            label = get_label(item) or f"{structure.composition.reduced_formula}-{i}"
            out.append(with_label(structure, safe_text(label)))
        else:
            raise TypeError(
                f"input {i}: expected a Structure, Atoms or a path, got {type(item).__name__}"
            )
        sources.extend([f"input {i}"] * (len(out) - len(sources)))
    seen: dict[str, int] = {}
    for j, obj in enumerate(out):
        label = get_label(obj)
        if label in seen:
            where = sorted({sources[seen[label]], sources[j]})
            raise ValueError(
                f"duplicate label {label!r} (from {' and '.join(where)}); labels must be unique "
                "within a screen: rename the files or set distinct labels"
            )
        seen[label] = j
    return out


def structure_problem(structure: Structure, min_distance: float = 0.5) -> str | None:
    """Return why a structure cannot be computed, or None when it looks sound.

    Checks: no sites, non-finite lattice or coordinates, a degenerate cell, and atoms closer
    than ``min_distance`` (Angstrom) to each other or to their own periodic images.
    """
    if len(structure) == 0:
        return "empty structure (no sites)"
    lattice = np.asarray(structure.lattice.matrix, dtype=float)
    if not np.all(np.isfinite(lattice)):
        return "lattice has non-finite (NaN or inf) entries"
    if not np.all(np.isfinite(structure.frac_coords)) or not np.all(
        np.isfinite(structure.cart_coords)
    ):
        return "coordinates have non-finite (NaN or inf) entries"
    volume = abs(float(np.linalg.det(lattice)))
    if not math.isfinite(volume) or volume < 1e-3 * len(structure):
        return f"degenerate cell (volume {volume:.3g} A^3)"
    if not structure.is_ordered:
        return "disordered structure (partial occupancies); order it first"
    dmin = _min_distance(structure)
    if dmin < min_distance:
        return f"overlapping atoms: closest pair {dmin:.3f} A apart (< {min_distance} A)"
    return None


def _min_distance(structure: Structure, cutoff: float = 3.0) -> float:
    """Smallest distance between two sites, periodic images included (Angstrom).

    Distances beyond ``cutoff`` are not looked at (inf is returned when none is closer).
    """
    centers, points, _, dists = structure.get_neighbor_list(r=cutoff, exclude_self=False)
    same = (centers == points) & (dists < 1e-8)
    dists = dists[~same]
    return float(np.min(dists)) if len(dists) else float("inf")
