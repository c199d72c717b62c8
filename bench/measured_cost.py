"""Seconds per method as measured by `bench/method_seconds.py`, for the estimator curve.

The curve replays estimators on recorded tables, so it has no seconds of its own. A
coalition's cost depends on its size and on what it shares with the others, so *coalitions
x seconds per coalition* misprices methods whose designs differ (a lone document is a
short prompt). This module turns the measured runs into a cost in units of leave-one-out's
seconds on the same question: per model and method family, a line through the measured
budgets (geometric mean over questions of each run's ratio to leave-one-out), read at the
coalitions a replayed method used. Lines outside the measured budgets are extrapolated;
the curve's summary says which budgets were measured.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FAMILIES = {
    "loo": "loo",
    "ours-layered": "layered-logprob",
    "ours-auto": "layered-logprob",
    "contextcite": "contextcite",
}
"""Replayed method family (log p game) -> measured method family. ``auto`` is ``layered``
wherever the curve's budgets hold 2n + 2 coalitions (all of them at 8 documents)."""


def measured_family(method: str) -> str:
    """``layered-logprob@32`` -> ``layered-logprob``, ``contextcite-16`` -> ``contextcite``."""
    return "contextcite" if method.startswith("contextcite") else method.split("@")[0]


def log_ratios(
    rows: list[dict[str, Any]], field: str = "seconds"
) -> dict[tuple[str, str], list[float]]:
    """(model, method) -> per question, log of its ``field`` over leave-one-out's (the log
    scale averages ratios)."""
    loo = {(r["model"], r["id"]): r[field] for r in rows if r["method"] == "loo"}
    logs: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in rows:
        base = loo.get((r["model"], r["id"]))
        if base and r.get(field):
            logs[r["model"], r["method"]].append(float(np.log(r[field] / base)))
    return dict(logs)


def ratios(rows: list[dict[str, Any]]) -> dict[tuple[str, str], float]:
    """(model, measured method) -> geometric mean over questions of seconds / loo seconds."""
    return {k: float(np.exp(np.mean(v))) for k, v in log_ratios(rows).items()}


@dataclass(frozen=True)
class CostModel:
    """Cost lines (intercept, slope per coalition) in leave-one-out units."""

    lines: dict[tuple[str, str], tuple[float, float]]
    measured: dict[tuple[str, str], list[int]]

    @classmethod
    def load(cls, paths: list[Path]) -> CostModel:
        rows = [
            json.loads(line) for path in paths for line in path.read_text().splitlines() if line
        ]
        coalitions = {(r["model"], r["method"]): r["coalitions"] for r in rows}
        points: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)
        for (model, method), ratio in ratios(rows).items():
            points[model, measured_family(method)].append((coalitions[model, method], ratio))
        lines, measured = {}, {}
        for key, got in points.items():
            x = np.array([c for c, _ in got], dtype=float)
            y = np.array([r for _, r in got])
            slope, intercept = np.polyfit(x, y, 1) if len(got) > 1 else (0.0, float(y[0]))
            lines[key] = (float(intercept), float(slope))
            measured[key] = sorted(int(c) for c in x)
        return cls(lines, measured)

    def cost(self, model: str, method: str, coalitions: float) -> float | None:
        """Seconds in leave-one-out units of a replayed method, None if not measured."""
        family = FAMILIES.get(
            "contextcite" if method.startswith("contextcite") else method.split("@")[0]
        )
        line = self.lines.get((model, family)) if family else None
        if line is None:
            return None
        return line[0] + line[1] * coalitions
