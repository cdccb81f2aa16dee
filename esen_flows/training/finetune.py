"""Where a fine-tune starts (#23): a trainable copy of an eSEN ``get_potential`` loads, with the
elements of the new data added, and its per-element reference energies refitted on that data.

Published checkpoints and the shipped models predict ``E = E_network + sum_i e_ref(Z_i)``. New
data from another electronic-structure setting (another functional, pseudopotentials, code)
shifts every element's energy by a constant; refitting ``e_ref`` by least squares of the
residual on composition removes that shift before any gradient step, so training spends its
budget on what the network got wrong, not on offsets (``refit_element_energies``).
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from ase.data import atomic_numbers, chemical_symbols

from esen_flows.model.esen import ESEN
from esen_flows.training.frames import Frame, make_batch


def start_model(name: str, elements: Iterable[str]) -> ESEN:
    """A trainable float64 copy of the eSEN ``get_potential(name)`` loads (``esen-emt-tiny``,
    ``esen:PATH``, a published checkpoint), knowing ``elements`` too.

    An element the model was not trained on is added with a warning: its embeddings exist (they
    cover atomic numbers up to ``max_atomic_number``) but are untrained, so the new data must
    hold it. ``ValueError`` for a potential that is not an eSEN, or an element beyond the
    model's embeddings.
    """
    from esen_flows.potentials import get_potential

    potential = get_potential(name, dtype="float64")
    model = getattr(potential, "model", None)
    if not isinstance(model, ESEN):
        raise ValueError(
            f"{name}: not an eSEN ({type(potential).__name__}); start from esen-emt-tiny, "
            "esen:PATH or a published eSEN checkpoint"
        )
    model = copy.deepcopy(model).train()
    config = model.config
    wanted = set(elements)
    too_heavy = sorted(e for e in wanted if atomic_numbers.get(e, 10**6) > config.max_atomic_number)
    if too_heavy:
        raise ValueError(
            f"{name}: {', '.join(too_heavy)} beyond its embeddings (atomic numbers up to "
            f"{config.max_atomic_number})"
        )
    new = sorted(wanted - config.supported_elements)
    if new:
        warnings.warn(
            f"{name} was not trained on {', '.join(new)}: added with untrained embeddings; "
            "the training data must hold them",
            stacklevel=2,
        )
        known = sorted(config.supported_elements | set(new), key=lambda e: atomic_numbers[e])
        model.config = dataclasses.replace(config, elements=tuple(known))
        for symbol in new:
            model.allowed[atomic_numbers[symbol]] = True
    return model


def refit_element_energies(
    model: ESEN, frames: Sequence[Frame], batch_size: int = 16
) -> dict[str, float]:
    """Refit the model's per-element reference energies (eV) on ``frames``, in place.

    The model's energies are evaluated (no gradients), the residuals ``E_label - E_model``
    fitted by least squares on the frames' compositions, and the fitted shift added to each
    present element's reference. Returns the shift per element (eV); elements absent from the
    frames keep theirs.
    """
    present = sorted({int(z) for f in frames for z in f.numbers})
    counts = np.array([[int((f.numbers == z).sum()) for z in present] for f in frames])
    if np.linalg.matrix_rank(counts) < len(present):
        raise ValueError(
            "the compositions cannot separate the element references (every frame has the "
            "same element ratio): give frames of other compositions, or keep the references"
        )
    predicted = []
    dtype = next(model.parameters()).dtype
    with torch.no_grad():
        for start in range(0, len(frames), batch_size):
            batch = make_batch(frames[start : start + batch_size], dtype=dtype)
            out = model(batch.data, compute_forces=False, compute_stress=False, pass_atoms=None)
            predicted.append(out["energy"].double().cpu().numpy())
    residual = np.array([f.energy for f in frames]) - np.concatenate(predicted)
    shift, *_ = np.linalg.lstsq(counts.astype(float), residual, rcond=None)
    for z, delta in zip(present, shift, strict=True):
        model.element_energies[z] += float(delta)
    return {chemical_symbols[z]: float(d) for z, d in zip(present, shift, strict=True)}
