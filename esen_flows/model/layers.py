"""Building blocks of eSEN: radial basis, envelope, equivariant norm, SO(2) convolution, gates.

Node features are dense tensors (N, (lmax+1)^2, C) of real spherical-harmonic coefficients in
e3nn's order. In an edge frame (edge along +y) only the coefficients with |m| <= mmax are kept,
ordered by m: first m = 0 for l = 0..lmax, then for each m = 1..mmax the +m coefficients
(l = m..lmax) followed by the -m ones. A rotation about the edge turns each (+m, -m) pair like
a complex number e^{i m phi}; the SO(2) convolution multiplies them by learned complex weights,
which commutes with that turn, so the result is independent of the roll of the edge frame.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn


def coefficient_degrees(lmax: int) -> torch.Tensor:
    """(K,) degree l of each coefficient of a (lmax+1)^2 feature block."""
    return torch.cat([torch.full((2 * l + 1,), l) for l in range(lmax + 1)])


def truncated_layout(lmax: int, mmax: int) -> tuple[list[int], list[int], list[int]]:
    """Indices into the full coefficient block of the |m| <= mmax edge-frame layout.

    Returns
    -------
    index
        For each kept coefficient, its position in the (lmax+1)^2 block, ordered by m.
    degrees
        Its degree l.
    sizes
        Coefficients per group: [lmax+1, then lmax+1-m twice for each m >= 1].
    """
    index, degrees, sizes = [], [], [lmax + 1]
    for l in range(lmax + 1):
        index.append(l * l + l)
        degrees.append(l)
    for m in range(1, mmax + 1):
        for sign in (1, -1):
            for l in range(m, lmax + 1):
                index.append(l * l + l + sign * m)
                degrees.append(l)
            sizes.append(lmax + 1 - m)
    return index, degrees, sizes


class GaussianBasis(nn.Module):
    """Gaussians on [0, cutoff] with width ``width_factor`` x their spacing (fixed, no weights)."""

    def __init__(self, cutoff: float, num: int, width_factor: float = 2.0):
        super().__init__()
        centres = torch.linspace(0.0, cutoff, num, dtype=torch.float64)
        spacing = cutoff / max(num - 1, 1)
        self.register_buffer("centres", centres)
        self.coeff = -0.5 / (width_factor * spacing) ** 2

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        return torch.exp(self.coeff * (d.unsqueeze(-1) - self.centres.to(d.dtype)) ** 2)


def polynomial_envelope(u: torch.Tensor, p: int = 5) -> torch.Tensor:
    """DimeNet's envelope on u = d / cutoff: 1 at 0; value, 1st and 2nd derivative 0 at u = 1.

    For p = 5: 1 - 21 u^5 + 35 u^6 - 15 u^7; zero for u >= 1.
    """
    a = (p + 1) * (p + 2) / 2
    b = p * (p + 2)
    c = p * (p + 1) / 2
    u = torch.clamp(u, max=1.0)
    env = 1 - a * u**p + b * u ** (p + 1) - c * u ** (p + 2)
    return torch.where(u < 1.0, env, torch.zeros_like(env))


class RadialMLP(nn.Module):
    """(Linear-LayerNorm-SiLU) per hidden width, then Linear: edge scalars to per-edge weights.

    ``output_order`` (optional) permutes the outputs: output k is the last Linear's row
    ``output_order[k]``. The weights keep their order (checkpoints do not change); the
    permuted rows are gathered per call, a (out, hidden) matrix, not an edge tensor.
    """

    def __init__(self, sizes: list[int], output_order: list[int] | None = None):
        super().__init__()
        if len(sizes) < 3:
            raise ValueError(f"a radial MLP needs at least one hidden layer, got sizes {sizes}")
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(sizes[:-1]):
            layers += [nn.Linear(a, b), nn.LayerNorm(b), nn.SiLU()]
        layers.append(nn.Linear(sizes[-2], sizes[-1]))
        self.net = nn.Sequential(*layers)
        if output_order is not None and sorted(output_order) != list(range(sizes[-1])):
            raise ValueError("output_order must be a permutation of the outputs")
        order = None if output_order is None else torch.tensor(output_order, dtype=torch.long)
        self.register_buffer("output_order", order, persistent=False)

    def _last_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The last Linear's weight (out, hidden) and bias (out,), rows in output order."""
        last = self.net[-1]
        if self.output_order is None:
            return last.weight, last.bias
        return last.weight[self.output_order], last.bias[self.output_order]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(self.net[:-1](x), *self._last_weights())

    def _hidden_pairs(self, edges: EdgeInputs) -> torch.Tensor:
        """(2P, hidden): the input of the last Linear for both directions of every pair.

        The first Linear is split by its input blocks: the rbf part is computed once per pair
        and the embedding parts once per element (exactly the same arithmetic result).
        """
        first = self.net[0]
        r, e = edges.rbf.shape[1], edges.source_table.shape[1]
        w_rbf, w_src, w_dst = torch.split(first.weight, [r, e, e], dim=1)
        base = edges.rbf @ w_rbf.T + first.bias
        src = edges.source_table @ w_src.T  # (Z, H): contribution of each source element
        dst = edges.target_table @ w_dst.T
        zi, zj = edges.zi, edges.zj
        h = torch.cat(
            [
                base + src.index_select(0, zj) + dst.index_select(0, zi),
                base + src.index_select(0, zi) + dst.index_select(0, zj),
            ],
            dim=0,
        )
        return self.net[1:-1](h)

    def forward_pairs(self, edges: EdgeInputs) -> torch.Tensor:
        """The same MLP on [rbf, source embedding, target embedding] for both directions of
        every pair, (2P, out): i <- j first, then j <- i."""
        return nn.functional.linear(self._hidden_pairs(edges), *self._last_weights())

    def forward_pairs_blocks(
        self, edges: EdgeInputs, blocks: Sequence[int]
    ) -> tuple[torch.Tensor, ...]:
        """``forward_pairs`` cut into consecutive blocks of outputs (sizes ``blocks``, summing
        to out): a tuple of (2P, size) tensors, one product each.

        Each block is its own contiguous tensor, so the backward pass concatenates no
        (2P, out) gradient, and no single edge tensor of that width is made (33.5 MB for the
        first convolution of a 256-atom Cu cell at the small benchmark config).
        """
        weight, bias = self._last_weights()
        h = self._hidden_pairs(edges)
        sizes = list(blocks)
        return tuple(
            nn.functional.linear(h, w, b)
            for w, b in zip(torch.split(weight, sizes), torch.split(bias, sizes), strict=True)
        )


