"""JSON-lines records of the bench scripts: read what a run wrote, append as it goes, so an
interrupted run resumes where it stopped."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def read_rows(path: Path | None) -> list[dict[str, Any]]:
    """Every record of ``path`` (none if it is None or does not exist yet)."""
    if path is None or not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def append_rows(path: Path | None, rows: Iterable[dict[str, Any]]) -> None:
    """Append ``rows`` to ``path`` (creating its directory); nothing if it is None."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in rows)
