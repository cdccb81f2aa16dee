"""Training data made with a reference potential (EMT plays the part DFT plays for eSEN).

``generate_dataset`` builds base crystals (elements on fcc/bcc/hcp, ordered binaries, random
decorations of small supercells), derives frames from each (volume and shear strains, rattles,
vacancies, snapshots of short Langevin runs up to above the melt), labels every frame with the
reference potential's energy, forces and stress, and splits by base crystal, so that no crystal
has frames on both sides of a split. Everything follows from one seed.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixCom
from ase.io import read, write
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

from esen_flows.potentials import Potential

#: Elements with EMT parameters for metals, and their experimental fcc lattice constants (A)
#: (the starting volumes; Vegard's law for alloys).
EMT_METALS: dict[str, float] = {
    "Al": 4.05,
    "Cu": 3.61,
    "Ag": 4.09,
    "Au": 4.08,
    "Ni": 3.52,
    "Pd": 3.89,
    "Pt": 3.92,
}

#: Experimental melting points (K), the scale of the MD temperatures.
MELTING_POINTS: dict[str, float] = {
    "Al": 933.0,
    "Cu": 1358.0,
    "Ag": 1235.0,
    "Au": 1337.0,
    "Ni": 1728.0,
    "Pd": 1828.0,
    "Pt": 2041.0,
}

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class DatasetSettings:
    """What ``generate_dataset`` makes.

    Attributes
    ----------
    elements
        Chemical elements (each must be in ``EMT_METALS``).
    seed
        Seed of every random choice (decorations, strains, rattles, MD).
    random_cells
        Number of randomly decorated small supercells (2-3 elements, 2-8 sites).
    strains
        Isotropic linear strains applied to each base crystal (unrattled frames).
    rattled
        Frames per base crystal with a random symmetric strain and random displacements.
    md_fractions
        MD temperatures as fractions of the (mean) melting point of the crystal's elements.
    md_snapshots
        Snapshots kept per MD run (``md_interval`` steps of ``md_timestep_fs`` apart).
    min_md_atoms
        Supercells for rattles, vacancies and MD are grown to at least this many atoms.
    fractions
        Train, validation and test shares of the base crystals.
    """

    elements: tuple[str, ...] = tuple(EMT_METALS)
    seed: int = 0
    random_cells: int = 160
    strains: tuple[float, ...] = (-0.03, -0.015, 0.0, 0.015, 0.03)
    rattled: int = 2
    rattle_sigma: float = 0.06
    shear_sigma: float = 0.015
    md_fractions: tuple[float, ...] = (0.3, 0.8, 1.25)
    md_snapshots: int = 2
    md_interval: int = 25
    md_timestep_fs: float = 4.0
    min_md_atoms: int = 12
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)

    def __post_init__(self) -> None:
        unknown = [e for e in self.elements if e not in EMT_METALS]
        if unknown:
            raise ValueError(f"no EMT lattice constant known for {unknown}")
        if len(self.fractions) != 3 or abs(sum(self.fractions) - 1) > 1e-9:
            raise ValueError(f"fractions must be three shares summing to 1, got {self.fractions}")


@dataclass
class BaseCrystal:
    """A crystal from which frames are derived.

    Attributes
    ----------
    group
        Its unique name (e.g. ``"Cu-fcc"``, ``"random-3"``): the split puts all its frames on
        one side, and they carry it in ``info["group"]`` and their labels (``<group>-<n>``).
    atoms
        The small periodic cell (A) that is strained, rattled, repeated and run as MD.
    tags
        ``{"kind": ...}``: ``"element"``, ``"L12"``, ``"L10"``, ``"B2"`` or
        ``"random-<lattice>"`` (random decorations get no MD frames).
    """

    group: str
    atoms: Atoms
    tags: dict = field(default_factory=dict)


# ---------------------------------------------------------------------- base crystals
def _vegard_a(symbols: Sequence[str]) -> float:
    """fcc lattice constant of a composition by Vegard's law on the atomic volume."""
    vol = np.mean([EMT_METALS[s] ** 3 / 4 for s in symbols])
    return float((4 * vol) ** (1 / 3))


def _parent(lattice: str, a_fcc: float) -> Atoms:
    """Primitive fcc/bcc/hcp cell at the atomic volume of an fcc crystal of ``a_fcc``."""
    vol = a_fcc**3 / 4
    if lattice == "fcc":
        return bulk("X", "fcc", a=a_fcc)
    if lattice == "bcc":
        return bulk("X", "bcc", a=(2 * vol) ** (1 / 3))
    if lattice == "hcp":
        a = (2 * vol / (np.sqrt(3) / 2 * 1.633)) ** (1 / 3)
        return bulk("X", "hcp", a=a, c=1.633 * a)
    raise ValueError(f"unknown lattice {lattice!r}")


