"""eSEN: a smooth, energy-conserving equivariant network (Fu et al. 2025, arXiv 2502.12147).

Energy is a sum of per-atom terms (float64) plus per-element reference energies; forces are
-dE/dr and stress (1/V) dE/d(strain) by autograd, in one backward pass. The potential-energy
surface is smooth: Gaussian radial basis times a polynomial envelope whose value and first two
derivatives vanish at the cutoff, no neighbour cap, and edge frames whose roll does not matter.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from esen_flows.model.batch import AtomsBatch, pack_structures
from esen_flows.model.config import ESENConfig
from esen_flows.model.graph import Graph, edge_vectors, neighbour_cap, radius_graph_pbc
from esen_flows.model.layers import (
    EdgeInputs,
    EquivariantRMSNorm,
    GaussianBasis,
    NodeFeedForward,
    RadialMLP,
    SO2Convolution,
    gate_groups,
    polynomial_envelope,
    truncated_layout,
)
from esen_flows.model.rotation import WignerD, edge_rotation
from esen_flows.model.safe_load import load_data

CHECKPOINT_FORMAT = "esen-flows-checkpoint"
CHECKPOINT_VERSION = 1
#: fairchem 1.x's YTOL: |y| of a unit edge direction above which its frame is clipped
Y_CLIP = 0.999999


class CheckpointError(ValueError):
    """A file is not a valid esen-flows checkpoint."""


class ESENBlock(nn.Module):
    """Pre-norm residual block: x += Edgewise(Norm(x)); x += NodeFFN(Norm(x))."""

    def __init__(self, config: ESENConfig, edge_in: int):
        super().__init__()
        c, h, lmax, mmax = config.channels, config.hidden_channels, config.lmax, config.mmax
        self.lmax, self.mmax = lmax, mmax
        self.norm_edge = EquivariantRMSNorm(lmax, c)
        self.conv1 = SO2Convolution(lmax, mmax, 2 * c, h, extra=lmax * h, parts=2)
        self.radial = RadialMLP(
            [edge_in, config.edge_channels, config.edge_channels, self.conv1.radial_size()],
            output_order=self.conv1.radial_order(),
        )
        self.conv2 = SO2Convolution(lmax, mmax, h, c)
        self.norm_node = EquivariantRMSNorm(lmax, c)
        self.ffn = NodeFeedForward(lmax, c, config.ffn_hidden_channels)

    def forward(
        self,
        x: torch.Tensor,
        edges: EdgeInputs,
        frames: EdgeFrames,
        system: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Messages along both directions of every pair (``frames``), then the node FFN;
        ``system`` (C,) is added to the normed l = 0 features (fairchem 2.x)."""
        if frames.num_pairs == 0:  # isolated atoms: no messages
            return x + self.ffn(self.norm_node(x))
        h = self.norm_edge(x)
        if system is not None:
            h = torch.cat([h[:, :1] + system, h[:, 1:]], dim=1)
        # each direction's source and target features, in that direction's frame (2P, Kt, C);
        # a direction's input is [source | target], the convolution takes the two blocks apart.
        # Both ends of a pair are rotated once, into the frame of i <- j; the frame of j <- i
        # differs by the half turn, a sign per coefficient: a pair costs two rotations and two
        # gathers of node features, not four of each
        p = frames.num_pairs
        end_j = torch.bmm(frames.rot_in, h.index_select(0, frames.source[:p]))
        end_i = torch.bmm(frames.rot_in, h.index_select(0, frames.target[:p]))
        flip = frames.flip.to(end_i.dtype).view(1, -1, 1)  # autocast: keep its dtype
        parts = [
            torch.split(torch.cat([first, second * flip]), frames.sizes, dim=1)
            for first, second in ((end_j, end_i), (end_i, end_j))
        ]
        groups, gates = self.conv1(
            parts, self.radial.forward_pairs_blocks(edges, self.conv1.radial_blocks())
        )
        groups = gate_groups(groups, gates, self.lmax, self.mmax)
        groups, _ = self.conv2([groups])
        # back to the global frame (envelope folded into the rotation) and onto the targets
        msg = torch.bmm(frames.rot_out_env, torch.cat(groups, dim=1))
        x = x.index_add(0, frames.target, msg)
        return x + self.ffn(self.norm_node(x))


