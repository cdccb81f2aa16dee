"""``python -m esen_flows.cli``: the ``esen-flows`` command."""

import sys

from esen_flows.cli.commands import main

sys.exit(main())
