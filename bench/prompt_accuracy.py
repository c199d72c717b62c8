"""What the prompt does to the full-context answer: NQ accuracy, echoes and answer length.

The answer game is only as good as the answers it scores: a model that writes a sentence,
or copies the question, produces a different string under almost every coalition, and the
game fragments. This script answers the first ``--questions`` NQ-open questions (10
documents, the dev file under ``../shared/data``) with the full context under each prompt
style (``worker.engine.prompts``: ``plain``, the earlier records' prompt, and ``short``,
the default) and prints, per model and style, with bootstrap 95% intervals:

- accuracy: a gold answer occurs in the normalised answer (NQ-open's metric);
- exact match: the normalised answer *is* a gold answer (a sentence does not count);
- echo: the answer repeats the question (``metrics.is_echo``); abstention; mean words;
- with ``--loo K`` on the first K questions: the share of the 10 leave-one-out coalitions
  whose answer equals the full-context answer after normalisation (how often the answer
  game sees the model's own answer again, which is what its scores are made of).

Then the paired difference short - plain on the same questions, with an exact sign test.

    .venv/bin/python bench/prompt_accuracy.py --models smollm2-135m,gemma-3-270m \
        --questions 100 --loo 30 --threads 1 --out docs/results/prompts.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.rows import append_rows  # noqa: E402
from worker.engine.loading.registry import load_engine  # noqa: E402
from worker.evaluation import metrics  # noqa: E402
from worker.evaluation.data import Example, load_examples  # noqa: E402
from worker.evaluation.paired import bootstrap_mean, paired_difference, sign_test  # noqa: E402
from worker.evaluation.paths import nq_file  # noqa: E402
from worker.shapley.segment import document_units  # noqa: E402

STYLES = ("plain", "short")
MEASURES = ("correct", "exact", "echo", "abstain", "words", "loo_same")


def answer_one(engine: Any, example: Example, loo: bool) -> dict[str, Any]:
    """The full-context answer and its measures; with ``loo`` also the leave-one-out
    coalitions' answers."""
    docs = list(example.documents)
    start = time.perf_counter()
    session = engine.open_session(example.question, docs, max_new_tokens=16)
    units = document_units(docs)
    masks = np.ones((1 + len(docs) * loo, len(docs)), dtype=bool)
    for i in range(len(docs) * loo):
        masks[1 + i, i] = False
    answers = session.answers(units, masks)
    answer = answers[0]
    norm = metrics.normalize_answer(answer)
    same = [metrics.normalize_answer(a) == norm for a in answers[1:]]
    return {
        "id": example.id,
        "answer": answer,
        "correct": float(metrics.answer_correct(answer, example.answers)),
        "exact": float(metrics.exact_match(answer, example.answers)),
        "echo": float(metrics.is_echo(answer, example.question)),
        "abstain": float(metrics.is_abstention(answer)),
        "words": float(len(answer.split())),
        "loo_same": float(np.mean(same)) if same else None,
        "seconds": time.perf_counter() - start,
    }


def cell(values: list[float | None], digits: int = 2) -> str:
    kept = [v for v in values if v is not None]
    ci = bootstrap_mean(kept)
    if ci.mean is None:
        return "-"
    if ci.low is None:
        return f"{ci.mean:.{digits}f}"
    return f"{ci.mean:.{digits}f} [{ci.low:.{digits}f}, {ci.high:.{digits}f}]"


def table(rows: list[dict[str, Any]]) -> list[str]:
    """Markdown: one line per model and style, then the paired differences."""
    out = [
        "| model | prompt | N | accuracy | exact match | echo | abstain | words "
        "| LOO same answer (N) | s/question |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    models = list(dict.fromkeys(r["model"] for r in rows))
    by: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        by.setdefault((r["model"], r["style"]), []).append(r)
    for model in models:
        for style in STYLES:
            got = by.get((model, style), [])
            if not got:
                continue
            loo = [r["loo_same"] for r in got if r["loo_same"] is not None]
            out.append(
                f"| {model} | {style} | {len(got)} | {cell([r['correct'] for r in got])} "
                f"| {cell([r['exact'] for r in got])} | {cell([r['echo'] for r in got])} "
                f"| {cell([r['abstain'] for r in got])} | {cell([r['words'] for r in got], 1)} "
                f"| {cell(list(loo))} ({len(loo)}) "
                f"| {np.mean([r['seconds'] for r in got]):.1f} |"
            )
    out += [
        "",
        "| model | short - plain | N pairs | difference [95% CI] | short higher / lower / same "
        "| sign test p |",
        "|---|---|---|---|---|---|",
    ]
    for model in models:
        plain = {r["id"]: r for r in by.get((model, "plain"), [])}
        short = {r["id"]: r for r in by.get((model, "short"), [])}
        ids = [i for i in short if i in plain]
        for measure in ("correct", "exact", "echo", "words", "loo_same"):
            a = [short[i][measure] for i in ids]
            b = [plain[i][measure] for i in ids]
            diff = paired_difference(a, b)
            if diff.mean is None:
                continue
            test = sign_test(a, b)
            p = "-" if test.p_value is None else f"{test.p_value:.3g}"
            ci = "" if diff.low is None else f" [{diff.low:+.2f}, {diff.high:+.2f}]"
            out.append(
                f"| {model} | {measure} | {diff.n} | {diff.mean:+.2f}{ci} "
                f"| {test.wins} / {test.losses} / {test.ties} | {p} |"
            )
    return out


def load_rows(path: Path | None) -> list[dict[str, Any]]:
    if path is None or not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="smollm2-135m,gemma-3-270m")
    parser.add_argument("--styles", default=",".join(STYLES))
    parser.add_argument("--questions", type=int, default=100)
    parser.add_argument("--loo", type=int, default=0, help="leave-one-out on the first K")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, help="JSONL of every answer; a rerun resumes")
    parser.add_argument("--summarize-only", action="store_true")
    args = parser.parse_args(argv)
    rows = load_rows(args.out)
    if not args.summarize_only:
        torch.set_num_threads(args.threads)
        examples = load_examples(nq_file(10), limit=args.questions)
        done = {(r["model"], r["style"], r["id"]) for r in rows}
        for name in args.models.split(","):
            base = load_engine(name)
            for style in args.styles.split(","):
                engine = base.tuned(replace(base.options, prompt_style=style))
                for k, example in enumerate(examples):
                    if (name, style, example.id) in done:
                        continue
                    row = {
                        "model": name,
                        "style": style,
                        **answer_one(engine, example, k < args.loo),
                    }
                    rows.append(row)
                    append_rows(args.out, [row])
    print("\n".join(table(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