@dataclass
class EdgeInputs:
    """Per-pair inputs of the radial MLPs.

    Attributes
    ----------
    rbf
        (P, R) Gaussian basis of each pair's distance (A), R = ``num_rbf``.
    zi, zj
        (P,) element index (atomic number - 1) of the pair's centre i and neighbour j.
    source_table, target_table
        (Z, E) embedding weights of the sending and the receiving atom's element,
        Z = ``max_atomic_number``, E = ``edge_channels``.
    """

    rbf: torch.Tensor
    zi: torch.Tensor
    zj: torch.Tensor
    source_table: torch.Tensor
    target_table: torch.Tensor


class EquivariantRMSNorm(nn.Module):
    """RMS norm over channels and degrees; each degree weighted 1/((lmax+1)(2l+1)).

    The l = 0 channel mean is removed first; a learnable scale per (l, channel) and a bias on
    l = 0 follow. Rotations commute with it (norms of each l block are invariant).
    """

    def __init__(self, lmax: int, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        degrees = coefficient_degrees(lmax)
        self.register_buffer("degrees", degrees, persistent=False)
        weight = 1.0 / ((lmax + 1) * (2 * degrees.double() + 1))
        self.register_buffer("balance", weight, persistent=False)
        self.scale = nn.Parameter(torch.ones(lmax + 1, channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scalar = x[:, :1] - x[:, :1].mean(dim=-1, keepdim=True)
        x = torch.cat([scalar, x[:, 1:]], dim=1)
        power = (x.pow(2) * self.balance.to(x.dtype)[None, :, None]).sum(dim=1).mean(dim=-1)
        x = x * torch.rsqrt(power + self.eps)[:, None, None]
        x = x * self.scale[self.degrees].unsqueeze(0)
        return torch.cat([x[:, :1] + self.bias, x[:, 1:]], dim=1)


class SO2Convolution(nn.Module):
    """Convolution in the edge frame, mixing degrees within each |m| (Passaro & Zitnick 2023).

    Input and output are lists of groups in the order of ``truncated_layout``: the m = 0 group
    (E, lmax+1, C), then for each m >= 1 the +m and the -m group (E, lmax+1-m, C).

    m = 0: the group is flattened, optionally scaled elementwise by radial weights, and mapped
    by a Linear with bias; ``extra`` more outputs (the gates) come from the same input.
    m > 0: +m and -m are the real and imaginary parts of a complex vector, multiplied by one
    bias-free complex matrix (W_r + i W_i), which commutes with turns about the edge.

    The input channels may come in ``parts`` (equal blocks along the channel axis, e.g. the
    source and the target atom's features): each part is multiplied by its rows of the weights
    and the products are summed, the same result as on the concatenated channels without ever
    building that concatenation (on a CPU, copies of edge tensors cost as much as products).

    The radial weights (E, ``radial_size()``) are ordered [m][part][l][channel], so that the
    weights of each part and m are one contiguous block of columns (a strided slice would cost
    a zero-filled copy per part in the backward pass). ``radial_order()`` maps that order to the
    [m][l][channels of all parts] order of the concatenated input.
    """

    def __init__(
        self,
        lmax: int,
        mmax: int,
        in_channels: int,
        out_channels: int,
        extra: int = 0,
        parts: int = 1,
    ):
        super().__init__()
        if in_channels % parts:
            raise ValueError(f"in_channels={in_channels} is not a multiple of parts={parts}")
        self.lmax, self.mmax, self.parts = lmax, mmax, parts
        self.cin, self.cout, self.extra = in_channels, out_channels, extra
        n0 = lmax + 1
        self.m0 = nn.Linear(n0 * in_channels, n0 * out_channels)
        self.gates = nn.Linear(n0 * in_channels, extra) if extra else None
        self.real = nn.ParameterList()
        self.imag = nn.ParameterList()
        for m in range(1, mmax + 1):
            n = lmax + 1 - m
            bound = 1.0 / math.sqrt(n * in_channels) / math.sqrt(2.0)
            self.real.append(nn.Parameter(torch.empty(n * in_channels, n * out_channels)))
            self.imag.append(nn.Parameter(torch.empty(n * in_channels, n * out_channels)))
            nn.init.uniform_(self.real[-1], -bound, bound)
            nn.init.uniform_(self.imag[-1], -bound, bound)

    def radial_size(self) -> int:
        """Length of the per-edge radial weight vector (shared by +m and -m)."""
        return sum(self.lmax + 1 - m for m in range(self.mmax + 1)) * self.cin

    def radial_blocks(self) -> list[int]:
        """Sizes of the contiguous (m, part) blocks of the radial weights, in order."""
        cp = self.cin // self.parts
        return [(self.lmax + 1 - m) * cp for m in range(self.mmax + 1) for _ in range(self.parts)]

    def radial_order(self) -> list[int] | None:
        """For each radial weight in this convolution's [m][part][l][channel] order, its index
        in the [m][l][channel of the concatenated parts] order; None for one part."""
        if self.parts == 1:
            return None
        cp, order, offset = self.cin // self.parts, [], 0
        for m in range(self.mmax + 1):
            n = self.lmax + 1 - m
            for k in range(self.parts):
                for l in range(n):
                    start = offset + l * self.cin + k * cp
                    order.extend(range(start, start + cp))
            offset += n * self.cin
        return order

    def _rows(self, weight: torch.Tensor, n: int) -> tuple[torch.Tensor, ...]:
        """(n * cin, out) weights -> one (n * cin / parts, out) block per input part (the
        flattened input index is l * cin + channel)."""
        if self.parts == 1:
            return (weight,)
        w = weight.reshape(n, self.parts, self.cin // self.parts, weight.shape[-1])
        return tuple(w[:, k].reshape(-1, weight.shape[-1]) for k in range(self.parts))

    def _inputs(
        self,
        parts: list[list[torch.Tensor]],
        g: int,
        n: int,
        weights: tuple[torch.Tensor, ...] | None,
    ) -> list[torch.Tensor]:
        """Group ``g`` of every part, each times its own block of radial weights, flattened
        to (E, n * C_part)."""
        e, c = parts[0][g].shape[0], self.cin // self.parts
        out = []
        for k, groups in enumerate(parts):
            x = groups[g] if weights is None else groups[g] * weights[k].view(e, n, c)
            out.append(x.reshape(e, n * c))
        return out

    @staticmethod
    def _product(
        terms: list[tuple[torch.Tensor, torch.Tensor, float]], bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        """bias + sum of sign * x @ w over ``terms`` of (x, w, sign).

        The first product (with the bias) makes a new tensor and the others are accumulated
        into it in place: a matrix product keeps its inputs for the backward pass, never its
        output, and an out-of-place ``addmm`` would first copy the whole edge tensor. Under
        autocast the accumulation is out of place (in-place ops are not autocast).
        """
        x, w, sign = terms[0]
        if bias is not None:
            out = torch.addmm(bias, x, w, alpha=sign)
        else:
            out = x @ w if sign == 1.0 else torch.mm(x, w).mul_(sign)
        in_place = not _autocast_enabled(x.device.type)
        for x, w, sign in terms[1:]:
            out = out.addmm_(x, w, alpha=sign) if in_place else torch.addmm(out, x, w, alpha=sign)
        return out

    def forward(
        self,
        parts: list[list[torch.Tensor]],
        radial: torch.Tensor | Sequence[torch.Tensor] | None = None,
    ) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """``parts``: per input part, its list of groups; ``radial``: (E, radial_size()) in
        the [m][part][l][channel] order, or already cut into its ``radial_blocks()``."""
        if len(parts) != self.parts:
            raise ValueError(f"expected {self.parts} input parts, got {len(parts)}")
        e = parts[0][0].shape[0]
        n0 = self.lmax + 1
        weights: list[tuple[torch.Tensor, ...] | None] = [None] * (self.mmax + 1)
        if radial is not None:
            sizes = self.radial_blocks()
            if isinstance(radial, torch.Tensor):  # one contiguous block of columns per (m, part)
                blocks = torch.split(radial, sizes, dim=1)
            elif [b.shape[-1] for b in radial] == sizes:
                blocks = tuple(radial)
            else:
                raise ValueError(f"radial blocks must have the sizes {sizes}")
            weights = [
                tuple(blocks[m * self.parts : (m + 1) * self.parts]) for m in range(self.mmax + 1)
            ]

        def terms(xs, ws, sign=1.0):
            return [(x, w, sign) for x, w in zip(xs, ws, strict=True)]

        x0 = self._inputs(parts, 0, n0, weights[0])
        m0 = self._product(terms(x0, self._rows(self.m0.weight.T, n0)), self.m0.bias)
        out = [m0.view(e, n0, self.cout)]
        extra = None
        if self.gates is not None:
            extra = self._product(terms(x0, self._rows(self.gates.weight.T, n0)), self.gates.bias)
        for m in range(1, self.mmax + 1):
            n = self.lmax + 1 - m
            xp = self._inputs(parts, 2 * m - 1, n, weights[m])
            xm = self._inputs(parts, 2 * m, n, weights[m])
            wr = self._rows(self.real[m - 1], n)
            wi = self._rows(self.imag[m - 1], n)
            real = self._product(terms(xp, wr) + terms(xm, wi, -1.0))  # (xp + i xm)(wr + i wi)
            imag = self._product(terms(xp, wi) + terms(xm, wr))
            out += [real.view(e, n, self.cout), imag.view(e, n, self.cout)]
        return out, extra


def _autocast_enabled(device_type: str) -> bool:
    """Whether autocast is on for ``device_type`` (torch < 2.4 takes no device type)."""
    try:
        return bool(torch.is_autocast_enabled(device_type))
    except TypeError:
        return torch.is_autocast_enabled() or torch.is_autocast_cpu_enabled()


def gate_groups(
    groups: list[torch.Tensor], gates: torch.Tensor, lmax: int, mmax: int
) -> list[torch.Tensor]:
    """Gated nonlinearity on edge-frame groups: SiLU on the l = 0 coefficient, every l > 0
    coefficient times sigmoid(gate[l, channel]); ``gates`` is (E, lmax * C)."""
    e, _, c = groups[0].shape
    per_l = torch.sigmoid(gates.view(e, lmax, c))  # row l-1 gates degree l
    scalar, rest = torch.split(groups[0], [1, lmax], dim=1)
    out = [torch.cat([nn.functional.silu(scalar), rest * per_l], dim=1)]
    for m in range(1, mmax + 1):
        g = per_l if m == 1 else per_l.narrow(1, m - 1, lmax + 1 - m)
        out += [groups[2 * m - 1] * g, groups[2 * m] * g]
    return out


class GateActivation(nn.Module):
    """On (N, (lmax+1)^2, C) node features: SiLU on l = 0, each l > 0 coefficient times
    sigmoid(gate[l, channel])."""

    def __init__(self, lmax: int, channels: int):
        super().__init__()
        self.lmax, self.channels = lmax, channels
        self.register_buffer("gate_index", coefficient_degrees(lmax)[1:] - 1, persistent=False)

    def forward(self, x: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
        """x: (N, K, C); gates: (N, lmax * C)."""
        g = torch.sigmoid(gates.view(x.shape[0], self.lmax, self.channels))
        g = g.index_select(1, self.gate_index)  # (N, K - 1, C)
        scalar, rest = torch.split(x, [1, x.shape[1] - 1], dim=1)
        return torch.cat([torch.nn.functional.silu(scalar), rest * g], dim=1)


class SO3Linear(nn.Module):
    """Per-degree linear map (weights shared across m, bias on l = 0 only)."""

    def __init__(self, lmax: int, in_channels: int, out_channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(lmax + 1, in_channels, out_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        bound = 1.0 / math.sqrt(in_channels)
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blocks = torch.split(x, [2 * l + 1 for l in range(self.weight.shape[0])], dim=1)
        ys = [torch.matmul(b, w) for b, w in zip(blocks, self.weight, strict=True)]
        ys[0] = ys[0] + self.bias
        return torch.cat(ys, dim=1)


class NodeFeedForward(nn.Module):
    """Per-degree MLP on node features with sigmoid gates computed from l = 0."""

    def __init__(self, lmax: int, channels: int, hidden: int):
        super().__init__()
        self.lin1 = SO3Linear(lmax, channels, hidden)
        self.gate = nn.Linear(channels, lmax * hidden)
        self.act = GateActivation(lmax, hidden)
        self.lin2 = SO3Linear(lmax, hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gates = torch.nn.functional.silu(self.gate(x[:, 0]))
        return self.lin2(self.act(self.lin1(x), gates))
