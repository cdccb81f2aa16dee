"""The settings of every task, declared once: each is a frozen dataclass that makers hold
(``PhononMaker(settings=PhononSettings(...))``), that serialises with MSON (so a maker travels
to FireWorks), and whose ``key_dict()`` is what enters a result's key.

A phonon or conductivity calculation relaxes first under symmetry: its ``relax`` field holds a
``SymmetricRelax`` (or None: no relaxation), nested, not flattened; its key dict lists that
relaxation's fields as it always has (``relax``, ``fmax``, ``max_steps``, ``symprec``), so
stored results keep their keys.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
from monty.json import MSONable

from esen_flows.dynamics.phonon_properties import DEFAULT_MESH, GAMMA_ACOUSTIC_TOLERANCE
from esen_flows.dynamics.phonons import PHONOPY_SYMPREC

#: The fields of a ``SymmetricRelax``, which the makers used to declare flat.
RELAX_FIELDS = ("fmax", "max_steps", "symprec")


def check_relax_settings(fmax: float, max_steps: int, task: str = "relax") -> None:
    """Raise ``ValueError`` for settings under which no relaxation can converge.

    ``fmax`` must be a finite number above 0 (eV/A) and ``max_steps`` an integer of at least 1;
    ``task`` is ``"relax"`` or ``"static"`` (a static evaluation has no optimiser settings).
    """
    if task not in ("relax", "static"):
        raise ValueError(f"task must be 'relax' or 'static', got {task!r}")
    if task == "static":
        return
    if isinstance(fmax, bool) or not isinstance(fmax, int | float) or not math.isfinite(fmax):
        raise ValueError(f"fmax must be a positive number (eV/A), got {fmax!r}")
    if fmax <= 0:
        raise ValueError(f"fmax must be a positive number (eV/A), got {fmax!r}")
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be an integer of at least 1, got {max_steps!r}")


class Settings(MSONable):
    """What every task's settings is: MSON-serialisable, with the dict its result keys hash.

    Calling a settings object returns it, with a ``DeprecationWarning``: the makers' old
    ``maker.settings()`` (now the attribute ``maker.settings``) keeps working for one release.
    """

    def key_dict(self) -> dict[str, Any]:  # pragma: no cover - every task's own
        raise NotImplementedError

    def __call__(self, task: str | None = None) -> Any:
        warnings.warn(
            "maker.settings() is deprecated and will be removed: maker.settings is the settings",
            DeprecationWarning,
            stacklevel=2,
        )
        return self if task is None else replace(self, task=task)


@dataclass(frozen=True)
class RelaxSettings(Settings):
    """Settings of a relaxation or a static evaluation; all enter the result key.

    Attributes
    ----------
    task
        ``"relax"`` or ``"static"`` (no optimiser settings in a static key).
    fmax
        Force and cell-gradient threshold, eV/A.
    max_steps
        FIRE step limit per structure.
    relax_cell
        Relax the cell too (Frechet cell filter).
    min_distance
        Atoms closer than this (A) make the structure fail as overlapping.

    The precision the potential computes in is added to the key by ``run_relaxations``.
    """

    task: str = "relax"
    fmax: float = 0.05
    max_steps: int = 500
    relax_cell: bool = True
    min_distance: float = 0.5

    def __post_init__(self) -> None:
        check_relax_settings(self.fmax, self.max_steps, self.task)

    def key_dict(self) -> dict[str, Any]:
        """The settings that matter for this task (a static run has no optimiser settings)."""
        if self.task == "static":
            return {"task": "static", "min_distance": self.min_distance}
        return {
            "task": self.task,
            "fmax": self.fmax,
            "max_steps": self.max_steps,
            "relax_cell": self.relax_cell,
            "min_distance": self.min_distance,
        }


@dataclass(frozen=True)
class NVESettings(Settings):
    """Settings of an NVE energy-conservation run; all enter the key.

    Attributes
    ----------
    temperature
        Initial temperature, K.
    timestep_fs
        Velocity-Verlet time step, fs.
    steps
        Number of steps.
    sample_every
        Steps between energy samples.
    threshold
        Largest |drift| that counts as conserving, meV/atom/ps.
    seed
        Seed of the initial velocities.
    """

    temperature: float = 300.0
    timestep_fs: float = 1.0
    steps: int = 2000
    sample_every: int = 10
    threshold: float = 1.0
    seed: int = 0

    def __call__(self, temperature: float | None = None) -> NVESettings:  # type: ignore[override]
        """The old ``EnergyConservationMaker.settings(temperature)``, for one release."""
        warnings.warn(
            "maker.settings(temperature) is deprecated and will be removed: use "
            "dataclasses.replace(maker.settings, temperature=...)",
            DeprecationWarning,
            stacklevel=2,
        )
        return self if temperature is None else replace(self, temperature=float(temperature))

    def key_dict(self) -> dict[str, Any]:
        """The settings as the key sees them."""
        return {"task": "nve", **{f.name: getattr(self, f.name) for f in fields(self)}}


@dataclass(frozen=True)
class SymmetricRelax(MSONable):
    """The relaxation before a phonon or conductivity calculation: FIRE with the Frechet cell
    filter, the space group kept (ASE's ``FixSymmetry``).

    Attributes
    ----------
    fmax
        Force and cell-force threshold, eV/A.
    max_steps
        Step limit (an unconverged relaxation goes on and is flagged in the document).
    symprec
        Tolerance (A) of the space group kept; the cell is symmetrised to it exactly first.
    """

    fmax: float = 1.0e-4
    max_steps: int = 1000
    symprec: float = 1.0e-3

    def __post_init__(self) -> None:
        check_relax_settings(self.fmax, self.max_steps)
        if not self.symprec > 0:
            raise ValueError(f"symprec must be positive, got {self.symprec}")


def relax_from(value: Any) -> SymmetricRelax | None:
    """A ``relax`` field's value: a ``SymmetricRelax``, None (no relaxation), or as given
    before (True: the defaults, False: none; a dict from JSON)."""
    if value is None or value is False:
        return None
    if value is True:
        return SymmetricRelax()
    if isinstance(value, dict):
        return SymmetricRelax(**{k: v for k, v in value.items() if not k.startswith("@")})
    if isinstance(value, SymmetricRelax):
        return value
    raise ValueError(f"relax must be a SymmetricRelax, True/False or None, got {value!r}")


def relax_key(relax: SymmetricRelax | None) -> dict[str, Any]:
    """The relaxation's part of a key (as when its fields were flat)."""
    if relax is None:
        return {"relax": False}
    return {
        "relax": True,
        "fmax": relax.fmax,
        "max_steps": relax.max_steps,
        "symprec": relax.symprec,
    }


def with_flat(settings: Any, flat: dict[str, Any]) -> Any:
    """``settings`` with flat fields applied, as the makers took them before settings were
    nested: ``relax`` (a bool, a ``SymmetricRelax``, a dict or None) and
    ``fmax``/``max_steps``/``symprec`` go to the relaxation (ignored when there is none: they
    did not enter the key then either), everything else to ``settings`` itself."""
    flat = dict(flat)
    changes: dict[str, Any] = {}
    if hasattr(settings, "relax") and not isinstance(settings, RelaxSettings):
        relax = settings.relax
        if "relax" in flat:  # True: the current (or default) relaxation; else as relax_from
            value = flat.pop("relax")
            relax = (relax or SymmetricRelax()) if value is True else relax_from(value)
        sub = {k: flat.pop(k) for k in RELAX_FIELDS if k in flat}
        if relax is not None and sub:
            relax = replace(relax, **sub)
        changes["relax"] = relax
    return replace(settings, **changes, **flat)


#: How displaced supercells are chosen.
DISPLACEMENTS = ("systematic", "random")
#: ``PhononSettings`` fields that exist only for random displacements (left out of systematic
#: keys, which stay as they were).
PHONON_RANDOM_FIELDS = ("displacements", "n_snapshots", "random_seed", "plusminus")


def check_displacements(displacements: str, counts: dict[str, Any]) -> None:
    """``ValueError`` unless ``displacements`` is one of ``DISPLACEMENTS`` and each of
    ``counts`` (snapshot numbers) is ``"auto"`` or an integer >= 1."""
    if displacements not in DISPLACEMENTS:
        raise ValueError(f"displacements must be one of {DISPLACEMENTS}, got {displacements!r}")
    for name, value in counts.items():
        ok = value == "auto" or (
            isinstance(value, int) and not isinstance(value, bool) and value >= 1
        )
        if not ok:
            raise ValueError(f"{name} must be 'auto' or an integer >= 1, got {value!r}")


def checked_supercell(matrix: Any) -> list[list[int]]:
    """A supercell matrix (3 integers or 3x3) as a 3x3 list of ints; ``ValueError`` if bad."""
    try:
        array = np.asarray(matrix, dtype=float)
    except (TypeError, ValueError):
        array = np.zeros(0)
    if array.shape == (3,):
        array = np.diag(array)
    if array.shape != (3, 3) or not np.allclose(array, np.rint(array)):
        raise ValueError(
            f"supercell_matrix must be 3 integers or a 3x3 integer matrix, got {matrix!r}"
        )
    if abs(np.linalg.det(array)) < 0.5:
        raise ValueError(f"supercell_matrix {matrix!r} is singular")
    # numpy integers, as always: the result key hashes them as text ("2"), so stored results
    # keep their keys
    return [list(r) for r in array.astype(int)]


def checked_mesh(mesh: Any) -> float | tuple[int, int, int]:
    """A q-mesh as a positive length (A) or three positive integers; ``ValueError`` if bad."""
    if isinstance(mesh, int | float) and not isinstance(mesh, bool):
        if not mesh > 0:
            raise ValueError(f"a mesh length must be positive, got {mesh}")
        return float(mesh)
    try:
        numbers = tuple(int(m) for m in mesh)
        ok = len(numbers) == 3 and all(m >= 1 for m in numbers)
        ok = ok and np.allclose(np.asarray(mesh, dtype=float), numbers)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"mesh must be a length in A or 3 positive integers, got {mesh!r}")
    return numbers  # type: ignore[return-value]


