"""``esen-flows screen`` and ``esen-flows submit``: the options they share, the screening flow
they build, and ``submit``, which adds that flow to a FireWorks LaunchPad instead of running it.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from esen_flows.cli.common import (
    EXIT_FAILED,
    EXIT_USAGE,
    CLIError,
    nonnegative_float,
    positive_float,
    positive_int,
)


def _error(message: str, code: int | None = None) -> Exception:

    return CLIError(message, EXIT_USAGE if code is None else code)


def add_screen_options(parser: argparse.ArgumentParser) -> None:
    """The options of a screen (files, potential, settings, stages), shared by ``screen`` and
    ``submit``."""

    parser.add_argument("files", nargs="+", help="structure files or folders (CIF, POSCAR, extxyz)")
    parser.add_argument("--potential", "-p", default="emt", help="potential name (default: emt)")
    parser.add_argument(
        "--e-hull-max",
        type=nonnegative_float,
        default=0.05,
        help="candidate threshold above the hull, eV/atom (default: 0.05)",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=100,
        help="structures per relaxation job (default: 100)",
    )
    parser.add_argument(
        "--fmax",
        type=positive_float,
        default=0.05,
        help="force convergence, eV/A, above 0 (default: 0.05)",
    )
    parser.add_argument(
        "--max-steps",
        type=positive_int,
        default=500,
        help="FIRE step limit per structure (default: 500)",
    )
    parser.add_argument(
        "--references",
        help="JSON or JSON.gz list of pymatgen ComputedEntry / ComputedStructureEntry "
        "references (e.g. Materials Project entries); they replace the elemental references",
    )
    parser.add_argument(
        "--compatibility",
        choices=["mp2020"],
        help="correct model energies and references with MaterialsProject2020Compatibility",
    )
    parser.add_argument("--device", default=None, help="torch device for model potentials")
    parser.add_argument(
        "--phonons",
        action="store_true",
        help="phonons (phonopy, float64) for the structures within --e-hull-max of the hull",
    )
    parser.add_argument(
        "--phonon-min-length",
        type=nonnegative_float,
        default=15.0,
        help="smallest supercell width for phonons, A (default: 15)",
    )
    parser.add_argument(
        "--conductivity",
        action="store_true",
        help="lattice thermal conductivity (phono3py, Matbench Discovery's protocol at 300 K) "
        "for the dynamically stable phonon results (or the candidates without --phonons)",
    )
    parser.add_argument(
        "--kappa-mesh",
        type=positive_int,
        default=None,
        help="q-mesh n x n x n of the conductivity (default: 20, Matbench Discovery's)",
    )


def add_submit_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``submit`` subcommand."""
    submit = sub.add_parser(
        "submit",
        help="add a screen to a FireWorks LaunchPad (run it with rlaunch / qlaunch)",
        description="Build the same screen as 'esen-flows screen' and add it to a FireWorks "
        "LaunchPad as one workflow; workers ('rlaunch rapidfire', 'qlaunch') run it and write "
        "into the job store of --jobflow-config (else the workers' own jobflow configuration).",
    )
    add_screen_options(submit)
    submit.add_argument(
        "--launchpad", "-l", required=True, help="FireWorks LaunchPad file (my_launchpad.yaml)"
    )
    submit.add_argument(
        "--jobflow-config",
        help="jobflow.yaml whose JOB_STORE the workflow carries (MongoDB + GridFS + results); "
        "without it each worker uses its own JOBFLOW_CONFIG_FILE",
    )
    submit.add_argument(
        "--dry-run", action="store_true", help="print the fireworks it would add, add nothing"
    )


def _check_device(device: str | None, syntax_only: bool = False) -> None:
    """A bad ``--device`` is a usage error (exit 2), not a traceback inside a job
    (``syntax_only``: any torch device name, whether this machine has it or not)."""
    if device is None:
        return
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _error(f"--device {device!r}: not a torch device ({first})") from exc
    if dev.type not in ("cpu", "cuda"):
        raise _error(f"--device {device!r}: esen-flows runs on 'cpu' or 'cuda'")
    if syntax_only:
        return
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise _error(f"--device {device!r}: CUDA is not available on this machine")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise _error(f"--device {device!r}: only {torch.cuda.device_count()} CUDA device(s)")
    if dev.type not in ("cpu", "cuda"):
        raise _error(f"--device {device!r}: esen-flows runs on 'cpu' or 'cuda'")


def _read_references(path: str | None):
    if path is None:
        return None
    from monty.serialization import loadfn
    from pymatgen.entries.computed_entries import ComputedEntry

    try:
        entries = loadfn(path)
    except Exception as exc:
        raise _error(f"cannot read references from {path}: {exc}") from exc
    if isinstance(entries, dict) and isinstance(entries.get("entries"), list):
        entries = entries["entries"]  # {"entries": [...]}, as some MP downloads are laid out
    if not isinstance(entries, list) or not entries:
        raise _error(f"{path}: expected a JSON list of ComputedEntry objects")
    for i, e in enumerate(entries):
        if not isinstance(e, ComputedEntry):
            raise _error(
                f"{path}: entry {i} is a {type(e).__name__}, not a pymatgen ComputedEntry "
                "(each needs its '@module' and '@class')"
            )
    return entries


