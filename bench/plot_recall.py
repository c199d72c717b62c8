"""Plot gold-passage recall@k per ranking method from ``textgenshap eval`` summaries.

    .venv/bin/python bench/plot_recall.py "smollm2-135m=eval-out/nq-smollm2/summary.json" \
        --out docs/results_recall.png

One panel per summary (``label=path``), one line per method over k. Needs matplotlib
(the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ORDER = ("given", "attention", "loo", "banzhaf", "shapley")


def _series(summary: dict[str, Any]) -> dict[str, tuple[list[int], list[float]]]:
    out = {}
    methods = summary["methods"]
    for name in [m for m in ORDER if m in methods] + [m for m in methods if m not in ORDER]:
        points = [
            (int(k), v["mean"]) for k, v in methods[name]["recall"].items() if v["mean"] is not None
        ]
        if points:
            out[name] = ([k for k, _ in points], [v for _, v in points])
    return out


def plot(panels: list[tuple[str, dict[str, Any]]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, (label, summary) in zip(axes[0], panels, strict=True):
        for name, (ks, values) in _series(summary).items():
            ax.plot(ks, values, marker="o", label=name)
            ax.set_xticks(ks)
        n = summary["n"]
        budget = summary.get("config", {}).get("budget")
        ax.set_title(f"{label} (N={n}, budget={budget})")
        ax.set_xlabel("k")
        ax.set_ylabel("gold-passage recall@k")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("summaries", nargs="+", help="label=path/to/summary.json")
    parser.add_argument("--out", type=Path, default=Path("docs/results_recall.png"))
    args = parser.parse_args(argv)
    panels = []
    for item in args.summaries:
        label, _, path = item.partition("=")
        panels.append((label, json.loads(Path(path).read_text())))
    plot(panels, args.out)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