def _keep_number(mesh: Any) -> float | tuple[int, int, int]:
    """A mesh checked, a length kept as given (an integer length stays one in the key)."""
    checked = checked_mesh(mesh)
    return mesh if isinstance(checked, float) else checked


@dataclass(frozen=True)
class PhononSettings(Settings):
    """Settings of a phonon calculation; all enter the result key.

    Attributes
    ----------
    relax
        The relaxation first (``SymmetricRelax``), or None for none.
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
    displacements
        ``"systematic"`` (phonopy's single displacements) or ``"random"``: every atom displaced
        by ``displacement`` in a random direction per supercell, force constants fitted with
        symfc (far fewer supercells for low-symmetry cells).
    n_snapshots, random_seed, plusminus
        ``"random"``: supercells (a number or ``"auto"``, phonopy's estimate), the seed of the
        directions (recorded in the key: same seed, same result), each displacement also
        reversed (twice the supercells; cancels the even-order error of the differences).

    Examples
    --------
    >>> settings = PhononSettings(relax=SymmetricRelax(fmax=1e-3), min_length=12.0)
    >>> settings.relax.fmax, settings.key_dict()["fmax"]  # nested, flat in the key as before
    (0.001, 0.001)
    >>> PhononSettings(relax=None).key_dict()["relax"]
    False
    """

    relax: SymmetricRelax | None = field(default_factory=SymmetricRelax)
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
    displacements: str = "systematic"
    n_snapshots: int | str = "auto"
    random_seed: int = 0
    plusminus: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "relax", relax_from(self.relax))
        check_displacements(self.displacements, {"n_snapshots": self.n_snapshots})
        if self.supercell_matrix is not None:
            matrix = tuple(map(tuple, checked_supercell(self.supercell_matrix)))
            object.__setattr__(self, "supercell_matrix", matrix)
        for name in ("mesh", "dos_mesh"):
            object.__setattr__(self, name, _keep_number(getattr(self, name)))
        for name in ("displacement", "min_length", "t_step"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.t_max < self.t_min:
            raise ValueError(f"t_max ({self.t_max}) is below t_min ({self.t_min})")

    def key_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict (relaxation settings only when relaxing)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "relax"}
        out.update(relax_key(self.relax), task="phonon")
        if self.displacements == "systematic":  # keys as before random displacements existed
            for name in PHONON_RANDOM_FIELDS:
                out.pop(name)
        if out["supercell_matrix"] is not None:
            out["supercell_matrix"] = [list(r) for r in out["supercell_matrix"]]
        for name in ("mesh", "dos_mesh"):
            if isinstance(out[name], tuple):
                out[name] = list(out[name])
        return out


