class SparseTensor:  # import-time stand-in; fairchem 1.x eSEN never uses it
    pass
