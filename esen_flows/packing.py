"""The one packer: consecutive items grouped so that each group's summed costs stay within
limits. Model batches (atoms), evaluation batches (atoms and estimated edges) and the chunks a
phonon or conductivity task writes to the store after (displaced atoms) are all packed here.
"""

from __future__ import annotations

from collections.abc import Sequence


def pack(
    costs: Sequence[Sequence[float]] | Sequence[float],
    limits: Sequence[float | None] | float | None,
) -> list[list[int]]:
    """Consecutive groups of item indices whose summed costs stay within ``limits``.

    Parameters
    ----------
    costs
        Per item, one cost (a number) or several (a tuple: atoms, edges, ...).
    limits
        The largest sum per group of each cost, in the same order; None: no limit on that cost.
        A single number (or None) applies to every cost.

    Returns
    -------
    list of list of int
        Groups in order, each non-empty; an item over a limit on its own is a group of its own.

    Examples
    --------
    >>> pack([3, 3, 3, 5], 6)
    [[0, 1], [2], [3]]
    >>> pack([(2, 10), (2, 10), (2, 10)], (None, 20))
    [[0, 1], [2]]
    """
    rows = [tuple(c) if isinstance(c, Sequence) else (c,) for c in costs]
    if not rows:
        return []
    width = len(rows[0])
    if limits is None or not isinstance(limits, Sequence):
        limits = (limits,) * width
    groups: list[list[int]] = []
    totals = [0.0] * width
    for i, row in enumerate(rows):
        fits = groups and all(
            lim is None or t + c <= lim for t, c, lim in zip(totals, row, limits, strict=True)
        )
        if not fits:
            groups.append([])
            totals = [0.0] * width
        groups[-1].append(i)
        totals = [t + c for t, c in zip(totals, row, strict=True)]
    return groups
