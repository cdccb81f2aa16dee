"""What ``esen-flows`` prints: the screen summary and tables (stdout), via rich."""

from __future__ import annotations

import math


def _print_conductivity(store, console, labels: set[str], potential: str) -> None:
    """Lattice thermal conductivity of this screen's structures at 300 K."""
    from esen_flows.analysis.query import conductivity_table

    cols = ["label", "formula", "dynamically_stable", "kappa", "kappa_coherence", "mesh"]
    _print_screened(
        conductivity_table(store, potential=potential),
        console,
        labels,
        "lattice thermal conductivity at 300 K (W/(m K))",
        cols,
        "no structure went on to the conductivity",
    )


def _print_phonons(store, console, labels: set[str], potential: str) -> None:
    """Dynamic stability of this screen's candidates."""
    from esen_flows.analysis.query import phonon_table

    cols = ["label", "formula", "dynamically_stable", "min_frequency", "max_frequency"]
    _print_screened(
        phonon_table(store, potential=potential),
        console,
        labels,
        "phonons (THz)",
        cols,
        "no candidate within --e-hull-max went on to phonons",
    )


def _print_screened(table, console, labels: set[str], title: str, cols, empty: str) -> None:
    """The rows of ``table`` for this screen's ``labels`` (the store may hold others)."""
    table = table[table.label.isin(labels)]
    if table.empty:
        console.print(empty)
    else:
        _print_table(table, console, title, cols=cols)


def _print_summary(
    store, console, labels: set[str], potential: str, compatibility: str | None = None
) -> int:
    """Summary of this screen only (the store may hold other screens and potentials); returns
    how many relaxations did not converge."""
    from rich.table import Table

    from esen_flows.analysis.query import hull_table

    table = hull_table(
        store, potential=potential, include_unconverged=True, compatibility=compatibility
    )
    table = table[table.label.isin(labels)]
    done = table[table.status == "ok"]
    unconverged = done[done.converged == False]  # noqa: E712 - a column of bools and None
    ok = done[done.converged != False]  # noqa: E712
    failed = table[table.status != "ok"]
    summary = Table(title="screen summary")
    for col in ("structures", "ok", "unconverged", "failed", "stable", "candidates"):
        summary.add_column(col, justify="right")
    summary.add_row(
        str(len(table)),
        str(len(ok)),
        str(len(unconverged)),
        str(len(failed)),
        str(int(ok.stable.sum())),
        str(int(ok.candidate.sum())),
    )
    console.print(summary)
    _print_table(ok.head(20), console, title="lowest energies above hull (eV/atom)")
    for _, row in unconverged.iterrows():
        console.print(f"[yellow]unconverged[/] {row.reason}")
    for _, row in failed.iterrows():
        console.print(f"[red]failed[/] {row.label}: {row.reason}")
    return len(unconverged)


def _print_table(frame, console, title: str, cols: list[str] | None = None) -> None:
    from rich.table import Table

    from esen_flows.analysis.query import HULL_COLUMNS

    table = Table(title=title)
    # the hull table's columns but the long or rarely set ones (its JSON rows keep them all)
    cols = cols or [
        c for c in HULL_COLUMNS if c not in ("chemsys", "duplicate_of", "status", "reason")
    ]
    for col in cols:
        table.add_column(col, justify="left" if col in ("label", "formula") else "right")
    for _, row in frame.iterrows():
        cells = []
        for col in cols:
            value = row[col]
            cells.append(f"{value:.4f}" if isinstance(value, float) else str(value))
        table.add_row(*cells)
    console.print(table)


def _json_value(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):
        value = value.item()
    return value
