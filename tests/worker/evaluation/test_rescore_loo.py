"""bench/rescore_loo.py: leave-one-out recomputed in a stored record, with its checks."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from bench.rescore_loo import MARK, rescore  # noqa: E402
from tests.worker.evaluation.eval_fakes import RuleEngine  # noqa: E402
from tests.worker.evaluation.test_eval_runner import FILLER, _example  # noqa: E402
from worker.evaluation.config import EvalConfig  # noqa: E402
from worker.evaluation.report import question_metrics  # noqa: E402
from worker.evaluation.runner import evaluate  # noqa: E402


def test_a_record_s_leave_one_out_is_recomputed_with_the_checks_it_needs() -> None:
    texts = [*FILLER[:3], "The zebra has black and white stripes.", FILLER[3]]
    example = _example(texts, {3})
    engine = RuleEngine([("zebra", "Zebra.")])
    config = EvalConfig(model="fake", budget=32, methods=("given", "loo"))
    record = evaluate(engine, example, config)
    right = list(record["methods"]["loo"]["scores"])
    record["methods"]["loo"]["scores"] = [-s for s in right]  # a wrong ranking, stored
    kept = {"11111", *record["heldout"]}
    for key in [k for k in record["coalitions"] if k not in kept]:
        del record["coalitions"][key]  # and none of the checks it needs
    rescore(engine, example, record, config)
    assert record["methods"]["loo"]["scores"] == right
    assert record["methods"]["loo"]["rescored"] == MARK
    metrics = question_metrics(record, "loo")
    assert metrics["recall@1"] == 1.0
    assert metrics["flip@1"] is True
