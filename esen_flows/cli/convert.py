"""``esen-flows convert IN OUT``: any checkpoint esen-flows reads (fairchem 1.x or 2.x eSEN, or
its own) written as esen-flows' plain-data checkpoint, with the source's provenance."""

from __future__ import annotations

import argparse
import json

from esen_flows.cli.common import CLIError


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``convert`` subcommand."""
    convert = sub.add_parser(
        "convert",
        help="write a fairchem eSEN checkpoint as an esen-flows checkpoint",
        description="Read a fairchem eSEN checkpoint (1.x trainer file or 2.x inference file) "
        "as data, never running code from it, and write esen-flows' plain-data checkpoint "
        "with the source's sha256, format, head and fairchem fields.",
    )
    convert.add_argument("source", help="fairchem checkpoint (e.g. esen_30m_oam.pt)")
    convert.add_argument("target", help="esen-flows checkpoint to write (e.g. esen-30m-oam.pt)")
    convert.add_argument("--task", help="fairchem 2.x: dataset of the energy task (e.g. omol)")
    convert.add_argument("--charge", type=int, default=0, help="fairchem 2.x: total charge")
    convert.add_argument("--spin", type=int, help="fairchem 2.x: spin (default: fairchem's)")
    convert.add_argument("--json", action="store_true", help="print the provenance as JSON")


def cmd_convert(args: argparse.Namespace) -> int:
    """Convert, then print one line (or JSON) saying what was written."""
    from esen_flows.model.checkpoints import convert
    from esen_flows.model.esen import CheckpointError

    try:
        model = convert(args.source, args.target, args.task, args.charge, args.spin)
    except CheckpointError as exc:
        raise CLIError(str(exc)) from None
    source = model.metadata.get("source", {})
    cfg = model.config
    if args.json:
        print(json.dumps({"target": args.target, "parameters": model.num_parameters(), **source}))
    else:
        print(
            f"{args.target}: eSEN {cfg.num_layers} layers, lmax {cfg.lmax}, mmax {cfg.mmax}, "
            f"{cfg.channels} channels, cutoff {cfg.cutoff} A, {model.num_parameters():,} "
            f"parameters; from {source.get('format', 'esen-flows')} "
            f"({source.get('weights', 'weights')})"
        )
    return 0
