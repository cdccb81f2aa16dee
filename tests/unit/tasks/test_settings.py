"""Task settings: declared once, serialised with MSON, and the result keys they give stable."""

from __future__ import annotations

import pytest
from monty.json import MontyDecoder, MontyEncoder

from esen_flows.schemas import hash_key
from esen_flows.tasks import (
    ConductivitySettings,
    NVESettings,
    PhononSettings,
    RelaxSettings,
    SymmetricRelax,
)
from esen_flows.tasks.settings import own_settings

#: The hashes of these settings' key dicts as computed before the settings were nested (the
#: commit before "Settings held once"): stored results keep their keys.
STORED_KEYS = {
    "relax": (RelaxSettings(), "0e7b86b7765b281758ba2ec1398a5c51"),
    "static": (RelaxSettings(task="static"), "d490612aa4e56020a8a51cd5177a5f09"),
    "nve": (NVESettings(), "dd496ab8477820c6756d5da36072ff4a"),
    "phonon": (PhononSettings(), "b1070426c5a059737fc80cee394641eb"),
    "phonon_matrix": (
        PhononSettings(relax=None, supercell_matrix=[2, 2, 2]),
        "99a8e5f0103b17218f2c3690bb0ad7ad",
    ),
    "kappa_mbd": (ConductivitySettings.matbench_discovery(), "082637691480f7529128cbabcdfb0e7d"),
    "kappa_random": (
        ConductivitySettings.matbench_discovery(displacements="random", plusminus=True),
        "948498252f73443c7f7df2f047b4140f",
    ),
}


@pytest.mark.parametrize("name", sorted(STORED_KEYS))
def test_keys_of_stored_results_do_not_change(name):
    settings, stored = STORED_KEYS[name]
    assert hash_key(settings.key_dict()) == stored


@pytest.mark.parametrize("name", sorted(STORED_KEYS))
def test_settings_round_trip_through_json(name):
    settings, _ = STORED_KEYS[name]
    again = MontyDecoder().decode(MontyEncoder().encode(settings))
    assert again == settings and type(again) is type(settings)
    assert hash_key(again.key_dict()) == hash_key(settings.key_dict())


def test_the_relaxation_is_nested_and_checked():
    assert PhononSettings(relax=True).relax == SymmetricRelax()  # the old boolean still reads
    assert PhononSettings(relax=False).relax is None
    with pytest.raises(ValueError, match="max_steps"):
        SymmetricRelax(max_steps=0)
    with pytest.raises(ValueError, match="relax must be"):
        PhononSettings(relax="yes")


def test_per_structure_settings_are_checked_and_named():
    base = ConductivitySettings().key_dict()
    allowed = ("supercell_matrix", "mesh")
    own = own_settings(base, {"mesh": [3, 3, 3], "supercell_matrix": None}, allowed)
    assert own["mesh"] == [3, 3, 3] and own["supercell_matrix"] == base["supercell_matrix"]
    with pytest.raises(ValueError, match="its mesh"):
        own_settings(base, {"mesh": [3, 3]}, allowed)
    with pytest.raises(ValueError, match="not a per-structure setting"):
        own_settings(base, {"temperatures": [10.0]}, allowed)
