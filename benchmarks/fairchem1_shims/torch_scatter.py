"""Stand-in for torch_scatter (no wheel for torch 2.13): fairchem 1.10's eSEN path needs only
``scatter``, written here with ``torch.Tensor.scatter_reduce``. Benchmarks only."""

import torch


def scatter(src, index, dim=0, out=None, dim_size=None, reduce="sum"):
    if dim < 0:
        dim = src.dim() + dim
    size = list(src.shape)
    size[dim] = int(index.max()) + 1 if dim_size is None else dim_size
    idx = index.view([-1 if i == dim else 1 for i in range(src.dim())]).expand_as(src)
    red = {"sum": "sum", "add": "sum", "mean": "mean", "max": "amax", "min": "amin"}[reduce]
    base = torch.zeros(size, dtype=src.dtype, device=src.device)
    return base.scatter_reduce(dim, idx, src, reduce=red, include_self=False)


def segment_coo(src, index, out=None, dim_size=None, reduce="sum"):
    return scatter(src, index, 0, out, dim_size, reduce)
