"""The examples in the docstrings of the public entry points run and print what they say."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "esen_flows.packing",
    "esen_flows.potentials.registry",
    "esen_flows.stores.embedded",
    "esen_flows.tasks.settings",
    "esen_flows.makers.screening",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    result = doctest.testmod(module, optionflags=flags, verbose=False)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0