#: The settings a structure may have of its own (``overrides`` of the tasks), with their checks.
PER_STRUCTURE = {
    "supercell_matrix": checked_supercell,
    "fc2_supercell_matrix": checked_supercell,
    "mesh": checked_mesh,
}
#: Per-structure values that could not be read (``overrides_from_properties``): name -> why.
PROBLEMS = "problems"


def own_settings(
    base: dict[str, Any], override: dict[str, Any] | None, allowed: tuple[str, ...]
) -> dict[str, Any]:
    """One structure's settings dict: ``base`` (a ``key_dict``) with its own values, checked.

    Raises
    ------
    ValueError
        For a name not in ``allowed`` or a malformed value (the task fails that structure
        alone, with this message).
    """
    if not override:
        return base
    if override.get(PROBLEMS):
        raise ValueError("; ".join(override[PROBLEMS].values()))
    out = dict(base)
    for name, value in override.items():
        if name == PROBLEMS:
            continue
        if name not in allowed:
            raise ValueError(f"{name!r} is not a per-structure setting here ({', '.join(allowed)})")
        if value is None:
            continue
        try:
            checked = PER_STRUCTURE[name](value)
        except ValueError as exc:
            raise ValueError(f"its {name}: {exc}") from None
        out[name] = list(checked) if isinstance(checked, tuple) else checked
    return out
