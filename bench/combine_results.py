"""Merge the ``results.jsonl`` of several ``textgenshap eval`` runs (e.g. one per MIRACL
language) into one summary: JSON to ``--json``, Markdown to stdout.

    .venv/bin/python bench/combine_results.py eval-out/miracl-*-gemma-b24 --json miracl.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from worker.evaluation.report import summarize, to_markdown  # noqa: E402
from worker.evaluation.store import ResultStore  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="eval output directories")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--title", default="Combined runs")
    args = parser.parse_args(argv)
    records = [r for run in args.runs for r in ResultStore(run / "results.jsonl").records()]
    summary = summarize(records)
    if args.json is not None:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    print(to_markdown(summary, args.title))
    return 0


if __name__ == "__main__":
    sys.exit(main())
