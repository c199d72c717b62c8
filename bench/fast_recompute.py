"""Fast mode with part of the kept context recomputed: agreement with exact against seconds.

Fast mode reuses the full-context cache for every kept token, so tokens after a removed
document keep keys and values computed with the removed text in view; its answers agree
with the exact engine's on about 0.4 of 8-document coalitions
(``docs/results/exact-vs-loo-8docs``). ``EngineOptions.fast_recompute`` recomputes the
last share of those tokens with the question tail (``causal.planning.hybrid_split``): share
0 is plain fast mode, 1 is exact up to the documents' numbering. For the questions of an
``exact_vs_loo.py`` output (8 documents, every coalition's exact answer and log p(y)
recorded), this runs the exact engine and each share on the same random coalitions, in one
process, one after the other, and prints per share: answer agreement with the recorded
exact answers (QA-normalised), the Spearman correlation of log p(y) with the exact values,
the share of the exact engine's computed tokens, and the exact engine's seconds over this
mode's on the same coalitions. Share ``far`` is plain fast mode as it was before its
positions were closed up: every kept slot and the question tail at their full-context
positions.

``--numbers kept`` changes the game for every mode, exact included: a kept document keeps
its full-context number (``Document [4]`` stays ``[4]`` when ``[2]`` is removed), which
is what fast mode's reused cache already holds. The reference is then this run's exact
engine on that game, not the recorded answers; share 1 must agree on every coalition.

    .venv/bin/python bench/fast_recompute.py --records docs/results/exact-vs-loo-8docs \\
        --model gemma-3-270m --questions 6 --coalitions 48 --shares far,0,0.25,0.5,1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.rows import append_rows  # noqa: E402
from worker.engine import prompt_layout  # noqa: E402
from worker.engine.causal import planning  # noqa: E402
from worker.engine.loading.registry import load_engine  # noqa: E402
from worker.evaluation.data import load_examples  # noqa: E402
from worker.evaluation.faithfulness import mask_key, question_seed  # noqa: E402
from worker.evaluation.paired import bootstrap_mean  # noqa: E402
from worker.evaluation.paths import nq_file  # noqa: E402
from worker.shapley import segment  # noqa: E402
from worker.shapley.game import normalize_answer  # noqa: E402


def recorded_questions(records: Path, model: str, count: int) -> tuple[list[dict], dict]:
    """The first ``count`` exact tables of ``model`` in an ``exact_vs_loo.py`` output, and
    the NQ examples (by id) they were cut from."""
    rows = [json.loads(line) for line in (records / "rows.jsonl").open()]
    rows = [r for r in rows if r["model"] == model and "values" in r][:count]
    return rows, {e.id: e for e in load_examples(nq_file(10))}


def coalitions(n: int, count: int, seed: int) -> np.ndarray:
    """``count`` distinct coalitions other than the full one, the same for every mode."""
    rng = np.random.default_rng(seed)
    picked = rng.choice(2**n - 1, size=min(count, 2**n - 1), replace=False)
    return np.array([[(int(v) >> (n - 1 - i)) & 1 for i in range(n)] for v in picked], bool)


FAR = -1.0  # the share standing for "far": plain fast mode as it was before 2026-12-04


def far_plans(self, units, masks):
    """Fast mode's plans as they were: every kept slot where the full context has it (gaps
    left open) and the question tail at its full-context position."""
    rows = planning.check_masks(units, masks)
    self.compute_full()
    game, tail = planning.game_of(units), self.layout.tail
    plans = []
    for row in rows:
        kept = self.layout.kept_slots(units, row)
        keep = np.flatnonzero(kept).astype(np.int64)
        key = ("fast", kept.tobytes())
        plans.append(planning.CoalitionPlan(key, self.full, keep, tail, len(kept), 0, game, row))
    return plans


@contextmanager
def far_tail(share: float):
    """Plans as before the positions were closed up, for the ``far`` row only."""
    closed = planning.FastPlanner.plans
    if share == FAR:
        planning.FastPlanner.plans = far_plans
    try:
        yield
    finally:
        planning.FastPlanner.plans = closed


renumbered_ids = prompt_layout.PromptLayout.ids  # the product's game


def kept_numbers_ids(self, units, mask):
    """A coalition's prompt with every kept document under its full-context number."""
    if self.masking != "remove":
        return renumbered_ids(self, units, mask)
    kept = segment.render(self.docs, units, mask)
    return self._join([self._block(i + 1, d) for i, d in kept])


