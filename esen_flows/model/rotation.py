"""Edge-frame rotations and their Wigner-D matrices, smooth for edges along any axis.

Features use e3nn's real spherical harmonics (y is the polar axis; the l = 1 block is
(x, y, z); index l + m within a block holds order m). An edge frame is a rotation ``R`` taking
+y to the edge direction. ``R`` is built without angles, in two charts: the minimal rotation
from +y when the edge points up (e_y >= 0), else the minimal rotation from -y composed with a
half turn about x. Both are polynomial/rational in the direction with denominators >= 1, so
their gradients are finite everywhere, including edges exactly along +-y. The chart switch
changes only the roll about the edge, to which the SO(2) convolution is blind.

The Wigner-D matrix of each l is obtained from how spherical harmonics move: for fixed unit
vectors X (2 lmax + 1 of them), Y_l(R X) = D_l(R) Y_l(X), so D_l(R) = Y_l(R X) Y_l(X)^+. The
harmonics are polynomials in R's entries, so D is exact, smooth and cheap (no matrix
exponential, no Euler angles).
"""

from __future__ import annotations

import math

import torch
from e3nn import o3


def edge_rotation(direction: torch.Tensor) -> torch.Tensor:
    """(E, 3, 3) rotations R with R @ [0, 1, 0] = direction (unit vectors, shape (E, 3))."""
    x, y, z = direction.unbind(-1)
    up = y >= 0
    s = torch.where(up, torch.ones_like(y), -torch.ones_like(y))
    # minimal rotation from s*y_hat to the direction: axis a = (s y_hat) x d, cos = s*y >= 0
    ax = s * z
    az = -s * x
    c = s * y
    k = 1.0 / (1.0 + c)  # c >= 0 in its chart: finite
    # explicit entries of I + K + K^2/(1+c), K = [[0, -az, 0], [az, 0, -ax], [0, ax, 0]]
    m00 = 1 - k * az * az
    m01 = -az
    m02 = k * az * ax
    m10 = az
    m11 = 1 - k * (az * az + ax * ax)
    m12 = -ax
    m20 = k * ax * az
    m21 = ax
    m22 = 1 - k * ax * ax
    rot = torch.stack(
        [
            torch.stack([m00, m01, m02], -1),
            torch.stack([m10, m11, m12], -1),
            torch.stack([m20, m21, m22], -1),
        ],
        -2,
    )
    # the -y chart: R = R_min(-y -> d) @ diag(1, -1, -1) (a half turn about x maps y to -y)
    flip = torch.where(up, torch.ones_like(y), -torch.ones_like(y))
    return rot * torch.stack([torch.ones_like(flip), flip, flip], -1).unsqueeze(-2)


def _probe_points(lmax: int) -> torch.Tensor:
    """2 lmax + 1 fixed unit vectors on which every Y_l (l <= lmax) is well conditioned."""
    n = 2 * lmax + 1
    best, best_cond = None, math.inf
    gen = torch.Generator().manual_seed(12345)
    for _ in range(64):
        pts = torch.randn(n, 3, generator=gen, dtype=torch.float64)
        pts = pts / pts.norm(dim=1, keepdim=True)
        cond = max(
            torch.linalg.cond(o3.spherical_harmonics(l, pts, normalize=False)).item()
            for l in range(1, lmax + 1)
        )
        if cond < best_cond:
            best, best_cond = pts, cond
    return best


class WignerD(torch.nn.Module):
    """Wigner-D blocks D_l(R), l = 0..lmax, for batches of rotation matrices.

    ``forward(R)`` returns a list of (E, 2l+1, 2l+1) tensors with D_1(R) = R in e3nn's basis.
    """

    def __init__(self, lmax: int):
        super().__init__()
        self.lmax = lmax
        pts = _probe_points(lmax)
        self.register_buffer("points", pts, persistent=False)
        for l in range(1, lmax + 1):
            y = o3.spherical_harmonics(l, pts, normalize=False)  # (K, 2l+1)
            self.register_buffer(f"pinv_{l}", torch.linalg.pinv(y.T), persistent=False)

    def forward(self, rot: torch.Tensor) -> list[torch.Tensor]:
        pts = self.points.to(rot.dtype)
        moved = torch.einsum("eij,kj->eki", rot, pts)  # (E, K, 3): R x_k
        out = [torch.ones(rot.shape[0], 1, 1, dtype=rot.dtype, device=rot.device)]
        for l in range(1, self.lmax + 1):
            y = o3.spherical_harmonics(l, moved, normalize=False)  # (E, K, 2l+1)
            pinv = getattr(self, f"pinv_{l}").to(rot.dtype)  # (K, 2l+1)
            out.append(torch.einsum("ekm,kn->emn", y, pinv))
        return out
