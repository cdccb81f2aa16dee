"""Generate a deterministic set of ordered Cu-Au-Ag-Pd candidate crystals.

The candidates are derivative superstructures of the fcc, bcc and hcp parent lattices,
decorated with two or three elements (binaries and ternaries, no pure elements), meant
as the starting set of a convex-hull screen.

The enumeration is done in three steps:

1. Hermite-normal-form (HNF) supercells of the parent primitive cell, reduced to one
   representative per class of symmetry-equivalent superlattices.
2. Site decorations of every supercell, reduced with the site permutations induced by
   the parent space group and the internal lattice translations; decorations that are
   invariant under an internal translation (i.e. that live in a smaller cell) are dropped.
3. A deterministic, stratified subsample (balanced over parent lattice and chemical
   system) that is checked with pymatgen's ``StructureMatcher`` within each composition.

Examples
--------
Run as a script::

    python -m esen_flows.candidates --out candidates.extxyz

or import it::

    from esen_flows.candidates import generate_candidates
    structures = generate_candidates(max_candidates=200)
"""

from __future__ import annotations

import argparse
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ase.io import write
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Composition, Lattice, Structure
from pymatgen.io.ase import AseAtomsAdaptor

from esen_flows.candidates.enumeration import (
    _TOL,
    DEFAULT_MAX_CANDIDATES,
    FCC_LATTICE_CONSTANTS,
    PARENTS,
    _Candidate,
    _enumerate,
    _parent,
    _supercell_sites,
)


def vegard_volume_per_atom(composition: Composition) -> float:
    """Return the Vegard's-law volume per atom (Angstrom^3) of a composition.

    The lattice constant is interpolated linearly between the fcc lattice constants in
    :data:`FCC_LATTICE_CONSTANTS`, and converted with ``V = a**3 / 4``.
    """
    fractions = composition.fractional_composition
    a = sum(fractions[el] * FCC_LATTICE_CONSTANTS[el.symbol] for el in fractions.elements)
    return a**3 / 4.0


def _build_structure(candidate: _Candidate) -> Structure:
    """Build the pymatgen structure of a candidate with Vegard's-law lattice constants."""
    parent = _parent(candidate.parent)
    hnf = np.array(candidate.hnf, dtype=int).reshape(3, 3)
    sites = _supercell_sites(parent, hnf)
    frac = sites @ np.linalg.inv(hnf).T
    frac -= np.floor(frac + _TOL)
    species = [candidate.elements[i] for i in candidate.coloring]
    composition = candidate.composition
    scale = vegard_volume_per_atom(composition) ** (1.0 / 3.0)
    lattice = Lattice(scale * (hnf.T @ parent.lattice))
    structure = Structure(lattice, species, frac)
    structure = structure.get_reduced_structure().get_sorted_structure()
    structure.properties = {
        "parent": candidate.parent,
        "hnf": [list(row) for row in hnf.tolist()],
        "n_elements": len(candidate.elements),
        "chemical_system": "-".join(candidate.elements),
    }
    return structure


# --------------------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------------------


def _stratum_order(pool: list[_Candidate], rng: np.random.Generator) -> list[_Candidate]:
    """Order one (parent, chemical system) stratum for sampling.

    Compositions are visited round-robin, simplest reduced formulas first, so that the
    composition range is covered before any composition gets a second structure. Within
    a composition, smaller cells come first and ties are shuffled with ``rng``.
    """
    by_comp: dict[str, list[_Candidate]] = defaultdict(list)
    for cand in pool:
        by_comp[cand.composition.reduced_formula].append(cand)

    def comp_key(formula: str) -> tuple:
        comp = Composition(formula)
        return (comp.num_atoms, sorted(comp.values()), formula)

    queues: list[list[_Candidate]] = []
    for formula in sorted(by_comp, key=comp_key):
        members = sorted(by_comp[formula], key=lambda c: c.sort_key)
        tiebreak = rng.permutation(len(members))
        order = sorted(range(len(members)), key=lambda i: (len(members[i].coloring), tiebreak[i]))
        queues.append([members[i] for i in order])
    return [q[i] for i in range(max(map(len, queues), default=0)) for q in queues if i < len(q)]


def _strata(candidates: list[_Candidate], seed: int) -> list[list[_Candidate]]:
    """Split candidates into (chemical system, parent) strata, each in sampling order."""
    rng = np.random.default_rng(seed)
    strata: dict[tuple, list[_Candidate]] = defaultdict(list)
    for cand in sorted(candidates, key=lambda c: c.sort_key):
        strata[(len(cand.elements), cand.elements, PARENTS.index(cand.parent))].append(cand)
    return [_stratum_order(strata[key], rng) for key in sorted(strata)]


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------


