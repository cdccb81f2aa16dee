"""Numpy's BLAS kept to one thread inside the step loops, where torch does the heavy work.

A step loop alternates a model call (torch's OpenMP threads) with small numpy work (FIRE or
Verlet updates, cell algebra, ASE conversions). With OpenBLAS's default of one thread per
core, a small scipy/numpy call can wake OpenBLAS's threads, which then spin waiting for more
work while torch's threads want the same cores. An ASE ``FIRE(FrechetCellFilter(...))`` loop
driven by an eSEN calculator ran 2.8x slower on 2 cores for it (its filter calls scipy's
``expm`` and ``logm`` every step; ``benchmarks/README.md``). esen-flows' own loops make few
such calls (FIRE uses its own batched exponential), and the limit did not change their time
measurably there (A/B within the machine's noise); it is a guard, so that what they do call
(spglib, ASE conversions, phonopy) cannot start the contention. The numpy arrays of a step are
far too small for BLAS threads to pay, so nothing is lost.

``single_threaded_blas`` limits the BLAS libraries numpy and scipy loaded (threadpoolctl) for the
duration of a call or a ``with`` block and restores the previous limits after it, also on an
error; torch's own threads are not touched (fewer torch threads would cost 15-50 % per call,
even on 4-atom cells). ``ESEN_FLOWS_SINGLE_THREADED_BLAS=0`` (exactly ``0``) turns it off.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from typing import Any

from threadpoolctl import threadpool_limits

__all__ = ["single_threaded_blas"]

log = logging.getLogger(__name__)

# The limit is process-wide, so it is held once for all guards that are open at a time (in any
# thread, nested or not): set when the first opens, restored when the last closes.
_lock = threading.Lock()
_open = 0
_limiter: Any = None


class single_threaded_blas(contextlib.ContextDecorator):
    """Numpy's BLAS on one thread inside a ``with`` block or a decorated function.

    The step loops of ``esen_flows.dynamics`` are decorated with it. Use it around an ASE loop
    driven by an eSEN calculator on a CPU as well::

        with single_threaded_blas():
            FIRE(FrechetCellFilter(atoms)).run(fmax=0.05)

    The previous limits come back when the last open guard closes, also on an error; guards
    nest and may be open in several threads. A limit that cannot be set is logged, never
    raised: this is a speed guard, not a condition of the calculation.
    """

    def __enter__(self) -> single_threaded_blas:
        global _open, _limiter
        with _lock:
            _open += 1
            if _open == 1 and os.environ.get("ESEN_FLOWS_SINGLE_THREADED_BLAS", "1") != "0":
                try:
                    _limiter = threadpool_limits(limits=1, user_api="blas")
                except Exception as exc:  # e.g. a BLAS threadpoolctl cannot drive
                    log.warning("numpy's BLAS threads could not be limited: %s", exc)
                    _limiter = None
        return self

    def __exit__(self, *exc: Any) -> None:
        global _open, _limiter
        with _lock:
            _open -= 1
            if _open == 0 and _limiter is not None:
                try:
                    _limiter.restore_original_limits()
                finally:
                    _limiter = None
