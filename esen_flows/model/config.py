"""Hyperparameters of the eSEN model."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ase.data import atomic_numbers, chemical_symbols


@dataclass(frozen=True)
class ESENConfig:
    """Hyperparameters of ``ESEN`` (Fu et al. 2025, arXiv 2502.12147).

    Attributes
    ----------
    elements
        Element symbols the model knows; None = every element up to ``max_atomic_number``.
    max_atomic_number
        Size of the element embeddings (atomic numbers 1..max_atomic_number).
    lmax, mmax
        Largest degree of the node features and largest |m| kept in the edge frame.
    channels
        Channels per (l, m) coefficient of the node features ("sphere channels").
    hidden_channels
        Channels between the two SO(2) convolutions of a block.
    ffn_hidden_channels
        Channels inside the node feed-forward network.
    edge_channels
        Hidden width of the radial MLPs and size of each element embedding on edges.
    num_layers
        Message-passing blocks.
    cutoff
        Radius of the graph, Angstrom.
    num_rbf
        Gaussians on [0, cutoff]; width ``rbf_width_factor`` x their spacing.
    envelope_p
        Exponent of the polynomial envelope (value, 1st and 2nd derivative vanish at cutoff).
    degree_normalization
        The edge-degree embedding's neighbour sum is divided by this.
    energy_hidden_channels
        Width of the energy head MLP.
    direct_forces
        Add a direct-force head (pretraining only; the conservative model leaves it off).
    use_envelope
        Multiply every message and the edge-degree embedding by the polynomial envelope (the
        paper's smooth model; fairchem 1.x checkpoints may have it off).
    max_neighbors
        fairchem's neighbour cap: an atom with more neighbours within the cutoff keeps those
        whose squared distance is at most its (max_neighbors + 1)-th nearest's plus 0.01 A^2
        (non-smooth); None = no cap (the paper's eSEN).
    y_clip
        fairchem 1.x's ``rot_clip``: an edge within about 1.4 mrad of the y axis
        (|y| > 0.999999) is snapped onto it and its frame carries no gradient, so forces and
        stress miss that term (not the exact gradient; the paper's model leaves it off).
    system_embedding
        A learned (C,) vector added to every atom's l = 0 features at the start and after each
        block's first norm (fairchem 2.x's charge/spin/dataset embedding at a fixed system).
    normalizers
        fairchem's output de-normalisation, ``{"energy": (mean, rmsd), "forces": ...,
        "stress": ...}``: each output is ``raw * rmsd + mean`` (energy per structure, eV; forces
        eV/A; stress eV/A^3) before the element energies are added; None = identity.
    """

    elements: tuple[str, ...] | None = None
    max_atomic_number: int = 100
    lmax: int = 2
    mmax: int = 2
    channels: int = 64
    hidden_channels: int = 64
    ffn_hidden_channels: int = 128
    edge_channels: int = 128
    num_layers: int = 2
    cutoff: float = 5.0
    num_rbf: int = 64
    rbf_width_factor: float = 2.0
    envelope_p: int = 5
    degree_normalization: float = 5.0
    energy_hidden_channels: int = 64
    direct_forces: bool = False
    use_envelope: bool = True
    max_neighbors: int | None = None
    y_clip: bool = False
    system_embedding: bool = False
    normalizers: dict[str, tuple[float, float]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = []
        if self.lmax < 1:
            problems.append(f"lmax must be >= 1, got {self.lmax}")
        if not 0 <= self.mmax <= self.lmax:
            problems.append(f"mmax must be in [0, lmax={self.lmax}], got {self.mmax}")
        for name in (
            "channels",
            "hidden_channels",
            "ffn_hidden_channels",
            "edge_channels",
            "num_layers",
            "num_rbf",
            "energy_hidden_channels",
            "max_atomic_number",
        ):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be positive, got {getattr(self, name)}")
        if not self.cutoff > 0:
            problems.append(f"cutoff must be positive, got {self.cutoff}")
        if self.max_neighbors is not None and self.max_neighbors < 1:
            problems.append(f"max_neighbors must be None or positive, got {self.max_neighbors}")
        for key, pair in (self.normalizers or {}).items():
            if key not in ("energy", "forces", "stress") or len(pair) != 2:
                problems.append(f"normalizers[{key!r}] must be a (mean, rmsd) pair of an output")
        if self.elements is not None:
            unknown = [e for e in self.elements if e not in atomic_numbers]
            if unknown:
                problems.append(f"unknown element symbols {unknown}")
            elif max(atomic_numbers[e] for e in self.elements) > self.max_atomic_number:
                problems.append("an element's atomic number exceeds max_atomic_number")
        if problems:
            raise ValueError("invalid ESENConfig: " + "; ".join(problems))
        if self.elements is not None:
            object.__setattr__(self, "elements", tuple(self.elements))
        if self.normalizers is not None:
            norm = {k: (float(v[0]), float(v[1])) for k, v in self.normalizers.items()}
            object.__setattr__(self, "normalizers", norm)

    def output_norm(self, key: str) -> tuple[float, float]:
        """(mean, rmsd) of an output ("energy", "forces", "stress"); (0, 1) by default."""
        return (self.normalizers or {}).get(key, (0.0, 1.0))

    @property
    def supported_elements(self) -> frozenset[str]:
        """Symbols the model accepts."""
        if self.elements is not None:
            return frozenset(self.elements)
        return frozenset(chemical_symbols[1 : self.max_atomic_number + 1])

    def as_dict(self) -> dict[str, Any]:
        """Plain-data form (for checkpoints)."""
        d = asdict(self)
        d["elements"] = list(self.elements) if self.elements is not None else None
        if self.normalizers is not None:
            d["normalizers"] = {k: list(v) for k, v in self.normalizers.items()}
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ESENConfig:
        """Inverse of ``as_dict``; unknown keys are an error (a checkpoint from elsewhere)."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"ESENConfig does not know the keys {unknown}")
        data = dict(data)
        if data.get("elements") is not None:
            data["elements"] = tuple(data["elements"])
        return cls(**data)

    @classmethod
    def esen_30m_oam(cls, **overrides: Any) -> ESENConfig:
        """The paper's eSEN-30M-OAM: 10 layers, lmax 3, mmax 2, 128 channels, 6 A, 64 Gaussians."""
        base = dict(
            lmax=3,
            mmax=2,
            channels=128,
            hidden_channels=128,
            ffn_hidden_channels=128,
            edge_channels=128,
            num_layers=10,
            cutoff=6.0,
            num_rbf=64,
            energy_hidden_channels=128,
        )
        return cls(**{**base, **overrides})
