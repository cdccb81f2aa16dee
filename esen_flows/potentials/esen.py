"""The eSEN ``Potential`` over the model: batched evaluation, and an ASE calculator.

``esen_flows.potentials.registry`` names ``"esen:PATH"`` and the shipped models; this module
(which imports torch) is imported only when one of them is asked for.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from pymatgen.core import Structure

from esen_flows.io import get_label, to_atoms
from esen_flows.model.allocator import keep_freed_memory
from esen_flows.model.checkpoints import load_model
from esen_flows.model.esen import ESEN, AtomsBatch, CheckpointError
from esen_flows.model.fairchem import sha256
from esen_flows.potentials.base import (
    BatchBudget,
    Evaluation,
    PotentialError,
    check_elements,
    is_out_of_memory,
    normalise_dtype,
)
from esen_flows.potentials.zoo import SHIPPED, ZOO

#: Share of the free device memory one batch may take (CUDA), and of the available host
#: memory on a CPU, where running out ends the process instead of raising.
MEMORY_FRACTION = {"cuda": 0.6, "cpu": 0.25}
#: Bytes held per directed edge for energy, forces and stress, per layer, per channel and per
#: spherical coefficient, in units of the float size: measured at about 6 (float32, CPU,
#: esen-emt-tiny) and 11 (30M-OAM, 256-atom cell); 12 leaves room.
EDGE_BYTES_FACTOR = 12
#: Upper bound on atoms per batch (beyond it a batch gains nothing even on a large GPU).
MAX_BATCH_ATOMS = 100_000
#: On a CPU a batch gains nothing past a few thousand edges and loses beyond: esen-emt-tiny in
#: float64 on 2 cores ran 338 atoms/s at 10k edges (540 MB by ``bytes_per_edge``) and 247 at
#: 79k edges (float32 stayed at 560-590 throughout). Batches are capped at this many bytes.
CPU_BATCH_BYTES = 512 * 2**20


def resolve_device(device: str | torch.device | None) -> torch.device:
    """CUDA when available and not told otherwise, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: Any) -> torch.dtype:
    """``"float32"``/``"float64"``/torch dtype/None (float32) -> torch dtype."""
    name = normalise_dtype(dtype) or "float32"
    return {"float32": torch.float32, "float64": torch.float64}[name]


