"""Periodic radius graph over a batch of structures, by cell lists (linear in atoms).

Every structure's cell is cut into bins at least ``cutoff`` wide along each plane normal (so
triclinic cells work); each atom looks at the bins within reach, wrapping across periodic
boundaries with an integer image shift. Small cells whose images lie more than one cell away
simply get more bins in reach (the range is ceil(cutoff / bin width)), so nothing is missed and
no pair is counted twice. There is no cap on the number of neighbours.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Graph:
    """Edges of a batch of periodic structures.

    Attributes
    ----------
    src, dst
        (E,) neighbour j and centre i of each edge; messages flow from ``src`` to ``dst``.
    shifts
        (E, 3) integer image offsets: the edge vector is
        ``pos[src] - pos[dst] + shifts @ cell[batch[dst]]``.
    """

    src: torch.Tensor
    dst: torch.Tensor
    shifts: torch.Tensor

    @property
    def num_edges(self) -> int:
        return int(self.src.numel())

    def pairs(self) -> Graph:
        """Each neighbour pair once: i <- j (shift S) and j <- i (shift -S) are one pair.

        Kept: src > dst, or src == dst (an atom and its own image) with S lexicographically
        positive. The model evaluates both directions of a pair from one rotation.
        """
        s = self.shifts
        positive = (s[:, 0] > 0) | (
            (s[:, 0] == 0) & ((s[:, 1] > 0) | ((s[:, 1] == 0) & (s[:, 2] > 0)))
        )
        keep = (self.src > self.dst) | ((self.src == self.dst) & positive)
        return Graph(src=self.src[keep], dst=self.dst[keep], shifts=self.shifts[keep])


def edge_vectors(
    positions: torch.Tensor, cell: torch.Tensor, batch: torch.Tensor, graph: Graph
) -> torch.Tensor:
    """(E, 3) vectors from each centre to its neighbour image, differentiable in both inputs."""
    offsets = torch.einsum("ek,ekj->ej", graph.shifts.to(positions.dtype), cell[batch[graph.dst]])
    return positions[graph.src] - positions[graph.dst] + offsets


@torch.no_grad()
def radius_graph_pbc(
    positions: torch.Tensor,
    cell: torch.Tensor,
    batch: torch.Tensor,
    cutoff: float,
) -> Graph:
    """All pairs (with periodic images) closer than ``cutoff`` in each structure.

    Parameters
    ----------
    positions
        (N, 3) Cartesian positions, Angstrom (any values: they are wrapped internally).
    cell
        (B, 3, 3) lattice vectors as rows, Angstrom; every structure periodic in 3D.
    batch
        (N,) structure index of each atom, sorted ascending.
    cutoff
        Angstrom.

    Returns
    -------
    Graph
        Edges i <- j with ``0 < |r_ij| < cutoff`` (the self pair at zero shift excluded).
    """
    device = positions.device
    work = torch.float64
    pos = positions.to(work)
    cell = cell.to(work)
    inv_cell = torch.linalg.inv(cell)  # (B, 3, 3)
    frac = torch.einsum("ni,nij->nj", pos, inv_cell[batch])
    wrap = torch.floor(frac)
    frac = frac - wrap  # in [0, 1)
    wrap = wrap.long()
    pos_w = torch.einsum("ni,nij->nj", frac, cell[batch])

    # plane spacings d_k = 1 / |b_k| with b_k the reciprocal vectors (columns of inv_cell)
    spacing = 1.0 / torch.linalg.norm(inv_cell, dim=1)  # (B, 3)
    n_bins = torch.clamp(torch.floor(spacing / cutoff), min=1).long()  # (B, 3)
    reach = torch.ceil(cutoff / (spacing / n_bins) - 1e-9).long()  # bins in reach, >= 1

    bin3 = torch.clamp((frac * n_bins[batch]).long(), max=n_bins[batch] - 1)  # (N, 3)
    bins_per = n_bins.prod(dim=1)
    bin_offset = torch.cumsum(bins_per, 0) - bins_per
    nb = n_bins[batch]
    local = (bin3[:, 0] * nb[:, 1] + bin3[:, 1]) * nb[:, 2] + bin3[:, 2]
    gbin = bin_offset[batch] + local
    order = torch.argsort(gbin, stable=True)
    total_bins = int(bins_per.sum())
    counts = torch.bincount(gbin, minlength=total_bins)
    starts = torch.cumsum(counts, 0) - counts

    # every atom queries every bin offset in reach of its structure
    width = 2 * reach + 1  # (B, 3)
    n_off = width.prod(dim=1)  # (B,)
    q_per_atom = n_off[batch]
    q_atom = torch.repeat_interleave(torch.arange(len(pos), device=device), q_per_atom)
    q_first = torch.cumsum(q_per_atom, 0) - q_per_atom
    q_idx = torch.arange(len(q_atom), device=device) - q_first[q_atom]
    qb = batch[q_atom]
    w = width[qb]
    d0 = q_idx // (w[:, 1] * w[:, 2]) - reach[qb, 0]
    d1 = (q_idx // w[:, 2]) % w[:, 1] - reach[qb, 1]
    d2 = q_idx % w[:, 2] - reach[qb, 2]
    target = bin3[q_atom] + torch.stack([d0, d1, d2], dim=1)
    nbq = n_bins[qb]
    image = torch.div(target, nbq, rounding_mode="floor")
    target = target - image * nbq
    t_local = (target[:, 0] * nbq[:, 1] + target[:, 1]) * nbq[:, 2] + target[:, 2]
    t_bin = bin_offset[qb] + t_local

    # expand each query into the atoms of its target bin
    c = counts[t_bin]
    pair_q = torch.repeat_interleave(torch.arange(len(t_bin), device=device), c)
    pair_first = torch.cumsum(c, 0) - c
    within = torch.arange(len(pair_q), device=device) - pair_first[pair_q]
    j = order[starts[t_bin[pair_q]] + within]
    i = q_atom[pair_q]
    img = image[pair_q]

    vec = pos_w[j] - pos_w[i] + torch.einsum("ek,ekj->ej", img.to(work), cell[batch[i]])
    dist2 = (vec * vec).sum(dim=1)
    keep = (dist2 < cutoff * cutoff) & ~((i == j) & (img == 0).all(dim=1))
    i, j, img = i[keep], j[keep], img[keep]
    # image shift for the unwrapped input positions
    shifts = img - wrap[j] + wrap[i]
    return Graph(src=j, dst=i, shifts=shifts)


def neighbour_cap(
    graph: Graph, dist: torch.Tensor, n_atoms: int, max_neighbors: int, tolerance: float = 0.01
) -> torch.Tensor | None:
    """fairchem's neighbour cap on both directions of every pair: (2P,) bool, True where a
    direction is kept; None when no atom has more than ``max_neighbors`` neighbours.

    An atom with more keeps each neighbour whose squared distance is at most that of its
    (max_neighbors + 1)-th nearest plus ``tolerance`` (A^2), as fairchem's
    ``get_max_neighbors_mask`` does on squared distances when the cap is not strict (ties are
    kept). Directions are ordered as in ``EdgeFrames``.
    """
    targets = torch.cat([graph.dst, graph.src])
    d = (dist * dist).repeat(2)
    counts = torch.bincount(targets, minlength=n_atoms)
    if targets.numel() == 0 or int(counts.max()) <= max_neighbors:
        return None
    order = torch.argsort(d, stable=True)
    order = order[torch.argsort(targets[order], stable=True)]  # by target, then distance
    start = torch.cumsum(counts, 0) - counts
    rank = torch.arange(d.numel(), device=d.device) - start[targets[order]]
    kth = torch.full((n_atoms,), float("inf"), dtype=d.dtype, device=d.device)
    at = rank == max_neighbors
    kth[targets[order][at]] = d[order][at]
    return d <= kth[targets] + tolerance
