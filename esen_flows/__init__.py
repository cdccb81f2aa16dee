"""esen-flows: high-throughput materials screening with machine-learned interatomic potentials.

Layers (lowest first): ``model`` (eSEN), ``potentials``, ``dynamics``, ``training``,
``schemas``, ``makers``, ``analysis``, ``stores`` and ``cli``; README.md describes them.
"""

__version__ = "0.1.0"
