"""``--blas-threads`` of the benchmarks that drive ASE loops (relaxations, phonons, kappa).

With OpenBLAS's default of one thread per core, every small scipy/numpy call in an ASE step
(``FrechetCellFilter``'s matrix exponential and logarithm, say) wakes OpenBLAS's threads, and
they spin for a while afterwards while torch's threads want the same cores. On 2 cores that
made an ASE ``FIRE(FrechetCellFilter(atoms))`` loop driven by esen-emt-tiny 2.8x slower
(119-127 against 41-45 ms per step): the peers were slowed by the machine, not by their design.
So every way of a benchmark runs with the same limit, 1 by default, set once for the process;
``--blas-threads 0`` leaves the libraries' defaults (the numbers before 2026-12-02).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from threadpoolctl import threadpool_info, threadpool_limits

_held: list[Any] = []


def add_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--blas-threads",
        type=int,
        default=1,
        help="numpy's BLAS threads for every way (default 1; 0: the libraries' defaults)",
    )


def apply(threads: int) -> int | None:
    """Limit BLAS to ``threads`` for the rest of the process (0: no change); the count now.

    Any value but 1 also switches off esen-flows' own one-thread guard in its step loops
    (``ESEN_FLOWS_SINGLE_THREADED_BLAS=0``), so that every way runs with the same setting.
    """
    if threads != 1:
        os.environ["ESEN_FLOWS_SINGLE_THREADED_BLAS"] = "0"
    if threads > 0:
        _held.append(threadpool_limits(limits=threads, user_api="blas"))
    counts = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    return max(counts) if counts else None
