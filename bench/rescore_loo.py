"""Recompute leave-one-out in evaluation records made before 1eb5ace.

Until then the harness ran leave-one-out on a fresh session that had never decoded the
model's answer y, so it scored the encoding of y's text (SmolLM2: "2022" without the
leading space token the model generates, log p -14.2 where the generated ids score -2.7),
while every other method, and every check the records judge methods by, scored y's own
ids. This script reruns leave-one-out as the harness now does (the full context decoded
first) for every record of a run directory, evaluates the removal and keep coalitions its
new top documents need where the record lacks them (on a session that decoded the full
context first, as the harness's base session), and rewrites the records in place. The
record's ``methods.loo.rescored`` says so; everything else in the record is unchanged.

    .venv/bin/python bench/rescore_loo.py --out docs/results/nq10-gemma-layered128
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from worker.evaluation.config import EvalConfig  # noqa: E402
from worker.evaluation.data import Example, load_examples  # noqa: E402
from worker.evaluation.method_runs import cheap_runs, open_session  # noqa: E402
from worker.evaluation.paths import shared_data_dir  # noqa: E402
from worker.evaluation.runner import check_coalitions, coalition_outcomes  # noqa: E402

MARK = "1eb5ace: leave-one-out rerun on y's own ids (the full context decoded first)"


def rescore(engine: Any, example: Example, record: dict[str, Any], config: EvalConfig) -> None:
    """Leave-one-out of ``record`` recomputed in place, with the checks it needs."""
    answer, n = record["full_answer"], record["n_documents"]
    runs, _ = cheap_runs(engine, example, replace(config, methods=("loo",)), answer)
    loo = runs["loo"]
    checks = check_coalitions(n, {"loo": loo}, record["tie_priority"], config.ks)
    missing = {k: m for k, m in checks.items() if k not in record["coalitions"]}
    if missing:
        full = "1" * n
        base = open_session(engine, example, config)
        wanted = {full: np.ones(n, dtype=bool)} | missing
        outcomes = coalition_outcomes(base, example, answer, wanted)
        record["coalitions"] |= {k: v for k, v in outcomes.items() if k != full}
    record["methods"]["loo"] = loo.record() | {"rescored": MARK}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="an eval run directory")
    parser.add_argument("--data", type=Path, default=None, help="default: run.json's data")
    args = parser.parse_args(argv)
    run = json.loads((args.out / "run.json").read_text())
    fields = {k: run[k] for k in ("model", "budget", "estimator", "masking", "max_new_tokens")}
    config = EvalConfig(**fields, seed=run["seed"], ks=tuple(run["ks"]), extra=run["extra"])
    data = args.data or shared_data_dir() / "nq" / run["extra"]["data"]
    examples = {e.id: e for e in load_examples(data)}
    from worker.engine.base import EngineOptions
    from worker.engine.loading.registry import load_engine

    torch.set_num_threads(1)
    options = EngineOptions(prompt_style=run["extra"].get("prompt_style", "plain"))
    engine = load_engine(config.model, options=options)
    path = args.out / "results.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines() if line]
    for i, record in enumerate(records):
        if record["methods"].get("loo", {}).get("rescored") or "loo" not in record["methods"]:
            continue
        old = record["methods"]["loo"]["scores"]
        rescore(engine, examples[record["id"]], record, config)
        new = record["methods"]["loo"]["scores"]
        print(f"{record['id']}: top {int(np.argmax(old))} -> {int(np.argmax(new))}", flush=True)
        records[i] = record
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