@dataclass
class EdgeFrames:
    """The edge frames of every neighbour pair and its two directions, computed once per
    forward and shared by all blocks. Directions are ordered i <- j for all P pairs, then j <- i.

    The frame of j <- i is that of i <- j turned half a turn about x, whose Wigner matrix is
    diagonal +-1 (``flip``): only one rotation per pair is built. K = (lmax+1)^2 coefficients,
    K_trunc of them kept (|m| <= mmax).

    Attributes
    ----------
    rot_in
        (P, K_trunc, K) global -> frame of i <- j, truncated to |m| <= mmax (that of j <- i is
        ``flip`` times its rows).
    rot_out_env
        (2P, K, K_trunc) edge frame -> global for each direction, times the envelope (zero for
        a direction dropped by the neighbour cap).
    source, target
        (2P,) atom indices of each direction's sender and receiver.
    flip
        (K_trunc,) +-1, the half turn's Wigner matrix in the truncated layout.
    sizes
        Coefficients per m-group of the truncated layout: lmax+1, then lmax+1-m twice for each
        m >= 1 (``truncated_layout``).
    """

    rot_in: torch.Tensor
    rot_out_env: torch.Tensor
    source: torch.Tensor
    target: torch.Tensor
    flip: torch.Tensor
    sizes: list[int]

    @property
    def num_pairs(self) -> int:
        return int(self.source.numel()) // 2


