"""What every maker shares: one job decorator, the running job's store, and the deprecated flat
settings of the makers from before their settings were held once.

A maker is a thin dataclass: a name, a potential, a settings object (``esen_flows.tasks
.settings``), where to run it. ``make()`` checks its inputs and returns the job of its ``run``
method, decorated with ``esen_job``, so ``Job.maker`` is the maker (jobflow's idiom) and
``update_maker_kwargs`` reaches the settings.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

from jobflow import CURRENT_JOB, JobConfig, job

from esen_flows.potentials import Potential, get_potential
from esen_flows.stores import data_store
from esen_flows.tasks.settings import RELAX_FIELDS, with_flat

#: Jobs see the store they run with (``CURRENT_JOB.store``) to skip and persist results.
STORE_CONFIG = JobConfig(expose_store=True)

F = TypeVar("F", bound=Callable[..., Any])
M = TypeVar("M", bound=type)


def esen_job(method: F | None = None, *, data: bool = False) -> Any:
    """jobflow's ``job`` with the running store exposed to the job; ``data=True`` sends the
    output to the job store's ``data`` store (GridFS in production: a batch of documents never
    nears MongoDB's 16 MB)."""
    kwargs: dict[str, Any] = {"config": STORE_CONFIG}
    if data:
        kwargs["data"] = True
    if method is None:
        return lambda f: job(f, **kwargs)
    return job(method, **kwargs)


def current_store() -> Any:
    """The ``JobStore`` of the running job (set by ``run_locally`` and FireWorks), or None."""
    return getattr(CURRENT_JOB, "store", None)


def potential_and_store(maker: Any, data: bool = False) -> tuple[Potential, Any]:
    """What a maker's job runs with: its potential (built once per process) and the running
    job's store. ``data``: the job's output (a batch of documents) goes to the store's data
    store (GridFS in production, so no outputs document nears MongoDB's 16 MB): make sure the
    store has one."""
    potential = get_potential(maker.potential, device=maker.device, dtype=maker.dtype)
    store = current_store()
    if data and store is not None:
        data_store(store)
    return potential, store


def flat_value(settings: Any, name: str) -> Any:
    """A settings field as the makers used to have it flat (``fmax`` of the relaxation)."""
    if name == "relax" and not hasattr(settings, "relax_cell"):
        return settings.relax is not None
    if name in RELAX_FIELDS and hasattr(settings, "relax") and not hasattr(settings, "task"):
        return None if settings.relax is None else getattr(settings.relax, name)
    return getattr(settings, name)


def accepts_flat_settings(*names: str) -> Callable[[M], M]:
    """Class decorator: the maker still takes (and reads back) the settings it used to declare
    as its own fields, for one release, with a ``DeprecationWarning``; they go into its
    ``settings``. Its signature stays that of the dataclass, so MSON serialises it as before."""

    def decorate(cls: M) -> M:
        init = cls.__init__
        signature = inspect.signature(init)

        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            flat = {k: kwargs.pop(k) for k in names if k in kwargs}
            init(self, *args, **kwargs)
            if flat:
                kind = type(self.settings).__name__
                warnings.warn(
                    f"{cls.__name__}({', '.join(f'{k}=' for k in flat)}...) is deprecated and "
                    f"will be removed: pass settings={kind}(...)",
                    DeprecationWarning,
                    stacklevel=2,
                )
                self.settings = with_flat(self.settings, flat)

        def __getattr__(self: Any, name: str) -> Any:
            if name in names and "settings" in self.__dict__:
                warnings.warn(
                    f"{cls.__name__}.{name} is deprecated and will be removed: read "
                    f"settings.{name}",
                    DeprecationWarning,
                    stacklevel=2,
                )
                return flat_value(self.__dict__["settings"], name)
            raise AttributeError(f"{cls.__name__!r} object has no attribute {name!r}")

        __init__.__signature__ = signature  # type: ignore[attr-defined]
        __init__.__doc__ = init.__doc__
        cls.__init__ = __init__  # type: ignore[misc]
        cls.__getattr__ = __getattr__  # type: ignore[attr-defined]
        return cls

    return decorate
