"""Settings of a conductivity calculation (all enter the result key), a structure's own
settings from its properties, and their checks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
from pymatgen.core import Structure

from esen_flows.dynamics.conductivity import (
    METHODS,
    PHONO3PY_DISPLACEMENT,
    RandomDisplacements,
    wigner_available,
)
from esen_flows.dynamics.phonon_properties import GAMMA_ACOUSTIC_TOLERANCE
from esen_flows.dynamics.phonons import PHONOPY_SYMPREC
from esen_flows.io import UnreadableInput
from esen_flows.tasks.settings import (  # noqa: F401 - DISPLACEMENTS importable here
    DISPLACEMENTS,
    PER_STRUCTURE,
    PROBLEMS,
    Settings,
    SymmetricRelax,
    check_displacements,
    checked_mesh,
    checked_supercell,
    relax_from,
    relax_key,
    with_flat,
)

#: A structure's own settings, in its ``properties`` (the keys of Matbench Discovery's kappa-103
#: extxyz frames, so its structures run with their own supercells and meshes).
FC3_SUPERCELL = "fc3_supercell"
FC2_SUPERCELL = "fc2_supercell"
Q_MESH = "q_point_mesh"

#: phono3py's default temperatures of the relaxation-time approximation, K.
PHONO3PY_TEMPERATURES = tuple(float(t) for t in range(0, 1001, 10))


#: Settings that exist only for random displacements (left out of systematic keys).
RANDOM_FIELDS = (
    "displacements",
    "n_snapshots",
    "n_fc2_snapshots",
    "random_seed",
    "plusminus",
    "snapshot_factor",
)


@dataclass(frozen=True)
class ConductivitySettings(Settings):
    """Settings of a conductivity calculation; all enter the result key.

    Attributes
    ----------
    relax
        The relaxation first (``SymmetricRelax``: FIRE, Frechet cell filter, space group kept),
        or None for none.
    supercell_matrix, fc2_supercell_matrix
        fc3 and fc2 supercells (3 integers or 3x3); None: diagonal, from ``min_length`` and
        ``fc2_min_length`` (A, face-to-face widths).
    displacement
        phono3py's displacement distance, A (its default 0.03).
    cutoff_pair_distance
        phono3py's pair cutoff, A (None: every pair, phono3py's default).
    displacements
        ``"systematic"`` (phono3py's single and pair displacements; Matbench Discovery's
        protocol) or ``"random"``: every atom displaced by ``displacement`` in a random
        direction per supercell, force constants fitted with symfc (far fewer supercells).
    n_snapshots, n_fc2_snapshots
        ``"random"``: fc3 and fc2 supercells, a number or ``"auto"`` (phono3py's estimate,
        times ``snapshot_factor`` for fc3); ``n_fc2_snapshots="systematic"`` keeps
        phono3py's systematic fc2 set (what ``fast()`` does: it is small, and its fit skips
        symfc's set-up).
    random_seed, plusminus, snapshot_factor
        ``"random"``: the seed of the directions (recorded: same seed, same result), each
        displacement also reversed (twice the supercells), phono3py's
        ``number_estimation_factor`` (None: its default).
    phono3py_symprec
        phono3py's symmetry tolerance, A (its default 1e-5); also the tolerance of the space
        group compared before and after the relaxation.
    mesh
        q-mesh: three numbers, or a length in A (phonopy's convention).
    temperatures
        K (phono3py's RTA default: 0 to 1000 in steps of 10).
    method
        "rta" (phono3py's default) or "lbte".
    wigner
        Add the coherence term of the Wigner transport equation.
    isotope
        Isotope scattering (natural abundances).
    boundary_mfp
        Boundary mean free path, micrometres (None: none).
    symmetrize
        Symmetrise fc2 and fc3 (translational invariance, index permutation).
    gamma_tolerance
        Acoustic modes at Gamma may reach -``gamma_tolerance`` THz and stay "stable".
    """

    relax: SymmetricRelax | None = field(default_factory=SymmetricRelax)
    supercell_matrix: Any = None
    fc2_supercell_matrix: Any = None
    min_length: float = 7.0
    fc2_min_length: float = 12.0
    displacement: float = PHONO3PY_DISPLACEMENT
    cutoff_pair_distance: float | None = None
    displacements: str = "systematic"
    n_snapshots: int | str = "auto"
    n_fc2_snapshots: int | str = "auto"
    random_seed: int = 0
    plusminus: bool = False
    snapshot_factor: float | None = None
    phono3py_symprec: float = PHONOPY_SYMPREC
    mesh: float | tuple[int, int, int] = 40.0
    temperatures: tuple[float, ...] = PHONO3PY_TEMPERATURES
    method: str = "rta"
    wigner: bool = False
    isotope: bool = False
    boundary_mfp: float | None = None
    symmetrize: bool = True
    gamma_tolerance: float = GAMMA_ACOUSTIC_TOLERANCE

    def __post_init__(self) -> None:
        object.__setattr__(self, "relax", relax_from(self.relax))
        for name in ("supercell_matrix", "fc2_supercell_matrix"):
            if getattr(self, name) is not None:
                matrix = tuple(map(tuple, checked_supercell(getattr(self, name))))
                object.__setattr__(self, name, matrix)
        object.__setattr__(self, "mesh", checked_mesh(self.mesh))
        temps = tuple(float(t) for t in np.atleast_1d(np.asarray(self.temperatures, dtype=float)))
        if not temps or min(temps) < 0 or not all(np.isfinite(temps)):
            raise ValueError(f"temperatures must be finite and >= 0 K, got {self.temperatures!r}")
        object.__setattr__(self, "temperatures", temps)
        for name in ("displacement", "min_length", "fc2_min_length"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        counts = {n: getattr(self, n) for n in ("n_snapshots", "n_fc2_snapshots")}
        if counts["n_fc2_snapshots"] == "systematic":
            counts.pop("n_fc2_snapshots")
        check_displacements(self.displacements, counts)
        if self.displacements == "random" and self.cutoff_pair_distance is not None:
            raise ValueError(
                "cutoff_pair_distance applies to the systematic set only: random displacements "
                "are fitted with symfc over every pair (leave it None)"
            )
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.wigner and not wigner_available():
            raise ValueError(
                "wigner=True needs phono3py's Wigner solver (transport_type 'SMM19', "
                "phono3py 4): this phono3py does not have it"
            )

    @classmethod
    def matbench_discovery(cls, **overrides: Any) -> ConductivitySettings:
        """Matbench Discovery's kappa protocol (kappa-103): FIRE with the Frechet filter and
        FixSymmetry (ASE's 0.01 A) to 1e-4 eV/A within 300 steps; phono3py at 1e-5 A,
        0.03 A displacements, symmetrised fc2 and fc3; the Wigner equation in the RTA with
        isotopes and a 1 m boundary mean free path, at 300 K; 20x20x20 q-points unless a
        structure carries its own (``q_point_mesh``, as its supercells ``fc2_supercell`` and
        ``fc3_supercell``)."""
        preset = cls(
            relax=SymmetricRelax(fmax=1.0e-4, max_steps=300, symprec=1.0e-2),
            displacement=0.03,
            phono3py_symprec=1.0e-5,
            mesh=(20, 20, 20),
            temperatures=(300.0,),
            method="rta",
            wigner=True,
            isotope=True,
            boundary_mfp=1.0e6,
            symmetrize=True,
        )
        return with_flat(preset, overrides)

    def key_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict (relaxation settings only when relaxing)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "relax"}
        out.update(relax_key(self.relax), task="conductivity")
        for name in ("supercell_matrix", "fc2_supercell_matrix"):
            if out[name] is not None:
                out[name] = [list(r) for r in out[name]]
        out["mesh"] = list(out["mesh"]) if isinstance(out["mesh"], tuple) else out["mesh"]
        out["temperatures"] = list(out["temperatures"])
        if self.displacements == "systematic":  # keys as before random displacements existed
            for name in RANDOM_FIELDS:
                out.pop(name)
        else:
            out.pop("cutoff_pair_distance")
        return out

    def random(self) -> RandomDisplacements | None:
        """The random-displacement settings for ``build_phono3py`` (None: systematic)."""
        if self.displacements != "random":
            return None
        return RandomDisplacements(
            n_fc3=self.n_snapshots,
            n_fc2=self.n_fc2_snapshots,
            seed=self.random_seed,
            plusminus=self.plusminus,
            factor=self.snapshot_factor,
        )


def overrides_from_properties(
    items: Sequence[Structure | UnreadableInput],
) -> list[dict[str, Any] | None]:
    """Per-structure settings from the ``fc3_supercell``, ``fc2_supercell`` and
    ``q_point_mesh`` properties of Matbench Discovery's kappa-103 frames (None where a
    structure has none); a malformed one is kept under ``PROBLEMS``, naming the property, and
    fails its structure alone (unless ``make()`` is given that setting explicitly)."""
    out: list[dict[str, Any] | None] = []
    for item in items:
        props = getattr(item, "properties", None) or {}
        own: dict[str, Any] = {}
        for prop, name in (
            (FC3_SUPERCELL, "supercell_matrix"),
            (FC2_SUPERCELL, "fc2_supercell_matrix"),
            (Q_MESH, "mesh"),
        ):
            if props.get(prop) is None:
                continue
            try:
                PER_STRUCTURE[name](props[prop])
            except ValueError as exc:
                own.setdefault(PROBLEMS, {})[name] = f"its {prop} property: {exc}"
                continue
            value = props[prop]
            own[name] = value.tolist() if hasattr(value, "tolist") else value
        out.append(own or None)
    return out
