"""The ``esen-flows`` command line: screen, submit, hull, report, export, train, evaluate and
convert.

Exit codes: 0 success; 1 the work could not be done (no readable structure, a job crashed);
2 bad arguments (missing file or store, bad values); 3 (``screen``) the screen finished but some
relaxations did not converge (the summary counts them; they are not stable nor candidates).
Errors print one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from esen_flows.cli import convert as cli_convert
from esen_flows.cli import screen as cli_screen
from esen_flows.cli.common import (
    EXIT_FAILED,
    EXIT_UNCONVERGED,
    CLIError,
    nonnegative_float,
    positive_int,
)
from esen_flows.cli.output import (
    _json_value,
    _print_conductivity,
    _print_phonons,
    _print_summary,
    _print_table,
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``esen-flows``."""
    parser = argparse.ArgumentParser(
        prog="esen-flows",
        description="High-throughput screening of crystals with machine-learned potentials.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    screen = sub.add_parser("screen", help="relax structures and place them on the convex hull")
    cli_screen.add_screen_options(screen)
    screen.add_argument("--store", "-s", required=True, help="folder of the results store")
    cli_screen.add_submit_parser(sub)

    hull = sub.add_parser("hull", help="print the hull table of a store")
    hull.add_argument("--store", "-s", required=True, help="folder of the results store")
    hull.add_argument("--chemsys", help="restrict to a chemical system, e.g. Cu-Au")
    hull.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    hull.add_argument("--potential", help="only results of this potential (its name)")
    hull.add_argument(
        "--compatibility",
        choices=["mp2020"],
        help="correct energies with MaterialsProject2020Compatibility (as the screen did)",
    )
    hull.add_argument(
        "--include-unconverged",
        action="store_true",
        help="also list relaxations that hit the step limit (converged=False, never stable)",
    )

    report = sub.add_parser(
        "report", help="write a self-contained interactive HTML report (summary, hulls, tables)"
    )
    report.add_argument("--store", "-s", required=True, help="folder of the results store")
    report.add_argument("--out", "-o", default="report.html", help="output HTML file")
    report.add_argument("--chemsys", help="restrict to a chemical system, e.g. Cu-Au")
    report.add_argument(
        "--reference",
        help="folder of a store of the same structures screened with a reference potential "
        "(formation-energy parity plot)",
    )
    report.add_argument(
        "--kappa-reference", help="potential whose conductivities are the reference (SRME)"
    )

    export = sub.add_parser(
        "export",
        help="write phonopy_params.yaml of phonon results and phono3py_params.yaml, fc2.hdf5 "
        "and fc3.hdf5 of conductivity results, to continue in phonopy or phono3py",
    )
    export.add_argument("--store", "-s", required=True, help="folder of the results store")
    export.add_argument("--label", action="append", help="structure label (repeatable; all)")
    export.add_argument("--out", "-o", default="export", help="folder to write into")
    export.add_argument("--potential", help="only results of this potential (its name)")

    train = sub.add_parser(
        "train", help="make an EMT dataset and train eSEN on it (the esen-emt-tiny recipe)"
    )
    train.add_argument("--out", "-o", required=True, help="folder for data, stages and models")
    train.add_argument("--seed", type=int, default=0, help="seed of data and training")
    train.add_argument("--name", default="esen-emt-tiny", help="file name of the model")
    train.add_argument("--direct-epochs", type=positive_int, help="epochs of stage 1")
    train.add_argument("--epochs", type=positive_int, help="epochs of stage 2 (conservative)")
    train.add_argument(
        "--minutes", type=nonnegative_float, help="wall-clock budget of each stage, minutes"
    )
    train.add_argument("--random-cells", type=int, help="random decorated cells in the data")
    train.add_argument("--restart", action="store_true", help="ignore saved training states")

    evaluate = sub.add_parser("evaluate", help="errors of a model on labelled extxyz frames")
    evaluate.add_argument("model", help="potential name or checkpoint (esen-emt-tiny, PATH.pt)")
    evaluate.add_argument("data", help="extxyz file with energies, forces and stresses")
    evaluate.add_argument("--json", action="store_true", help="print JSON")
    cli_convert.add_parser(sub)
    return parser


def _check_store_path(path: str) -> None:
    if Path(path).exists() and not Path(path).is_dir():
        raise CLIError(f"--store {path}: is a file, not a store folder")


def _open_store(path: str):
    from esen_flows.stores import RESULTS, default_store

    _check_store_path(path)
    if not Path(path).is_dir():
        raise CLIError(f"store {path!r} does not exist (run 'esen-flows screen' first)")
    results = Path(path) / "esen_flows" / f"{RESULTS}.collection"
    if not results.is_file():
        raise CLIError(
            f"store {path}: no results collection ({results}): nothing was screened into it, "
            "or the file was deleted",
            EXIT_FAILED,
        )
    return default_store(path)


def cmd_screen(args: argparse.Namespace) -> int:
    """Relax the structures of ``args.files`` and compute their hull stability."""
    from jobflow import run_locally
    from rich.console import Console

    from esen_flows.io import get_label
    from esen_flows.stores import default_store

    console = Console(stderr=True)  # progress and warnings
    results = Console()  # the results: stdout
    _check_store_path(args.store)
    flow, items, potential_name = cli_screen.build_screen(args, console)
    store = default_store(args.store)
    console.print(
        f"screening {len(items)} structures with {args.potential!r}: {len(flow.jobs)} jobs, "
        f"store {args.store}"
    )
    try:
        responses = run_locally(
            flow, store=store, create_folders=False, log=False, raise_immediately=True
        )
    except Exception as exc:
        raise CLIError(f"screen failed: {type(exc).__name__}: {exc}", EXIT_FAILED) from exc
    hull_job = next(j for j in flow.jobs if j.name == "hull")
    if not responses or hull_job.uuid not in responses:
        raise CLIError("screen failed: the hull job did not finish", EXIT_FAILED)
    labels = {get_label(i) for i in items}
    unconverged = _print_summary(
        store, results, labels=labels, potential=potential_name, compatibility=args.compatibility
    )
    if args.phonons:
        _print_phonons(store, results, labels=labels, potential=potential_name)
    if args.conductivity:
        _print_conductivity(store, results, labels=labels, potential=potential_name)
    if unconverged:
        console.print(
            f"[yellow]{unconverged} relaxation(s) did not converge within --max-steps "
            f"{args.max_steps}[/]: not stable nor candidates (exit status {EXIT_UNCONVERGED})"
        )
        return EXIT_UNCONVERGED
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Write each phonon result's ``phonopy_params.yaml`` and each conductivity result's
    ``phono3py_params.yaml``, ``fc2.hdf5`` and ``fc3.hdf5`` under ``args.out/<label>/``."""
    from esen_flows.analysis.query import latest_per_label, query
    from esen_flows.dynamics.conductivity import write_phono3py_files
    from esen_flows.dynamics.phonons import phonopy_yaml
    from esen_flows.stores import load_phono3py, load_phonopy

    store = _open_store(args.store)
    filters = {"status": "ok"}
    if args.potential:
        filters["potential"] = args.potential
    phonons = latest_per_label(query(store, "phonon", **filters))
    kappas = latest_per_label(query(store, "conductivity", **filters))
    if args.label:
        missing = sorted(set(args.label) - {d.label for d in [*phonons, *kappas]})
        if missing:
            raise CLIError(
                f"no successful phonon or conductivity result for {', '.join(missing)}",
                EXIT_FAILED,
            )
        phonons = [d for d in phonons if d.label in set(args.label)]
        kappas = [d for d in kappas if d.label in set(args.label)]
    if not phonons and not kappas:
        raise CLIError("no successful phonon or conductivity result in the store", EXIT_FAILED)
    for doc in phonons:
        folder = Path(args.out) / doc.label
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "phonopy_params.yaml"
        path.write_text(phonopy_yaml(load_phonopy(doc, store)), encoding="utf-8")
        print(path)
    for doc in kappas:
        for path in write_phono3py_files(load_phono3py(doc, store), Path(args.out) / doc.label):
            print(path)
    return 0


def cmd_hull(args: argparse.Namespace) -> int:
    """Print the hull table (or JSON) of a store."""
    from rich.console import Console

    from esen_flows.analysis.query import hull_table

    table = hull_table(
        _open_store(args.store),
        chemsys=args.chemsys,
        potential=args.potential,
        include_unconverged=args.include_unconverged,
        compatibility=args.compatibility,
    )
    if args.json:
        rows = [
            {k: _json_value(v) for k, v in row.items()} for row in table.to_dict(orient="records")
        ]
        print(json.dumps(rows, indent=1))
        return 0
    _print_table(table, Console(), title=f"hull table {args.chemsys or ''}".strip())
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Write the HTML report of a store."""
    from esen_flows.analysis.report import write_report

    if Path(args.out).is_dir():
        raise CLIError(f"--out {args.out}: is a folder; give a file, e.g. {args.out}/report.html")
    reference = _open_store(args.reference) if args.reference else None
    out = write_report(
        _open_store(args.store),
        args.out,
        chemsys=args.chemsys,
        reference=reference,
        kappa_reference=args.kappa_reference,
    )
    print(f"report written to {out}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Generate the reference data and train both stages (resumable)."""
    from dataclasses import replace

    from esen_flows.training.recipe import Recipe, run_recipe

    recipe = Recipe(name=args.name)
    data = replace(recipe.dataset, seed=args.seed)
    if args.random_cells is not None:
        data = replace(data, random_cells=args.random_cells)
    stages = []
    for settings, epochs in (
        (recipe.direct, args.direct_epochs),
        (recipe.conservative, args.epochs),
    ):
        changes: dict = {"seed": args.seed}
        if epochs is not None:
            changes.update(epochs=epochs, patience=min(settings.patience, epochs))
        if args.minutes is not None:
            changes["max_minutes"] = args.minutes
        stages.append(replace(settings, **changes))
    recipe = replace(recipe, dataset=data, direct=stages[0], conservative=stages[1])
    try:
        metrics = run_recipe(recipe, args.out, resume=not args.restart)
    except ValueError as exc:
        raise CLIError(str(exc)) from exc
    print(json.dumps({k: metrics[k] for k in ("conservative", "direct")}, indent=1))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Mean absolute errors of a model on labelled frames."""
    from esen_flows.model import ESEN
    from esen_flows.model.checkpoints import load_model
    from esen_flows.model.esen import CheckpointError
    from esen_flows.potentials import PotentialError, get_potential
    from esen_flows.training.data import read_frames
    from esen_flows.training.train import Frame, evaluate_frames

    path = Path(args.model)
    try:
        if path.suffix == ".pt" or path.is_file():
            model = load_model(path)
        else:  # a shipped model's name: the registry knows where it lives
            model = getattr(get_potential(args.model, device="cpu"), "model", None)
        frames = [Frame.from_atoms(a) for a in read_frames(args.data)]
    except (CheckpointError, PotentialError, ValueError) as exc:
        raise CLIError(str(exc)) from exc
    if not isinstance(model, ESEN):
        raise CLIError(f"{args.model!r} is not an eSEN model")
    stage = "direct" if model.force_head is not None else "conservative"
    metrics = evaluate_frames(model, frames, stage)
    if args.json:
        print(json.dumps(metrics))
    else:
        print(
            f"{len(frames)} frames: energy {metrics['energy_mae']:.2f} meV/atom, forces "
            f"{metrics['force_mae']:.1f} meV/A"
            + (f", stress {metrics['stress_mae']:.3f} GPa" if "stress_mae" in metrics else "")
        )
    return 0


COMMANDS = {
    "screen": cmd_screen,
    "hull": cmd_hull,
    "report": cmd_report,
    "export": cmd_export,
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "convert": cli_convert.cmd_convert,
    "submit": cli_screen.cmd_submit,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``esen-flows`` console script."""
    args = build_parser().parse_args(argv)
    logging.getLogger("jobflow").setLevel(logging.WARNING)
    from esen_flows.stores import StoreError

    try:
        return COMMANDS[args.command](args)
    except CLIError as exc:
        print(f"esen-flows {args.command}: error: {exc}", file=sys.stderr)
        return exc.code
    except StoreError as exc:
        print(f"esen-flows {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
