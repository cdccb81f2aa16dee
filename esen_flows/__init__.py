"""esen-flows: high-throughput materials screening with machine-learned interatomic potentials.

Layers, from the top (a layer imports only those below it; ``make lint`` checks it):
``cli``; ``makers`` and ``training``; ``tasks``; ``analysis``; ``stores``; ``dynamics``;
``potentials``; ``model``; ``schemas``, ``io``, ``packing`` and ``candidates``.
``docs/architecture.md`` describes each and where every concept lives.
"""

__version__ = "0.1.0"