class ESEN(nn.Module):
    """The eSEN model. ``forward`` gives energies (float64), forces and stresses of a batch."""

    def __init__(self, config: ESENConfig):
        super().__init__()
        self.config = config
        c, lmax = config.channels, config.lmax
        self.num_coefficients = (lmax + 1) ** 2
        index, _, self.group_sizes = truncated_layout(lmax, config.mmax)
        self.register_buffer("trunc_index", torch.tensor(index), persistent=False)
        self.num_elements = config.max_atomic_number + 1
        self.register_buffer(
            "element_energies", torch.zeros(self.num_elements, dtype=torch.float64)
        )
        allowed = torch.zeros(self.num_elements, dtype=torch.bool)
        from ase.data import atomic_numbers

        for sym in config.supported_elements:
            allowed[atomic_numbers[sym]] = True
        self.register_buffer("allowed", allowed, persistent=False)

        # embeddings are indexed by Z - 1 (atomic numbers 1..max_atomic_number)
        self.node_embedding = nn.Embedding(config.max_atomic_number, c)
        self.rbf = GaussianBasis(config.cutoff, config.num_rbf, config.rbf_width_factor)
        self.source_embedding = nn.Embedding(config.max_atomic_number, config.edge_channels)
        self.target_embedding = nn.Embedding(config.max_atomic_number, config.edge_channels)
        edge_in = config.num_rbf + 2 * config.edge_channels
        self.degree_mlp = RadialMLP(
            [edge_in, config.edge_channels, config.edge_channels, (lmax + 1) * c]
        )
        self.wigner = WignerD(lmax)
        # D of the half turn about x (y -> -y) is diagonal +-1: it relates the two directions
        half_turn = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))
        flip = self._truncated_wigner(half_turn[None])[0][self.trunc_index]
        if not torch.allclose(flip, torch.diag(torch.diagonal(flip)), atol=1e-9):
            raise RuntimeError("half-turn Wigner matrix is not diagonal")
        self.register_buffer("flip_sign", torch.diagonal(flip).round().float(), persistent=False)
        self.blocks = nn.ModuleList(ESENBlock(config, edge_in) for _ in range(config.num_layers))
        self.norm_final = EquivariantRMSNorm(lmax, c)
        e = config.energy_hidden_channels
        self.energy_head = nn.Sequential(
            nn.Linear(c, e), nn.SiLU(), nn.Linear(e, e), nn.SiLU(), nn.Linear(e, 1)
        )
        self.force_head = nn.Linear(c, 1, bias=False) if config.direct_forces else None
        if config.system_embedding:
            self.register_buffer("system_embedding", torch.zeros(c))
        else:
            self.system_embedding = None

    # ------------------------------------------------------------------ features
    def _edge_frames(self, vec: torch.Tensor, envelope: torch.Tensor, graph: Graph) -> EdgeFrames:
        """Rotations into the (truncated) frames of both directions of every pair and back;
        ``envelope`` is (2P,), one factor per direction."""
        direction = vec / vec.norm(dim=-1, keepdim=True)
        if self.config.y_clip:  # fairchem 1.x: edges within ~1.4 mrad of +-y snap onto it,
            y = direction[:, 1].detach()  # and their frames carry no gradient
            near = (y.abs() > Y_CLIP)[:, None]
            axis = torch.zeros_like(direction)
            axis[:, 1] = torch.sign(y)
            direction = torch.where(near, axis, direction)
        rot_out = self._truncated_wigner(edge_rotation(direction))  # (P, K, K_trunc)
        flip = self.flip_sign.to(vec.dtype)
        rot_in = rot_out.transpose(1, 2).contiguous()
        rot_out = torch.cat([rot_out, rot_out * flip], dim=0)
        return EdgeFrames(
            rot_in=rot_in,
            rot_out_env=rot_out * envelope[:, None, None],
            source=torch.cat([graph.src, graph.dst]),
            target=torch.cat([graph.dst, graph.src]),
            flip=flip,
            sizes=self.group_sizes,
        )

    def _truncated_wigner(self, rot: torch.Tensor) -> torch.Tensor:
        """(E, K, K_trunc): the columns of the block-diagonal D(R) for kept coefficients."""
        blocks = self.wigner(rot)
        k = self.num_coefficients
        padded = [
            nn.functional.pad(d, (l * l, k - (l + 1) ** 2)) for l, d in enumerate(blocks)
        ]  # each (E, 2l+1, K): D(R) row block by row block
        return torch.cat(padded, dim=1).index_select(2, self.trunc_index)

    def node_features(
        self,
        positions: torch.Tensor,
        numbers: torch.Tensor,
        cell: torch.Tensor,
        batch: torch.Tensor,
        graph: Graph,
    ) -> torch.Tensor:
        """Final (N, (lmax+1)^2, C) node features after all blocks and the final norm."""
        cfg = self.config
        species = numbers - 1
        vec = edge_vectors(positions, cell, batch, graph)
        dist = vec.norm(dim=-1)
        if cfg.use_envelope:
            envelope = polynomial_envelope(dist / cfg.cutoff, cfg.envelope_p).repeat(2)
        else:
            envelope = torch.ones_like(dist).repeat(2)
        if cfg.max_neighbors is not None:
            kept = neighbour_cap(graph, dist.detach(), positions.shape[0], cfg.max_neighbors)
            if kept is not None:  # a dropped direction sends nothing to its target
                envelope = envelope * kept.to(envelope.dtype)
        rbf = self.rbf(dist)
        edges = EdgeInputs(
            rbf=rbf,
            zi=species[graph.dst],
            zj=species[graph.src],
            source_table=self.source_embedding.weight,
            target_table=self.target_embedding.weight,
        )
        frames = self._edge_frames(vec, envelope, graph)
        n = positions.shape[0]
        x = positions.new_zeros(n, self.num_coefficients, cfg.channels)
        x[:, 0] = self.node_embedding(species)
        system = self.system_embedding
        if system is not None:
            x[:, 0] = x[:, 0] + system.to(x.dtype)
            system = system.to(x.dtype)
        # edge-degree embedding: m = 0 coefficients from the edge scalars, rotated back
        m0 = self.degree_mlp.forward_pairs(edges).view(-1, cfg.lmax + 1, cfg.channels)
        rot_m0 = frames.rot_out_env.narrow(2, 0, cfg.lmax + 1)  # m = 0 columns, enveloped
        deg = torch.bmm(rot_m0, m0 / cfg.degree_normalization)
        x = x.index_add(0, frames.target, deg)
        for block in self.blocks:
            x = block(x, edges, frames, system)
        return self.norm_final(x)

    # ------------------------------------------------------------------ forward
    #: Atoms per forward pass on a CPU: larger batches are split into groups of whole
    #: structures (results are identical; the edge tensors then stay in cache). None = no limit.
    cpu_pass_atoms: int | None = 256

    def forward(
        self,
        data: AtomsBatch,
        compute_forces: bool = True,
        compute_stress: bool = True,
        direct: bool = False,
        pass_atoms: int | None = -1,
    ) -> dict[str, torch.Tensor]:
        """Energies (B,) float64 eV; forces (N, 3) eV/A; stress (B, 3, 3) eV/A^3 (ASE sign).

        ``direct=True`` returns the direct-force head's forces (pretraining) and no stress.
        ``pass_atoms`` caps the atoms of one pass (-1: ``cpu_pass_atoms`` on a CPU, no cap on
        a GPU); structures are never split.
        """
        if pass_atoms == -1:
            pass_atoms = self.cpu_pass_atoms if data.positions.device.type == "cpu" else None
        sizes = torch.bincount(data.system, minlength=data.num_structures).tolist()
        groups = pack_structures(sizes, pass_atoms) or [[]]
        if len(groups) > 1:
            parts = [
                self.forward(part, compute_forces, compute_stress, direct, pass_atoms=None)
                for part in (data.select(g) for g in groups)
            ]
            return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        return self._forward(data, compute_forces, compute_stress, direct)

    def _forward(
        self, data: AtomsBatch, compute_forces: bool, compute_stress: bool, direct: bool
    ) -> dict[str, torch.Tensor]:
        bad = ~self.allowed[data.numbers]
        if bad.any():
            z = int(data.numbers[bad][0])
            from ase.data import chemical_symbols

            raise ValueError(f"element {chemical_symbols[z]} is not supported by this model")
        positions, cell, batch = data.positions, data.cell, data.system
        n_struct = data.num_structures
        need_grad = not direct and (compute_forces or compute_stress)
        with torch.enable_grad() if need_grad else contextlib.nullcontext():
            graph = radius_graph_pbc(
                positions.detach(), cell.detach(), batch, self.config.cutoff
            ).pairs()
            if need_grad and not positions.requires_grad:
                positions = positions.detach().requires_grad_(True)
            strain = None
            if compute_stress and not direct:
                strain = positions.new_zeros(n_struct, 3, 3, requires_grad=True)
                sym = 0.5 * (strain + strain.transpose(1, 2))
                positions_s = positions + torch.einsum("ni,nij->nj", positions, sym[batch])
                cell_s = cell + torch.bmm(cell, sym)
            else:
                positions_s, cell_s = positions, cell
            x = self.node_features(positions_s, data.numbers, cell_s, batch, graph)
            atom_e = self.energy_head(x[:, 0]).squeeze(-1).double()
            raw = torch.zeros(n_struct, dtype=torch.float64, device=atom_e.device)
            raw = raw.index_add(0, batch, atom_e)
            refs = torch.zeros_like(raw).index_add(0, batch, self.element_energies[data.numbers])
            e_mean, e_rmsd = self.config.output_norm("energy")
            f_mean, f_rmsd = self.config.output_norm("forces")
            out: dict[str, torch.Tensor] = {"energy": raw * e_rmsd + e_mean + refs}
            if direct:
                if self.force_head is None:
                    raise ValueError("this model has no direct-force head (direct_forces=False)")
                out["forces"] = self.force_head(x[:, 1:4]).squeeze(-1) * f_rmsd + f_mean
                return out
            inputs = [positions] if compute_forces else []
            if strain is not None:
                inputs.append(strain)
            if inputs:
                grads = torch.autograd.grad(
                    raw.sum(), inputs, create_graph=self.training, allow_unused=False
                )
                if compute_forces:
                    forces = -grads[0] * f_rmsd + f_mean
                    out["forces"] = forces.to(data.positions.dtype)
                if strain is not None:
                    s_mean, s_rmsd = self.config.output_norm("stress")
                    volume = torch.linalg.det(cell).abs()
                    stress = grads[-1] / volume[:, None, None] * s_rmsd + s_mean
                    out["stress"] = stress.to(data.positions.dtype)
        return out

    # ------------------------------------------------------------------ checkpoints
    def checkpoint(self, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        """The plain-data checkpoint dict (config, weights, element energies, metadata)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "config": self.config.as_dict(),
            "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()},
            "element_energies": self.element_energies.detach().cpu(),
            "metadata": dict(metadata or {}),
        }

    def save(self, path: str | Path, metadata: dict[str, Any] | None = None) -> Path:
        """Write a self-describing checkpoint (see ``checkpoint``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(self.checkpoint(metadata), path)
        return path

    @classmethod
    def load(cls, path: str | Path, map_location: Any = "cpu") -> ESEN:
        """Read a checkpoint written by ``save``; never executes code from the file.

        Raises
        ------
        CheckpointError
            When the file is missing, not a torch file, holds anything but plain data, or does
            not describe an ESEN whose weights match its config.
        """
        return cls.from_checkpoint(read_checkpoint(path, map_location), path)

    @classmethod
    def from_checkpoint(cls, data: dict[str, Any], path: str | Path = "checkpoint") -> ESEN:
        """The model of a checkpoint dict already read (``read_checkpoint``'s checks done)."""
        try:
            config = ESENConfig.from_dict(data["config"])
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: {exc}") from None
        model = cls(config)
        expected = model.state_dict()
        state = data["state_dict"]
        missing = sorted(set(expected) - set(state))
        extra = sorted(set(state) - set(expected))
        if missing or extra:
            raise CheckpointError(
                f"{path}: weights do not match the config (missing {missing[:3]}, "
                f"unexpected {extra[:3]})"
            )
        for k, v in state.items():
            if not isinstance(v, torch.Tensor) or v.shape != expected[k].shape:
                raise CheckpointError(f"{path}: tensor {k!r} has the wrong shape or type")
        refs = data.get("element_energies")
        if refs is not None and not torch.equal(refs.double(), state["element_energies"].double()):
            raise CheckpointError(f"{path}: element energies disagree with the weights")
        model.load_state_dict(state)
        model.metadata = data.get("metadata", {})
        return model

    def _apply(self, fn, *args, **kwargs):
        """Casting the model (``.to(float32)``) keeps the element energies in float64."""
        super()._apply(fn, *args, **kwargs)
        self.element_energies = self.element_energies.to(torch.float64)
        return self

    def num_parameters(self) -> int:
        """Trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def read_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Load and validate the plain-data dict of a checkpoint (``weights_only=True``)."""
    try:
        data = load_data(path, map_location)
    except (FileNotFoundError, ValueError) as exc:  # weights_only: nothing in the file runs
        raise CheckpointError(str(exc)) from None
    return check_checkpoint(data, path)


def check_checkpoint(data: Any, path: str | Path = "checkpoint") -> dict[str, Any]:
    """``data`` if it is an esen-flows checkpoint dict of a supported version, else raise."""
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not an esen-flows checkpoint (no format tag)")
    if data.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: checkpoint version {data.get('version')} not supported")
    for key, kind in (("config", dict), ("state_dict", dict)):
        if not isinstance(data.get(key), kind):
            raise CheckpointError(f"{path}: checkpoint has no {key}")
    return data
