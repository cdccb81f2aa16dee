"""esen-flows' eSEN as a torch-sim model (``torch_sim.models.interface.ModelInterface``).

Written against torch-sim-atomistic 0.3.0. Conventions checked there: ``SimState.cell`` holds
the lattice vectors as COLUMNS (``state.row_vector_cell`` is ASE's rows, which ``AtomsBatch``
wants), and torch-sim's stress has ASE's sign (its Frechet FIRE takes the virial as
``-volume * stress``, as ASE's ``FrechetCellFilter`` does), so the model's stress passes through
unchanged. Only imported when torch-sim is installed.
"""

from __future__ import annotations

from typing import Any

import torch
from torch_sim.models.interface import ModelInterface
from torch_sim.state import SimState

from esen_flows.model.esen import AtomsBatch
from esen_flows.potentials.esen import ESENPotential


class ESENTorchSimModel(ModelInterface):
    """Energies (eV), forces (eV/A) and stresses (eV/A^3, ASE sign) of an ``ESENPotential``.

    Parameters
    ----------
    potential
        A conservative ``ESENPotential`` (``get_potential("esen-emt-tiny")``); its network,
        device and dtype are used as they are, so the state runs in the potential's precision.
    """

    def __init__(self, potential: ESENPotential):
        super().__init__()
        if potential.direct:
            raise ValueError("torch-sim needs stresses: use a conservative eSEN potential")
        self.model = potential.model
        self._device = potential.device
        self._dtype = potential.dtype
        self._compute_forces = True
        self._compute_stress = True
        # a radial-cutoff model (only used by torch-sim's autobatcher's memory estimate)
        self._memory_scales_with = "n_atoms_x_density"

    def forward(self, state: SimState | dict[str, Any], **_: Any) -> dict[str, torch.Tensor]:
        """``{"energy": (B,), "forces": (N, 3), "stress": (B, 3, 3)}`` in the state's dtype."""
        if not isinstance(state, SimState):
            state = SimState(**state)
        batch = AtomsBatch(
            positions=state.positions,
            numbers=state.atomic_numbers,
            cell=state.row_vector_cell,  # torch-sim stores columns, AtomsBatch wants rows
            system=state.system_idx,
        )
        out = self.model(batch)
        dtype = state.positions.dtype
        return {
            "energy": out["energy"].detach().to(dtype),
            "forces": out["forces"].detach().to(dtype),
            "stress": out["stress"].detach().to(dtype),
        }