def generate_candidates(
    elements: Sequence[str] = ("Cu", "Au", "Ag", "Pd"),
    max_atoms: int = 8,
    max_candidates: int | None = None,
    seed: int = 0,
) -> list[Structure]:
    """Generate ordered binary and ternary derivative structures of fcc, bcc and hcp.

    Parameters
    ----------
    elements
        Elements of the system; each needs an entry in :data:`FCC_LATTICE_CONSTANTS`.
    max_atoms
        Maximum number of atoms per cell.
    max_candidates
        Maximum number of structures returned (default :data:`DEFAULT_MAX_CANDIDATES`).
        When the enumeration yields more, a deterministic subsample balanced over parent
        lattices and chemical systems is taken.
    seed
        Seed of the subsampling (tie-breaking among equally small cells).

    Returns
    -------
    list of Structure
        Unique structures, sorted deterministically, each with ``properties["label"]``
        (e.g. ``"AuCu3-fcc-017"``) and the ``parent``, ``hnf``, ``n_elements`` and
        ``chemical_system`` properties.
    """
    unknown = sorted(set(elements) - set(FCC_LATTICE_CONSTANTS))
    if unknown:
        raise ValueError(f"No fcc lattice constant for {unknown}.")
    if max_atoms < 2:
        raise ValueError("max_atoms must be at least 2 for binary structures.")
    limit = DEFAULT_MAX_CANDIDATES if max_candidates is None else int(max_candidates)
    if limit < 0:
        raise ValueError("max_candidates must be non-negative.")

    candidates = _enumerate(elements, max_atoms)
    matcher = StructureMatcher()
    accepted: list[tuple[_Candidate, Structure]] = []
    by_comp: dict[str, list[Structure]] = defaultdict(list)

    def accept(cand: _Candidate) -> bool:
        """Build a candidate and keep it unless it matches an already kept structure."""
        structure = _build_structure(cand)
        kept = by_comp[structure.composition.reduced_formula]
        if any(matcher.fit(structure, other) for other in kept):
            return False
        kept.append(structure)
        accepted.append((cand, structure))
        return True

    # Round-robin over the strata; a rejected duplicate is replaced from the same stratum.
    queues = [iter(queue) for queue in _strata(candidates, seed)]
    while queues and len(accepted) < limit:
        for queue in list(queues):
            if len(accepted) >= limit:
                break
            if not any(accept(cand) for cand in queue):
                queues.remove(queue)  # stratum exhausted

    accepted.sort(key=lambda pair: pair[0].sort_key)
    width = max(3, len(str(len(accepted))))
    structures: list[Structure] = []
    for index, (cand, structure) in enumerate(accepted):
        label = f"{structure.composition.reduced_formula}-{cand.parent}-{index:0{width}d}"
        structure.properties["label"] = label
        structures.append(structure)
    return structures


def _write_extxyz(structures: Sequence[Structure], path: Path) -> None:
    """Write structures to a single extxyz file with their labels in ``atoms.info``."""
    frames = []
    for structure in structures:
        atoms = AseAtomsAdaptor.get_atoms(structure)
        atoms.info = {
            "label": structure.properties["label"],
            "parent": structure.properties["parent"],
            "n_elements": structure.properties["n_elements"],
            "chemical_system": structure.properties["chemical_system"],
        }
        frames.append(atoms)
    path.parent.mkdir(parents=True, exist_ok=True)
    write(path, frames, format="extxyz")


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: write the candidates to one extxyz file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output extxyz file")
    parser.add_argument("--max-atoms", type=int, default=8, help="max atoms per cell")
    parser.add_argument(
        "--max-candidates",
        type=int,
        default=None,
        help=f"max number of structures (default {DEFAULT_MAX_CANDIDATES})",
    )
    parser.add_argument("--elements", nargs="+", default=["Cu", "Au", "Ag", "Pd"], help="elements")
    parser.add_argument("--seed", type=int, default=0, help="subsampling seed")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    structures = generate_candidates(
        elements=tuple(args.elements),
        max_atoms=args.max_atoms,
        max_candidates=args.max_candidates,
        seed=args.seed,
    )
    _write_extxyz(structures, args.out)
    elapsed = time.perf_counter() - start

    by_parent = Counter(s.properties["parent"] for s in structures)
    by_nelem = Counter(s.properties["n_elements"] for s in structures)
    print(f"Wrote {len(structures)} structures to {args.out} in {elapsed:.1f} s")
    print("By parent lattice: " + ", ".join(f"{p}={by_parent[p]}" for p in PARENTS))
    print(f"By number of elements: binary={by_nelem[2]}, ternary={by_nelem[3]}")
    return 0
