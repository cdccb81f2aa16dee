"""The Potential interface against ASE run directly."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from pymatgen.io.ase import AseAtomsAdaptor

from esen_flows.potentials import (
    Potential,
    PotentialError,
    UnsupportedElementError,
    get_potential,
)


def test_emt_matches_ase(alloys):
    potential = get_potential("emt")
    assert isinstance(potential, Potential)
    structures = [AseAtomsAdaptor.get_structure(a) for a in alloys[:3]] + alloys[3:6]
    ev = potential.evaluate(structures)
    assert ev.energies.shape == (6,) and ev.stresses.shape == (6, 3, 3)
    for i, atoms in enumerate(alloys[:6]):
        ref = atoms.copy()
        ref.calc = EMT()
        assert ev.energies[i] == pytest.approx(ref.get_potential_energy(), abs=1e-10)
        np.testing.assert_allclose(ev.forces[i], ref.get_forces(), atol=1e-10)
        np.testing.assert_allclose(ev.stresses[i], ref.get_stress(voigt=False), atol=1e-10)


def test_cache_and_identity():
    assert get_potential("emt") is get_potential("emt")
    assert len(get_potential("emt").checksum) == 16
    calc = get_potential("emt").as_calculator()
    assert isinstance(calc, EMT)


def test_module_class_potential():
    potential = get_potential("ase.calculators.emt:EMT")
    atoms = bulk("Cu", "fcc", a=3.6)
    ref = atoms.copy()
    ref.calc = EMT()
    assert potential.evaluate([atoms]).energies[0] == pytest.approx(ref.get_potential_energy())
    assert potential.checksum != get_potential("emt").checksum


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("nonsense", "unknown potential 'nonsense'"),
        ("no_such_module:Calc", "cannot import module 'no_such_module'"),
        ("ase.calculators.emt:Nope", "has no attribute 'Nope'"),
        ("esen:/tmp/none.pt", "no such checkpoint file"),
    ],
)
def test_unknown_potentials(name, match):
    with pytest.raises(PotentialError, match=match):
        get_potential(name)


def test_unsupported_element_named():
    atoms = bulk("Fe", "bcc", a=2.87)
    atoms.info["label"] = "iron"
    with pytest.raises(UnsupportedElementError, match="iron: element Fe not supported"):
        get_potential("emt").evaluate([atoms])


def test_bad_dtype():
    with pytest.raises(ValueError, match="dtype"):
        get_potential("emt", dtype="float16")