def build_screen(
    args: argparse.Namespace, console: Any, submit: bool = False
) -> tuple[Any, list, str]:
    """The screening flow of ``args``: (flow, inputs, the potential's name). Unreadable files
    are reported on ``console`` and fail alone; no readable input, a bad device, an unknown
    potential or bad settings are a ``CLIError``.

    ``submit``: the flow runs elsewhere, later: a model file is named by its absolute path
    (FireWorks runs each firework in a folder of its own) and the device need only be a
    device name (a login node has no GPU; the model is checked on its CPU)."""
    from esen_flows.io import UnreadableInput, load_structures
    from esen_flows.makers import (
        BatchRelaxMaker,
        PhononMaker,
        ScreeningMaker,
        ThermalConductivityMaker,
    )
    from esen_flows.potentials import PotentialError, check_potential
    from esen_flows.tasks import PhononSettings, RelaxSettings

    _check_device(args.device, syntax_only=submit)
    if submit and args.potential.startswith("esen:"):
        path = Path(args.potential.removeprefix("esen:")).expanduser()
        if not path.is_file():
            raise _error(f"--potential {args.potential}: no such checkpoint file")
        args.potential = f"esen:{path.resolve()}"
    try:
        items = load_structures([Path(f) for f in args.files])
    except FileNotFoundError as exc:
        raise _error(str(exc)) from exc
    except ValueError as exc:
        raise _error(str(exc)) from exc
    unreadable = [i for i in items if isinstance(i, UnreadableInput)]
    if not items or len(unreadable) == len(items):
        reason = unreadable[0].reason if unreadable else "no structure files found"
        raise _error(f"no readable structure in the inputs ({reason})", EXIT_FAILED)
    for u in unreadable:
        console.print(f"[yellow]skipping[/] {u.source}: {u.reason}")
    try:
        potential_name = check_potential(args.potential, device=args.device).name
    except PotentialError as exc:
        raise _error(str(exc)) from exc

    try:
        kappa = ThermalConductivityMaker.matbench_discovery(device=args.device)
        if args.kappa_mesh:
            kappa.settings = replace(kappa.settings, mesh=[args.kappa_mesh] * 3)
        maker = ScreeningMaker(
            potential=args.potential,
            e_hull_max=args.e_hull_max,
            batch_size=args.batch_size,
            relax_maker=BatchRelaxMaker(
                settings=RelaxSettings(fmax=args.fmax, max_steps=args.max_steps),
                device=args.device,
            ),
            reference_entries=_read_references(args.references),
            compatibility=args.compatibility,
            phonons=args.phonons,
            phonon_maker=PhononMaker(
                settings=PhononSettings(min_length=args.phonon_min_length), device=args.device
            ),
            conductivity=args.conductivity,
            conductivity_maker=kappa,
        )
        flow = maker.make(items)
    except ValueError as exc:
        raise _error(str(exc)) from exc
    return flow, items, potential_name


def _job_store(path: str | None):
    """The ``JOB_STORE`` of a jobflow configuration file (None: the workers' own)."""
    if path is None:
        return None
    if not Path(path).is_file():
        raise _error(f"--jobflow-config {path}: no such file")
    from jobflow.settings import JobflowSettings

    previous = os.environ.get("JOBFLOW_CONFIG_FILE")
    os.environ["JOBFLOW_CONFIG_FILE"] = str(Path(path).resolve())
    try:
        return JobflowSettings().JOB_STORE
    except Exception as exc:
        raise _error(f"--jobflow-config {path}: {type(exc).__name__}: {exc}") from exc
    finally:
        if previous is None:
            os.environ.pop("JOBFLOW_CONFIG_FILE", None)
        else:
            os.environ["JOBFLOW_CONFIG_FILE"] = previous


def cmd_submit(args: argparse.Namespace) -> int:
    """Add the screen to the LaunchPad; print the workflow's id (or, with ``--dry-run``, its
    fireworks as JSON lines, adding nothing)."""
    from jobflow.managers.fireworks import flow_to_workflow
    from rich.console import Console

    console = Console(stderr=True)
    if not Path(args.launchpad).is_file():
        raise _error(f"--launchpad {args.launchpad}: no such file")
    store = _job_store(args.jobflow_config)
    flow, items, _ = build_screen(args, console, submit=True)
    wf = flow_to_workflow(flow, store=store)
    if args.dry_run:
        for fw in wf.fws:
            children = wf.links.get(fw.fw_id, [])
            print(json.dumps({"fw_id": fw.fw_id, "name": fw.name, "children": children}))
        console.print(f"dry run: {len(wf.fws)} fireworks for {len(items)} structures, none added")
        return 0
    from fireworks import LaunchPad

    try:
        launchpad = LaunchPad.from_file(args.launchpad)
        ids = launchpad.add_wf(wf)
    except Exception as exc:
        raise _error(
            f"--launchpad {args.launchpad}: cannot add the workflow ({type(exc).__name__}: {exc})",
            1,
        ) from exc
    first = min(ids.values())
    console.print(
        f"added workflow {first} ({len(wf.fws)} fireworks, {len(items)} structures) to "
        f"{args.launchpad}; run it with 'rlaunch -l {args.launchpad} rapidfire'"
    )
    print(first)
    return 0
