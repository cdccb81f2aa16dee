"""The ``esen-flows`` command line: screen, submit, hull, report, export, train, evaluate and
convert.

Exit codes: 0 success; 1 the work could not be done (no readable structure, a job crashed);
2 bad arguments (missing file or store, bad values); 3 (``screen``) the screen finished but some
relaxations did not converge (the summary counts them; they are not stable nor candidates).
Errors print one line on stderr.
"""

from esen_flows.cli.commands import build_parser, main
from esen_flows.cli.common import EXIT_FAILED, EXIT_UNCONVERGED, EXIT_USAGE, CLIError

__all__ = ["EXIT_FAILED", "EXIT_UNCONVERGED", "EXIT_USAGE", "CLIError", "build_parser", "main"]