class ESENPotential:
    """A ``Potential`` backed by an ``ESEN`` model.

    Parameters
    ----------
    model
        The network (put in eval mode, moved to ``device`` and ``dtype``).
    name, checksum
        Identity; the checksum is the checkpoint file's hash (or the weights' hash).
    budget
        Atoms and estimated edges per batch; None: from the device's free memory
        (``batch_budget()``). A batch that runs out of memory is split and retried, and the
        budget shrinks for the rest of the run.
    forces
        ``"conservative"`` (-dE/dr and stress by autograd), ``"direct"`` (the direct-force
        head of a pretraining checkpoint: no stress, which is returned as NaN) or ``"auto"``
        (direct exactly when the model has a direct-force head).
    """

    def __init__(
        self,
        model: ESEN,
        name: str,
        checksum: str,
        device: str | torch.device | None = None,
        dtype: Any = None,
        budget: BatchBudget | None = None,
        forces: str = "auto",
    ):
        if forces not in ("auto", "conservative", "direct"):
            raise ValueError(f"forces must be 'auto', 'conservative' or 'direct', got {forces!r}")
        if forces == "direct" and model.force_head is None:
            raise PotentialError(f"potential {name!r}: the model has no direct-force head")
        self.direct = forces == "direct" or (forces == "auto" and model.force_head is not None)
        self.device = resolve_device(device)
        if self.device.type == "cpu":
            keep_freed_memory()  # the edge tensors of every call reuse freed heap memory
        self.dtype = resolve_dtype(dtype)
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        self.name = name
        self.checksum = checksum
        self.elements: frozenset[str] | None = model.config.supported_elements
        source = (getattr(model, "metadata", None) or {}).get("source", {})
        #: the charge and spin a fairchem 2.x model was loaded for (None otherwise)
        self.system = (
            {"charge": source["charge"], "spin": source["spin"]} if "spin" in source else None
        )
        self._budget = budget
        self._lock = threading.Lock()  # one batch at a time: see ``evaluate``

    def bytes_per_edge(self) -> int:
        """Estimated memory (bytes) one directed edge holds during energy, forces and stress."""
        cfg = self.model.config
        size = torch.finfo(self.dtype).bits // 8
        return EDGE_BYTES_FACTOR * size * cfg.num_layers * cfg.channels * (cfg.lmax + 1) ** 2

    def batch_budget(self) -> BatchBudget:
        """Atoms and edges per batch from the memory free on this device, and on a CPU at most
        ``CPU_BATCH_BYTES`` (computed once, then shrunk whenever a batch runs out of memory)."""
        if self._budget is None:
            if self.device.type == "cuda":
                free = torch.cuda.mem_get_info(self.device)[0] * MEMORY_FRACTION["cuda"]
            else:
                import psutil

                free = psutil.virtual_memory().available * MEMORY_FRACTION["cpu"]
            max_edges = max(1, int(free // self.bytes_per_edge()))
            if self.device.type == "cpu":  # throughput, not memory, sets a CPU batch
                max_edges = max(1, min(max_edges, CPU_BATCH_BYTES // self.bytes_per_edge()))
            self._budget = BatchBudget(
                max_atoms=max(1, min(MAX_BATCH_ATOMS, max_edges // 4)),
                max_edges=max_edges,
                cutoff=self.model.config.cutoff,
            )
        return self._budget

    def evaluate(self, structures: Sequence[Structure | Atoms]) -> Evaluation:
        """Energies (eV), forces (eV/A), stresses (eV/A^3, ASE sign): the structures go in as
        few batches as the memory budget allows; a batch that runs out of memory is halved and
        retried. A single structure that does not fit raises ``MemoryError`` naming it.

        Thread-safe: threads sharing this (cached) potential evaluate one call at a time (a
        device runs one batch at a time anyway, and the memory budget is shared state)."""
        with self._lock:
            return self._evaluate(structures)

    def _evaluate(self, structures: Sequence[Structure | Atoms]) -> Evaluation:
        atoms = [s if isinstance(s, Atoms) else to_atoms(s) for s in structures]
        for a in atoms:
            check_elements(self, a)
        n = len(atoms)
        energies = np.empty(n)
        stresses = np.empty((n, 3, 3))
        forces: list[np.ndarray] = [np.empty((0, 3))] * n
        pending = self.batch_budget().pack(atoms)[::-1]
        while pending:
            chunk = pending.pop()
            try:
                e, f, s = self._run_batch([atoms[i] for i in chunk])
            except Exception as exc:
                if not is_out_of_memory(exc):
                    raise
                self._out_of_memory(exc, [atoms[i] for i in chunk])
                half = len(chunk) // 2
                pending += [chunk[half:], chunk[:half]]
                continue
            offsets = np.cumsum([0] + [len(atoms[i]) for i in chunk])
            for k, i in enumerate(chunk):
                energies[i] = e[k]
                forces[i] = f[offsets[k] : offsets[k + 1]]
                stresses[i] = s[k]
        return Evaluation(energies=energies, forces=forces, stresses=stresses)

    def _out_of_memory(self, exc: BaseException, batch: list[Atoms]) -> None:
        """Free what the failed batch held and shrink the budget below its size; a single
        structure that does not fit is an error that names it."""
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        n_atoms = sum(len(a) for a in batch)
        budget = self.batch_budget()
        n_edges = sum(budget.cost(a)[1] for a in batch)
        if len(batch) == 1:
            label = get_label(batch[0]) or "structure"
            raise MemoryError(
                f"{label}: {n_atoms} atoms (about {n_edges} edges within "
                f"{self.model.config.cutoff} A) do not fit in the memory of {self.device} "
                f"({type(exc).__name__})"
            ) from exc
        self._budget = BatchBudget(
            max_atoms=max(1, min(budget.max_atoms, n_atoms // 2)),
            max_edges=max(1, min(budget.max_edges or n_edges, n_edges // 2)),
            cutoff=budget.cutoff,
        )

    def _run_batch(self, batch: list[Atoms]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One forward (and backward) pass: energies (B,), forces (N, 3), stresses (B, 3, 3)."""
        data = AtomsBatch.from_atoms(batch, self.dtype, self.device)
        if self.direct:
            with torch.no_grad():
                out = self.model(data, direct=True)
            s = np.full((len(batch), 3, 3), np.nan)
        else:
            out = self.model(data)
            s = out["stress"].detach().cpu().double().numpy()
        e = out["energy"].detach().cpu().numpy()
        f = out["forces"].detach().cpu().double().numpy()
        return e, f, s

    def as_calculator(self) -> Calculator:
        """An ASE calculator sharing this potential's model."""
        return ESENCalculator(self)


class ESENCalculator(Calculator):
    """ASE calculator over an ``ESENPotential`` (energy, free_energy, forces, stress).

    In an ASE loop on a CPU, wrap the loop in ``esen_flows.dynamics.threads.
    single_threaded_blas()``: numpy's BLAS threads, woken by ASE's own small calls, otherwise
    compete with torch's for the cores (2.8x slower FIRE steps on 2 cores).
    """

    implemented_properties = ("energy", "free_energy", "forces", "stress")

    def __init__(self, potential: ESENPotential, **kwargs: Any):
        super().__init__(**kwargs)
        self.potential = potential

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        ev = self.potential.evaluate([self.atoms])
        stress = ev.stresses[0]
        self.results = {
            "energy": float(ev.energies[0]),
            "free_energy": float(ev.energies[0]),
            "forces": ev.forces[0],
            "stress": np.array(
                [stress[0, 0], stress[1, 1], stress[2, 2], stress[1, 2], stress[0, 2], stress[0, 1]]
            ),
        }


def load_potential(
    path: str | Path, device: Any = None, dtype: Any = None, name: str | None = None
) -> ESENPotential:
    """An ``ESENPotential`` from a checkpoint file: esen-flows' own, or fairchem's eSEN in
    its 1.x or 2.x format (read as data, ``weights_only=True``; see ``load_model``).

    The potential's checksum, which enters every result key, is the first 16 hex digits of
    the sha256 of the file named: a converted file (``esen-flows convert``) has its own, so
    results computed with the original are not reused for it, nor the reverse.
    """
    path = Path(path).expanduser()
    model = load_model(path)
    # a fairchem file read directly was hashed by its reader; anything else is hashed here
    meta = getattr(model, "metadata", None) or {}
    digest = None if "converted_by" in meta else meta.get("source", {}).get("source_sha256")
    return ESENPotential(
        model,
        name=name or f"esen:{path}",
        checksum=(digest or sha256(path))[:16],
        device=device,
        dtype=dtype,
    )


def build_from_path(path: str, device: Any = None, dtype: Any = None) -> ESENPotential:
    """The potential ``"esen:PATH"``: a checkpoint that cannot be read is a ``PotentialError``
    naming it."""
    try:
        return load_potential(path, device=device, dtype=dtype)
    except CheckpointError as exc:
        raise PotentialError(f"potential 'esen:{path}': {exc}") from None


def build_shipped(name: str, device: Any = None, dtype: Any = None) -> ESENPotential:
    """A model shipped in ``esen_flows/zoo`` (``SHIPPED``), by name."""
    path = ZOO / SHIPPED[name]
    if not path.is_file():
        raise PotentialError(
            f"potential {name!r}: the checkpoint {path.name} is not shipped in this "
            "installation; use 'esen:PATH' with a checkpoint of your own"
        )
    return load_potential(path, device=device, dtype=dtype, name=name)
