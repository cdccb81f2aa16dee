"""Result documents read back from a store: by kind and field, the newest per label, within a
chemical system."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jobflow import JobStore

from esen_flows.schemas import ResultDocument
from esen_flows.stores import find_documents, open_store


def query(store: JobStore | str | Path, kind: str, **filters: Any) -> list[ResultDocument]:
    """Result documents of ``kind`` ("relaxation", "stability", ...), newest first.

    ``filters`` match document fields exactly (``label="AuCu-fcc-001"``, ``status="ok"``) or
    take MongoDB operators (``e_above_hull={"$lt": 0.05}``).
    """
    return find_documents(open_store(store), kind, **filters)


def latest_per_label(docs: list[ResultDocument]) -> list[ResultDocument]:
    """Keep the newest document of each label (``docs`` newest first)."""
    seen: set[str] = set()
    out = []
    for d in docs:
        if d.label not in seen:
            seen.add(d.label)
            out.append(d)
    return out


def _in_chemsys(doc_chemsys: str | None, chemsys: str) -> bool:
    if not doc_chemsys:
        return False
    return set(doc_chemsys.split("-")) <= set(chemsys.split("-"))


def normalise_chemsys(chemsys: str) -> str:
    """``"Cu, Au"`` or ``"Au-Cu"`` -> ``"Au-Cu"`` (sorted symbols joined by '-')."""
    parts = [p.strip() for p in chemsys.replace(",", "-").replace(" ", "-").split("-")]
    return "-".join(sorted(p for p in parts if p))


def latest_documents(
    store: JobStore | str | Path,
    kind: str,
    potential: str | None = None,
    chemsys: str | None = None,
) -> list[ResultDocument]:
    """The newest document of ``kind`` for each label, optionally of one potential and within
    a chemical system (``"Cu-Au"``)."""
    if chemsys is not None:
        chemsys = normalise_chemsys(chemsys)
    filters = {} if potential is None else {"potential": potential}
    docs = latest_per_label(query(store, kind, **filters))
    return [d for d in docs if chemsys is None or _in_chemsys(d.chemsys, chemsys)]
