"""One question through the runner with fake engines: values of every ranker."""

import math
from pathlib import Path

import pytest

from tests.fakes import make_fake_engine
from tests.worker.evaluation.eval_fakes import make_gold_engine
from worker.evaluation.data import load_examples
from worker.evaluation.runner import EvalConfig, evaluate

DATA = Path(__file__).parent / "data"
NQ = load_examples(DATA / "nq-10docs-6.jsonl.gz")
MIRACL = load_examples(DATA / "miracl-7langs-14.jsonl.gz")


def test_gold_engine_every_ranker_finds_the_gold_passage() -> None:
    example = NQ[0]  # gold passage at index 9
    record = evaluate(make_gold_engine(), example, EvalConfig(model="fake-gold", budget=32))
    assert record["full_answer"] == "Wilhelm Conrad Röntgen"
    assert record["full_correct"] is True
    assert record["abstained"] is False
    methods = record["methods"]
    assert set(methods) == {"given", "loo", "shapley", "banzhaf"}  # fakes expose no attention
    assert methods["given"]["ranking"] == list(range(10))
    assert methods["given"]["recall"] == {"1": 0.0, "3": 0.0, "5": 0.0}
    for name in ("loo", "shapley", "banzhaf"):
        assert methods[name]["ranking"][0] == 9, name
        assert methods[name]["recall"] == {"1": 1.0, "3": 1.0, "5": 1.0}, name
    # log 0.9 - log 0.1 for the gold passage, minus the fake's length term
    assert methods["loo"]["scores"][9] == pytest.approx(math.log(9), abs=0.2)
    assert methods["loo"]["coalitions"] == 11
    assert methods["loo"]["forward_passes"] == 11
    shap_scores = methods["shapley"]["scores"]
    assert shap_scores[9] == pytest.approx(1.0)
    assert all(s == 0.0 for s in shap_scores[:9])
    explanation = record["explanation"]
    assert explanation["top_candidate"] == "Wilhelm Conrad Röntgen"
    assert explanation["top_correct"] is True
    assert explanation["concentration"] == {"entropy": 0.0, "top1_share": 1.0}
    assert explanation["offsets_ok"] is True


def test_sentence_level_offsets_are_checked() -> None:
    config = EvalConfig(
        model="fake-gold", budget=16, levels=("document", "sentence"), methods=("shapley",)
    )
    record = evaluate(make_gold_engine(), NQ[1], config)
    assert record["explanation"]["offsets_ok"] is True
    assert record["explanation"]["estimators"][0]
    assert len(record["explanation"]["estimators"]) == 2


def test_miracl_record_without_answers_or_labels() -> None:
    example = MIRACL[9]  # Japanese, no relevant passage
    assert example.lang == "ja"
    record = evaluate(make_fake_engine(), example, EvalConfig(model="fake", budget=8))
    assert record["lang"] == "ja"
    assert record["context_relevant"] is False
    assert record["full_answer"] == "unknown"
    assert record["abstained"] is True
    assert record["full_correct"] is None
    assert record["methods"]["shapley"]["recall"]["1"] is None
    assert record["explanation"]["concentration"] is None  # nothing moves the answer


def test_logprob_game_ranks_by_log_probability_of_the_full_answer() -> None:
    config = EvalConfig(model="fake-gold", budget=32, value="logprob", methods=("shapley",))
    record = evaluate(make_gold_engine(), NQ[2], config)
    (gold,) = NQ[2].relevant
    scores = record["methods"]["shapley"]["scores"]
    assert record["methods"]["shapley"]["ranking"][0] == gold
    # the fake's log p moves by log 9 with the gold passage, by a length term otherwise
    assert scores[gold] == pytest.approx(math.log(9), abs=0.2)
    assert all(abs(s) < 0.2 for i, s in enumerate(scores) if i != gold)