def _ordered_binary(kind: str, a: str, b: str) -> Atoms:
    """L1_2 (A3B), L1_0 (AB) on the fcc cube, or B2 (AB)."""
    lat = _vegard_a([a, b])
    if kind == "L12":
        lat = _vegard_a([a, a, a, b])
        cell = bulk(a, "fcc", a=lat, cubic=True)
        cell.symbols[0] = b
        return cell
    if kind == "L10":
        cell = bulk(a, "fcc", a=lat, cubic=True)
        z = cell.get_scaled_positions()[:, 2]
        for i in np.where(np.isclose(z, 0.5))[0]:
            cell.symbols[i] = b
        return cell
    if kind == "B2":
        return bulk(a + b, "cesiumchloride", a=(2 * lat**3 / 4) ** (1 / 3))
    raise ValueError(f"unknown ordering {kind!r}")


def base_crystals(settings: DatasetSettings) -> list[BaseCrystal]:
    """Elements on three lattices, ordered binaries of every pair, random decorations."""
    rng = np.random.default_rng(settings.seed)
    out: list[BaseCrystal] = []
    for el in settings.elements:
        for lattice in ("fcc", "bcc", "hcp"):
            atoms = _parent(lattice, EMT_METALS[el])
            atoms.symbols[:] = el
            out.append(BaseCrystal(f"{el}-{lattice}", atoms, {"kind": "element"}))
    for a, b in itertools.combinations(settings.elements, 2):
        for kind, (x, y) in (("L12", (a, b)), ("L12", (b, a)), ("L10", (a, b)), ("B2", (a, b))):
            out.append(
                BaseCrystal(
                    f"{x}{y}-{kind}-{len(out)}", _ordered_binary(kind, x, y), {"kind": kind}
                )
            )
    for k in range(settings.random_cells):
        lattice = ("fcc", "bcc", "hcp")[k % 3]
        n_el = 2 if rng.random() < 0.7 else 3
        elements = list(rng.choice(settings.elements, size=n_el, replace=False))
        parent = _parent(lattice, 4.0)
        sites = len(parent)
        while True:  # a diagonal-ish supercell of 2..8 sites
            reps = rng.integers(1, 3, size=3)
            if 2 <= sites * int(np.prod(reps)) <= 8:
                break
        cell = parent.repeat(tuple(int(r) for r in reps))
        symbols = [elements[i % n_el] for i in range(len(cell))]  # every element present
        rng.shuffle(symbols)
        cell.symbols[:] = symbols
        cell.set_cell(cell.cell.array * _vegard_a(symbols) / 4.0, scale_atoms=True)
        out.append(BaseCrystal(f"random-{k}", cell, {"kind": f"random-{lattice}"}))
    return out


# ---------------------------------------------------------------------- frames
def _grown(atoms: Atoms, min_atoms: int) -> Atoms:
    """Repeat ``atoms`` along its shortest vectors until it has ``min_atoms`` atoms."""
    reps = [1, 1, 1]
    while len(atoms) * int(np.prod(reps)) < min_atoms:
        lengths = [np.linalg.norm(atoms.cell[i]) * reps[i] for i in range(3)]
        reps[int(np.argmin(lengths))] += 1
    return atoms.repeat(reps)


def _strained(atoms: Atoms, eps: np.ndarray) -> Atoms:
    out = atoms.copy()
    out.set_cell(out.cell.array @ (np.eye(3) + eps), scale_atoms=True)
    return out


def _mean_melting(atoms: Atoms) -> float:
    return float(np.mean([MELTING_POINTS[s] for s in atoms.get_chemical_symbols()]))


