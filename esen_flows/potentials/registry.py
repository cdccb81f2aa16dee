"""The one interface the rest of esen-flows sees: a ``Potential``.

``get_potential(name)`` turns a name into a ``Potential``:

- ``"emt"``: ASE's effective-medium theory (Al, Cu, Ag, Au, Ni, Pd, Pt; H, C, N, O roughly),
- ``"module:Class"``: any ASE ``Calculator`` class (instantiated without arguments) or any class
  that already implements the ``Potential`` protocol,
- ``"esen:PATH"`` (esen-flows or fairchem checkpoints) and the shipped ``"esen-emt-tiny"``.

Potentials are cached per process, so a job that asks for the same name again reuses the loaded
model (one model load per process). A cached potential may be used from several threads at once
(thread pools, notebooks, FireWorks ``rapidfire`` in threads): an ASE-calculator potential
gives each thread its own calculator, an eSEN potential evaluates one batch at a time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from esen_flows.potentials.ase import make_emt, make_from_class
from esen_flows.potentials.base import (
    Potential,
    UnknownPotentialError,
    normalise_dtype,
)
from esen_flows.potentials.zoo import SHIPPED

Builder = Callable[..., Potential]


def _esen_path(path: str, device: Any = None, dtype: Any = None) -> Potential:
    from esen_flows.potentials.esen import build_from_path  # torch: only for an eSEN name

    return build_from_path(path, device=device, dtype=dtype)


def _esen_shipped(name: str) -> Builder:
    def build(device: Any = None, dtype: Any = None) -> Potential:
        from esen_flows.potentials.esen import build_shipped  # torch: only for an eSEN name

        return build_shipped(name, device=device, dtype=dtype)

    return build


#: Every potential name esen-flows knows, and what builds it (``register_potential`` adds).
BUILDERS: dict[str, Builder] = {"emt": make_emt} | {n: _esen_shipped(n) for n in SHIPPED}
#: Families named ``"prefix:ARGUMENT"`` (``"esen:PATH"``); any other ``"module:Class"`` is an
#: importable ASE calculator or ``Potential`` class.
PREFIX_BUILDERS: dict[str, Callable[..., Potential]] = {"esen": _esen_path}
_CACHE: dict[tuple[str, str | None, str | None], Potential] = {}
_LOCK = threading.RLock()  # a potential built inside may ask get_potential for another


def register_potential(name: str, builder: Callable[..., Potential], prefix: bool = False) -> None:
    """Add a builder for a potential name (or a ``prefix:`` family such as ``esen:``)."""
    with _LOCK:
        (PREFIX_BUILDERS if prefix else BUILDERS)[name] = builder


def get_potential(name: str | Potential, device: str | None = None, dtype: Any = None) -> Potential:
    """Build (or fetch from the per-process cache) the potential called ``name``.

    Parameters
    ----------
    name
        ``"emt"``, ``"module:Class"``, ``"esen:PATH"``, ``"esen-emt-tiny"``; a ``Potential``
        instance is returned unchanged.
    device
        ``"cpu"``, ``"cuda"``, ...; ignored by ASE calculators.
    dtype
        ``"float32"``/``"float64"`` or a torch dtype; ignored by ASE calculators.

    Raises
    ------
    UnknownPotentialError
        When the name matches nothing esen-flows can build.

    Examples
    --------
    >>> from ase.build import bulk
    >>> emt = get_potential("emt")
    >>> evaluation = emt.evaluate([bulk("Cu", "fcc", a=3.6)])
    >>> round(float(evaluation.energies[0]), 4)  # eV
    -0.0067
    >>> get_potential("emt") is emt  # cached per process
    True
    """
    if not isinstance(name, str):
        if isinstance(name, Potential):
            return name
        raise TypeError(f"potential must be a name or a Potential, got {type(name).__name__}")
    dtype_s = normalise_dtype(dtype)
    key = (name, device, dtype_s)
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
        kwargs = {"device": device, "dtype": dtype_s}
        prefix = name.split(":", 1)[0] if ":" in name else None
        if name in BUILDERS:
            potential = BUILDERS[name](**kwargs)
        elif prefix in PREFIX_BUILDERS:
            potential = PREFIX_BUILDERS[prefix](name.split(":", 1)[1], **kwargs)
        elif name.startswith("esen"):
            shipped = sorted(n for n in BUILDERS if n.startswith("esen"))
            raise UnknownPotentialError(
                f"unknown eSEN potential {name!r}: use 'esen:PATH' with a checkpoint file"
                + (f" or a shipped model ({', '.join(shipped)})" if shipped else "")
            )
        elif prefix is not None:
            potential = make_from_class(name)
        else:
            known = sorted(BUILDERS) + [f"{p}:PATH" for p in sorted(PREFIX_BUILDERS)]
            raise UnknownPotentialError(
                f"unknown potential {name!r}: expected one of {', '.join(known)} or "
                "'module:Class' naming an ASE Calculator class"
            )
        _CACHE[key] = potential
        return potential


def check_potential(name: str, device: str | None = None, dtype: Any = None) -> Potential:
    """Build the potential ``name`` here to check that it exists and loads, on ``device``
    when this machine has it, else on the CPU (a flow built on a login node without GPUs
    runs on GPU workers later)."""
    if device is not None and str(device).startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            device = None
    return get_potential(name, device=device, dtype=dtype)


def clear_cache() -> None:
    """Forget every cached potential (tests use it to count model loads)."""
    with _LOCK:
        _CACHE.clear()
