"""Where a fine-tune starts: the shipped eSEN copied with new elements, and its element
references refitted on data whose energies are shifted per element (another 'functional')."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from esen_flows.training.finetune import refit_element_energies, start_model
from esen_flows.training.frames import Frame

#: eV per atom added to EMT's energies: the constant offsets another reference would give
SHIFT = {"Cu": 1.5, "Au": -0.7}


def shifted_frames() -> list[Frame]:
    frames = []
    for i, symbols in enumerate(["Cu4", "Cu3Au", "Cu2Au2", "CuAu3", "Au4", "Cu3Au"]):
        atoms = bulk("Cu", "fcc", a=3.75, cubic=True)
        atoms.symbols = symbols
        atoms.rattle(0.03, seed=i)
        atoms.calc = EMT()
        energy = atoms.get_potential_energy() + sum(SHIFT[s] for s in atoms.symbols)
        atoms.calc = SinglePointCalculator(
            atoms, energy=energy, forces=atoms.get_forces(), stress=atoms.get_stress()
        )
        frames.append(Frame.from_atoms(atoms))
    return frames


def energy_error(model, frames) -> float:
    from esen_flows.training.frames import make_batch

    out = model(make_batch(frames, dtype=next(model.parameters()).dtype).data, False, False)
    per_atom = [len(f.numbers) for f in frames]
    err = (out["energy"].detach().numpy() - [f.energy for f in frames]) / per_atom
    return float(np.abs(err).mean())


def test_refitted_references_remove_a_per_element_shift():
    frames = shifted_frames()
    model = start_model("esen-emt-tiny", {"Cu", "Au"})
    before = energy_error(model, frames)
    shift = refit_element_energies(model, frames)
    after = energy_error(model, frames)
    assert before > 0.5  # eV/atom: the offsets dominate
    assert after < 0.02 and after < before / 50
    assert shift == pytest.approx(SHIFT, abs=0.03)
    # the shipped model is untouched (a copy was refitted)
    assert energy_error(start_model("esen-emt-tiny", {"Cu"}), frames) == pytest.approx(before)


def test_new_elements_are_added_with_a_warning_and_bad_starts_refused():
    with pytest.warns(UserWarning, match="not trained on Fe"):
        model = start_model("esen-emt-tiny", {"Cu", "Fe"})
    assert "Fe" in model.config.elements and bool(model.allowed[26])
    with pytest.raises(ValueError, match="not an eSEN"):
        start_model("emt", {"Cu"})
    same_ratio = [f for f in shifted_frames() if len(set(f.numbers.tolist())) == 2][:1] * 3
    with pytest.raises(ValueError, match="cannot separate the element references"):
        refit_element_energies(start_model("esen-emt-tiny", {"Cu", "Au"}), same_ratio)
