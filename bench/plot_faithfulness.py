"""Plot the faithfulness summaries of ``textgenshap eval``: per model, each method's mean
with its bootstrap 95% interval for recall@1 (random ties), the top-1 removal flip rate,
the drop in log p(y) when the top 2 are removed, and the LDS against log p(y), over every
question.

    .venv/bin/python bench/plot_faithfulness.py \\
        "smollm2-135m=docs/results/nq10-smollm2-faith/summary.json" \\
        "gemma-3-270m=docs/results/nq10-gemma-faith/summary.json" \\
        --out docs/results_faithfulness.png

Needs matplotlib (the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

METRICS = (
    ("recall@1", "gold recall@1"),
    ("flip@1", "answer flips, top-1 removed"),
    ("drop@2", "log p(y) drop, top-2 removed"),
    ("lds_logp", "LDS vs log p(y)"),
)


def _points(stratum: dict[str, Any], metric: str) -> list[tuple[str, float, float, float]]:
    out = []
    for method, stats in stratum["methods"].items():
        cell = stats.get(metric)
        if cell and cell["mean"] is not None:
            low = cell["low"] if cell["low"] is not None else cell["mean"]
            high = cell["high"] if cell["high"] is not None else cell["mean"]
            out.append((method, cell["mean"], low, high))
    return out


def main(argv: list[str] | None = None) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="label=path/to/summary.json")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    runs = [
        (r.split("=", 1)[0], json.loads(Path(r.split("=", 1)[1]).read_text())) for r in args.runs
    ]
    fig, axes = plt.subplots(
        len(runs), len(METRICS), figsize=(4 * len(METRICS), 3.2 * len(runs)), squeeze=False
    )
    for row, (label, summary) in enumerate(runs):
        stratum = summary["strata"]["all"]
        for col, (metric, title) in enumerate(METRICS):
            ax = axes[row][col]
            points = _points(stratum, metric)
            ys = range(len(points))
            means = [p[1] for p in points]
            errors = [[p[1] - p[2] for p in points], [p[3] - p[1] for p in points]]
            ax.errorbar(means, list(ys), xerr=errors, fmt="o", capsize=3)
            ax.set_yticks(list(ys), [p[0] for p in points], fontsize=8)
            ax.invert_yaxis()
            ax.set_title(f"{label}: {title} (N={stratum['n']})", fontsize=9)
            ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
