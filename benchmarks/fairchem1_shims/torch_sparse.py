"""Import-time stand-in for torch_sparse: fairchem 1.10 imports it in models its eSEN never
uses. Benchmarks only."""


class SparseTensor:
    pass
