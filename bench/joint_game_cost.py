"""What scoring log p(y | S) on the answer game's own coalitions adds to a job.

The answer game decodes each coalition's greedy answer; the joint game then scores the
full-context answer ``y`` teacher-forced on the same coalitions, whose prompts the decode
left in the session's prefix store. Per model and question: seconds to decode the
coalitions, seconds to score ``y`` on them afterwards, and the ratio (the extra cost).

    .venv/bin/python bench/joint_game_cost.py --models smollm2-135m,gemma-3-270m \
        --questions 3 --coalitions 24 --threads 1
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from worker.engine.loading.registry import load_engine  # noqa: E402
from worker.evaluation.data import load_examples  # noqa: E402
from worker.evaluation.paths import nq_file  # noqa: E402
from worker.shapley.kernel import KernelSampler  # noqa: E402
from worker.shapley.segment import document_units  # noqa: E402


def measure(engine: object, question: str, docs: list, count: int, seed: int) -> tuple:
    """(decode seconds, score seconds, coalitions) for one question's kernel coalitions."""
    session = engine.open_session(question, docs, max_new_tokens=16)  # type: ignore[attr-defined]
    units = document_units(docs)
    full = np.ones((1, len(units)), dtype=bool)
    answer = session.answers(units, full)[0]
    pairs = KernelSampler().draw(np.random.default_rng(seed), len(units), count // 2)
    masks = pairs.reshape(-1, len(units))
    start = time.perf_counter()
    session.answers(units, masks)
    decode = time.perf_counter() - start
    start = time.perf_counter()
    session.log_probs(units, masks, answer)
    score = time.perf_counter() - start
    return decode, score, len(masks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="smollm2-135m,gemma-3-270m")
    parser.add_argument("--questions", type=int, default=3)
    parser.add_argument("--coalitions", type=int, default=24)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    examples = load_examples(nq_file(10), limit=args.questions)
    print("| model | N questions | coalitions | decode s | score y s | extra cost |")
    print("|---|---|---|---|---|---|")
    for name in args.models.split(","):
        engine = load_engine(name)
        rows = [
            measure(engine, e.question, list(e.documents), args.coalitions, seed)
            for seed, e in enumerate(examples)
        ]
        decode = np.array([r[0] for r in rows])
        score = np.array([r[1] for r in rows])
        ratios = score / decode
        spread = f"{ratios.min():.2f}-{ratios.max():.2f}"
        print(
            f"| {name} | {len(rows)} | {rows[0][2]} | {decode.mean():.1f} | {score.mean():.1f} "
            f"| {score.sum() / decode.sum():.2f}x (per question {spread}) |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
