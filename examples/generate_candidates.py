"""Write the deterministic Cu-Au-Ag-Pd candidate crystals (``esen_flows.candidates``)::

    python examples/generate_candidates.py --out candidates.extxyz

The same as ``python -m esen_flows.candidates``; from Python,
``esen_flows.candidates.generate_candidates(max_candidates=200)``.
"""

import sys

from esen_flows.candidates import main

if __name__ == "__main__":
    sys.exit(main())