def derive_frames(
    crystal: BaseCrystal,
    settings: DatasetSettings,
    rng: np.random.Generator,
    calculator_factory: Callable[[], object],
) -> list[Atoms]:
    """Unlabelled frames of one base crystal (MD frames already need the calculator)."""
    frames: list[Atoms] = []

    def add(atoms: Atoms, kind: str) -> None:
        a = atoms.copy()
        a.info.update({"group": crystal.group, "frame_kind": kind})
        a.info["label"] = f"{crystal.group}-{len(frames)}"
        frames.append(a)

    for s in settings.strains:
        add(_strained(crystal.atoms, s * np.eye(3)), "strain")
    big = _grown(crystal.atoms, settings.min_md_atoms)
    for _ in range(settings.rattled):
        eps = rng.normal(0, settings.shear_sigma, (3, 3))
        r = _strained(big, 0.5 * (eps + eps.T))
        r.positions += rng.normal(0, settings.rattle_sigma, r.positions.shape)
        add(r, "rattle")
    if len(big) >= 8:
        v = big.copy()
        del v[int(rng.integers(len(v)))]
        v.positions += rng.normal(0, settings.rattle_sigma / 2, v.positions.shape)
        add(v, "vacancy")
    if crystal.tags.get("kind", "").startswith("random"):
        return frames  # MD on the elements and ordered binaries only
    melt = _mean_melting(big)
    for frac in settings.md_fractions:
        md = big.copy()
        md.calc = calculator_factory()
        md.set_constraint(FixCom())
        temperature = frac * melt
        MaxwellBoltzmannDistribution(md, temperature_K=temperature, rng=rng)
        Stationary(md)
        dyn = Langevin(
            md,
            settings.md_timestep_fs * units.fs,
            temperature_K=temperature,
            friction=0.02 / units.fs,
            fixcm=False,
            rng=rng,
        )
        for _ in range(settings.md_snapshots):
            dyn.run(settings.md_interval)
            snap = Atoms(md.symbols, md.positions, cell=md.cell, pbc=True)
            add(snap, f"md-{temperature:.0f}K")
    return frames


def label_frames(potential: Potential, frames: list[Atoms]) -> list[Atoms]:
    """Attach the potential's energy (eV), forces (eV/A) and stress (eV/A^3) to each frame."""
    ev = potential.evaluate(frames)
    for k, a in enumerate(frames):
        s = ev.stresses[k]
        voigt = np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])
        a.calc = SinglePointCalculator(
            a, energy=float(ev.energies[k]), forces=ev.forces[k], stress=voigt
        )
    return frames


def split_groups(groups: Iterable[str], fractions: Sequence[float], seed: int) -> dict[str, str]:
    """Assign each group (base crystal) to train/val/test; every split gets at least one."""
    names = sorted(set(groups))
    order = np.random.default_rng(seed + 1).permutation(len(names))
    n_val = max(1, round(fractions[1] * len(names)))
    n_test = max(1, round(fractions[2] * len(names)))
    where = {}
    for rank, idx in enumerate(order):
        where[names[idx]] = "val" if rank < n_val else "test" if rank < n_val + n_test else "train"
    return where


def generate_dataset(
    potential: Potential,
    settings: DatasetSettings = DatasetSettings(),
    progress: bool = True,
    splits: Sequence[str] = SPLITS,
) -> dict[str, list[Atoms]]:
    """Frames labelled by ``potential``, split by base crystal into train/val/test.

    Each crystal draws from its own random stream (seeded by ``settings.seed`` and its index),
    so one split can be regenerated alone (``splits=("test",)``) and gives the same frames.
    """
    from tqdm.auto import tqdm

    crystals = base_crystals(settings)
    where = split_groups((c.group for c in crystals), settings.fractions, settings.seed)
    out: dict[str, list[Atoms]] = {s: [] for s in splits}
    todo = [(k, c) for k, c in enumerate(crystals) if where[c.group] in out]
    for k, crystal in tqdm(todo, desc="reference data", disable=not progress):
        rng = np.random.default_rng([settings.seed, k])
        frames = derive_frames(crystal, settings, rng, potential.as_calculator)
        out[where[crystal.group]].extend(label_frames(potential, frames))
    return out


def write_dataset(
    splits: dict[str, list[Atoms]], folder: str | Path, settings: DatasetSettings, reference: str
) -> Path:
    """Write ``train/val/test.extxyz`` and ``dataset.json`` (settings and counts) to ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, frames in splits.items():
        write(folder / f"{name}.extxyz", frames, format="extxyz")
    manifest = {
        "reference": reference,
        "settings": asdict(settings),
        "frames": {k: len(v) for k, v in splits.items()},
        "atoms": {k: int(sum(len(a) for a in v)) for k, v in splits.items()},
        "groups": {k: len({a.info["group"] for a in v}) for k, v in splits.items()},
    }
    (folder / "dataset.json").write_text(json.dumps(manifest, indent=2))
    return folder


def read_frames(path: str | Path) -> list[Atoms]:
    """Frames with energies, forces and stresses from an extxyz file.

    Raises
    ------
    ValueError
        When the file is missing or a frame lacks energy, forces or stress.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such dataset file")
    frames = read(path, index=":", format="extxyz")
    for k, a in enumerate(frames):
        try:
            a.get_potential_energy()
            a.get_forces()
            a.get_stress()
        except Exception as exc:
            raise ValueError(
                f"{path}, frame {k} ({a.info.get('label', '?')}): needs energy, forces and "
                f"stress ({exc})"
            ) from None
    return frames