@contextmanager
def numbering(kept: bool):
    """The game whose kept documents keep their numbers, while ``kept`` is set."""
    if kept:
        prompt_layout.PromptLayout.ids = kept_numbers_ids
    try:
        yield
    finally:
        prompt_layout.PromptLayout.ids = renumbered_ids


def run_mode(engine: Any, example: Any, row: dict[str, Any], masks: np.ndarray, fast: bool):
    documents = list(example.documents[: row["n"]])
    units = segment.document_units(documents)
    session = engine.open_session(example.question, documents, fast=fast)
    session.answers(units, np.ones((1, row["n"]), bool))  # the full context, as jobs start
    before = session.stats.tokens_computed
    started = time.perf_counter()
    texts = session.answers(units, masks)
    logps = session.log_probs(units, masks, row["answer"])
    seconds = time.perf_counter() - started
    return texts, logps, seconds, session.stats.tokens_computed - before


def one_question(engine: Any, example: Any, row: dict[str, Any], args) -> list[dict[str, Any]]:
    masks = coalitions(row["n"], args.coalitions, question_seed(row["id"]))
    keys = [mask_key(m) for m in masks]
    truth = np.array([row["values"][k] for k in keys])
    answers = [normalize_answer(row["answers"][k]) for k in keys]
    exact_texts, exact_logps, exact_seconds, exact_tokens = run_mode(
        engine, example, row, masks, False
    )
    if args.numbers == "kept":  # the recorded answers are the renumbered game's
        truth, answers = np.asarray(exact_logps), [normalize_answer(t) for t in exact_texts]
    out = []
    for share in args.shares:
        tuned = engine.tuned(replace(engine.options, fast_recompute=max(share, 0.0)))
        with far_tail(share):
            texts, logps, seconds, tokens = run_mode(tuned, example, row, masks, True)
        agree = np.mean([normalize_answer(t) == a for t, a in zip(texts, answers, strict=True)])
        out.append({
            "model": row["model"], "id": row["id"], "share": share, "numbers": args.numbers,
            "agreement": float(agree),
            "spearman": float(spearmanr(logps, truth).statistic),
            "tokens": tokens / exact_tokens,
            "speedup": exact_seconds / seconds,
            "seconds": seconds, "exact_seconds": exact_seconds,
        })  # fmt: skip
    return out


def summarise(results: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| model | share | N | agreement | Spearman log p | tokens vs exact | x exact (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for model in sorted({r["model"] for r in results}):
        for share in sorted({r["share"] for r in results}):
            cell = [r for r in results if r["model"] == model and r["share"] == share]
            agree = bootstrap_mean([r["agreement"] for r in cell])
            rho = bootstrap_mean([r["spearman"] for r in cell])
            tokens = np.mean([r["tokens"] for r in cell])
            speed = sum(r["exact_seconds"] for r in cell) / sum(r["seconds"] for r in cell)
            name = "far" if share == FAR else f"{share:g}"
            lines.append(
                f"| {model} | {name} | {len(cell)} | {_ci(agree)} | {_ci(rho)} "
                f"| {tokens:.2f} | {speed:.1f} |"
            )
    return lines


def _ci(ci: Any) -> str:
    if ci.low is None:
        return f"{ci.mean:.2f}"
    return f"{ci.mean:.2f} [{ci.low:.2f}, {ci.high:.2f}]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=Path, default=Path("docs/results/exact-vs-loo-8docs"))
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--questions", type=int, default=6)
    parser.add_argument("--coalitions", type=int, default=48)
    parser.add_argument("--shares", default="far,0,0.25,0.5,1")
    parser.add_argument("--numbers", choices=["renumbered", "kept"], default="renumbered")
    parser.add_argument("--out", type=Path, help="append per-question rows (JSON lines) here")
    args = parser.parse_args(argv)
    args.shares = [FAR if s == "far" else float(s) for s in args.shares.split(",")]
    torch.set_num_threads(1)
    rows, examples = recorded_questions(args.records, args.model, args.questions)
    engine = load_engine(args.model)
    engine = engine.tuned(replace(engine.options, fast_bf16="off"))  # the cache alone
    results = []
    for row in rows:
        with numbering(args.numbers == "kept"):
            got = one_question(engine, examples[row["id"]], row, args)
        results += got
        for r in got:
            print(json.dumps(r), file=sys.stderr)
        append_rows(args.out, got)
    print("\n".join(summarise(results)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
