"""``python -m esen_flows.candidates``: write the candidate crystals."""

import sys

from esen_flows.candidates.generate import main

sys.exit(main())
