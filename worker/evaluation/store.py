"""Resumable results: one JSON object per evaluated question, appended and flushed as soon
as the question is done, so an interrupted run loses at most the question in flight."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class ResultStore:
    """An append-only JSONL file of per-question records keyed by ``"id"``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def records(self) -> list[dict[str, Any]]:
        """Every complete record; a torn last line (killed mid-write) is ignored."""
        if not self.path.exists():
            return []
        records = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records

    def done_ids(self) -> set[str]:
        """Ids already evaluated, which a rerun skips."""
        return {str(r["id"]) for r in self.records()}

    def append(self, record: dict[str, Any]) -> None:
        """Write one record on its own line, mending a torn last line first."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        needs_newline = self.path.exists() and not self.path.read_bytes().endswith(b"\n")
        with self.path.open("a", encoding="utf-8") as handle:
            if needs_newline and self.path.stat().st_size > 0:
                handle.write("\n")
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            handle.flush()
