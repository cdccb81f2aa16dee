"""Test-only potentials reachable as ``module:Class`` (the tests put this folder on sys.path)."""

from __future__ import annotations

import os
import time

from ase.calculators.emt import EMT


class LoggingEMT(EMT):
    """EMT that appends the label of every structure it evaluates to ``$ESEN_TEST_EVAL_LOG``
    and sleeps ``$ESEN_TEST_SLEEP`` seconds per evaluation (to make a run last long enough to be
    interrupted)."""

    def calculate(self, atoms=None, properties=None, system_changes=None):
        path = os.environ.get("ESEN_TEST_EVAL_LOG")
        if path and atoms is not None:
            with open(path, "a") as fh:
                fh.write(f"{atoms.info.get('label')}\n")
        delay = float(os.environ.get("ESEN_TEST_SLEEP", "0"))
        if delay:
            time.sleep(delay)
        kwargs = {} if properties is None else {"properties": properties}
        if system_changes is not None:
            kwargs["system_changes"] = system_changes
        super().calculate(atoms, **kwargs)


class FailingEMT(EMT):
    """EMT that raises for any structure labelled 'boom' (a calculator bug, say)."""

    def calculate(self, atoms=None, properties=None, system_changes=None):
        if atoms is not None and atoms.info.get("label") == "boom":
            raise RuntimeError("calculator exploded")
        kwargs = {} if properties is None else {"properties": properties}
        if system_changes is not None:
            kwargs["system_changes"] = system_changes
        super().calculate(atoms, **kwargs)
