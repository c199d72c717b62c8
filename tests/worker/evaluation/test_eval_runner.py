"""One question through the runner with rule-based engines whose truth is known: which
document the answer depends on, hence what every faithfulness metric must read."""

import math
from pathlib import Path

import numpy as np
import pytest

from tests.fakes import make_fake_engine
from tests.worker.evaluation.eval_fakes import RuleEngine, make_gold_engine
from worker.evaluation import faithfulness
from worker.evaluation.config import EvalConfig
from worker.evaluation.data import Example, load_examples
from worker.evaluation.report import question_metrics, summarize
from worker.evaluation.runner import evaluate
from worker.shapley.units import Document

DATA = Path(__file__).parent / "data"
NQ = load_examples(DATA / "nq-10docs-6.jsonl.gz")
MIRACL = load_examples(DATA / "miracl-7langs-14.jsonl.gz")
FAKE_METHODS = ("given", "loo", "shapley-answer", "shapley-logprob", "banzhaf-answer")


def _example(texts: list[str], relevant: set[int], qid: str = "q") -> Example:
    return Example(
        id=qid,
        question="Which animal has stripes?",
        documents=tuple(Document(t, f"T{i}") for i, t in enumerate(texts)),
        answers=("zebra",),
        relevant=frozenset(relevant),
    )


FILLER = ["Lions live in prides.", "Owls hunt at night.", "Cows give milk.", "Ants dig."]


def test_answer_from_one_document_reads_as_fully_faithful() -> None:
    texts = [*FILLER[:3], "The zebra has black and white stripes.", FILLER[3]]
    engine = RuleEngine([("zebra", "Zebra.")])
    config = EvalConfig(model="fake", budget=32, methods=FAKE_METHODS)
    record = evaluate(engine, _example(texts, {3}), config)
    assert record["full_answer"] == "Zebra."
    assert record["full_correct"] is True
    assert record["gold_only_correct"] is True
    for name in ("loo", "shapley-answer", "shapley-logprob"):
        m = question_metrics(record, name)
        assert m["recall@1"] == 1.0, name
        assert m["flip@1"] is True, name
        assert m["keep@1"] is True, name
        assert m["drop@1"] == pytest.approx(math.log(9), abs=0.05), name
    # the log-probability game is additive here (a doc-3 term plus a length term), so its
    # exact Shapley values predict every held-out coalition's log p(y) in order
    assert record["methods"]["shapley-logprob"]["estimator"] == "exact"
    assert question_metrics(record, "shapley-logprob")["lds_logp"] == pytest.approx(1.0, abs=1e-3)
    assert question_metrics(record, "loo")["lds_logp"] == pytest.approx(1.0, abs=1e-3)
    # 2^5 minus the full and the empty coalition and leave-one-out's five (exact methods
    # saw every coalition, so they take none away)
    assert len(record["heldout"]) == 25
    given = question_metrics(record, "given")
    assert given["recall@1"] == 0.0
    assert given["flip@1"] is False


def test_two_sufficient_documents_defeat_leave_one_out_but_not_shapley() -> None:
    texts = [FILLER[0], "A zebra grazes.", FILLER[1], "Stripes: the zebra.", FILLER[2]]
    engine = RuleEngine([("zebra", "Zebra")])
    config = EvalConfig(model="fake", budget=32, methods=FAKE_METHODS)
    record = evaluate(engine, _example(texts, {1, 3}), config)
    loo, shap = question_metrics(record, "loo"), question_metrics(record, "shapley-logprob")
    # removing either document alone leaves the other: leave-one-out sees (almost) nothing
    assert abs(loo["drop@1"]) < 0.05
    assert loo["flip@1"] is False
    assert shap["flip@1"] is False
    # Shapley splits the credit between the two; removing both flips the answer
    top2 = sorted(
        faithfulness.top_documents(
            record["methods"]["shapley-logprob"]["scores"], record["tie_priority"]
        )[:2]
    )
    assert top2 == [1, 3]
    assert shap["flip@2"] is True
    assert shap["drop@2"] == pytest.approx(math.log(9), abs=0.05)
    assert shap["recall@1"] == 0.5
    assert shap["recall@3"] == 1.0


def test_every_method_explains_the_full_context_answer() -> None:
    """The record's scores are those of the candidate equal to y, whatever ranks first."""
    example = NQ[0]  # gold passage at index 9
    config = EvalConfig(model="fake-gold", budget=32, methods=FAKE_METHODS)
    record = evaluate(make_gold_engine(), example, config)
    run = record["methods"]["shapley-answer"]
    assert run["candidates"][run["target"]] == record["full_answer"] == "Wilhelm Conrad Röntgen"
    assert run["scores"] == run["candidate_scores"][run["target"]]
    # paired KernelSHAP on 15 pairs: noisy, but document 9 leads
    assert run["scores"][9] == max(run["scores"])
    assert run["scores"][9] == pytest.approx(1.0, abs=0.3)
    assert record["seed"] == faithfulness.question_seed(example.id)
    assert record["methods"]["loo"]["coalitions"] == 11


def test_heldout_coalitions_were_never_seen_by_an_estimator() -> None:
    engine = make_gold_engine()
    config = EvalConfig(model="fake-gold", budget=32, methods=FAKE_METHODS)
    record = evaluate(engine, NQ[1], config)
    explained = engine.sessions[2:]  # base session, loo's, then one per explained method
    seen = {
        "".join("1" if keep else "0" for *_, keep in coalition)
        for session in explained
        for coalition in session.coalitions_seen
    }
    assert len(record["heldout"]) == 32
    assert not set(record["heldout"]) & seen
    assert all(key in record["coalitions"] for key in record["heldout"])


def test_questions_get_their_own_coalitions() -> None:
    config = EvalConfig(model="fake-gold", budget=32, methods=("shapley-answer",))
    a, b = (evaluate(make_gold_engine(), e, config) for e in NQ[:2])
    assert a["seed"] != b["seed"]
    assert a["heldout"] != b["heldout"]


def test_miracl_record_without_answers_or_labels() -> None:
    example = MIRACL[9]  # Japanese, no relevant passage
    record = evaluate(
        make_fake_engine(), example, EvalConfig(model="fake", budget=8, methods=FAKE_METHODS)
    )
    assert record["lang"] == "ja"
    assert record["context_relevant"] is False
    assert record["full_answer"] == "unknown"
    assert record["full_correct"] is None
    assert record["gold_only_answer"] is None
    assert question_metrics(record, "shapley-answer")["recall@1"] is None
    assert set(record["unavailable"]) == set()
    summary = summarize([record])
    assert summary["strata"]["full_correct"]["n"] == 0


def test_methods_that_cannot_run_say_why() -> None:
    config = EvalConfig(model="fake", budget=8, methods=("given", "attention", "contextcite-32"))
    record = evaluate(make_gold_engine(), NQ[0], config)
    assert set(record["methods"]) == {"given"}
    assert "attention" in record["unavailable"]
    assert "decoder-only" in record["unavailable"]["contextcite-32"]


def test_the_service_default_is_judged_by_its_log_probability_column() -> None:
    """``shapley`` is the default request's passage ranking: the log p(y) column of the
    same job whose answer-game column is ``shapley-answer``."""
    texts = [*FILLER[:3], "The zebra has black and white stripes.", FILLER[3]]
    config = EvalConfig(model="fake", budget=32, methods=("shapley", "shapley-answer"))
    record = evaluate(RuleEngine([("zebra", "Zebra.")]), _example(texts, {3}), config)
    default, answer = record["methods"]["shapley"], record["methods"]["shapley-answer"]
    assert default["scores"] == answer["logprob_scores"]
    assert default["seconds"] == answer["seconds"]
    assert default["scores"][3] == pytest.approx(math.log(9), abs=0.05)
    assert answer["scores"][3] == pytest.approx(1.0)
    assert question_metrics(record, "shapley")["lds_logp"] == pytest.approx(1.0, abs=1e-3)


def test_the_log_probability_column_keeps_its_own_stderr() -> None:
    """The default ranking is the log p column, so its record carries that column's stderr
    beside the answer game's. Two documents each sufficient at 8 documents (sampled, not
    enumerated): the log p game is log 9 times the answer game here, and so are the
    stderrs."""
    texts = [
        *FILLER,
        "The zebra has stripes.",
        "Owls sleep by day.",
        "A zebra is striped.",
        "Cats purr.",
    ]
    config = EvalConfig(model="fake", budget=32, methods=("shapley", "shapley-answer"))
    record = evaluate(RuleEngine([("zebra", "Zebra.")]), _example(texts, {4}), config)
    default = record["methods"]["shapley"]
    assert default["estimator"] == "layered"
    answer_se, logprob_se = np.array(default["stderr"]), np.array(default["logprob_stderr"])
    assert (answer_se > 0.05).all()
    assert logprob_se == pytest.approx(math.log(9) * answer_se, rel=0.02)


def test_harness_seconds_count_a_shared_job_once() -> None:
    from worker.evaluation.report import harness_seconds

    config = EvalConfig(model="fake", budget=16, methods=("shapley", "shapley-answer"))
    record = evaluate(make_gold_engine(), NQ[0], config)
    assert record["harness_seconds"] >= 0
    assert harness_seconds(record) == record["harness_seconds"]
    legacy = {**record, "harness_seconds_once": None}
    legacy["harness_seconds"] = record["harness_seconds"] - record["methods"]["shapley"]["seconds"]
    assert harness_seconds(legacy) == pytest.approx(record["harness_seconds"])


def test_contextcite_on_our_engine_names_the_one_document_the_answer_needs() -> None:
    """The package's estimator over the engine's log p(y): on a game where y needs document 3
    alone (p(y) 0.9 with it, 0.1 without), its weight is near the logit difference log 81,
    every other document's is zero, and its ablations are the
    package's seeds, never held out."""
    more = ["Bees make honey.", "Cats purr.", "Frogs croak."]
    texts = [*FILLER[:3], "The zebra has black and white stripes.", FILLER[3], *more]
    methods = ("contextcite-engine-32", "contextcite-engine-64")
    config = EvalConfig(model="fake", budget=8, heldout=6, methods=methods)
    record = evaluate(RuleEngine([("zebra", "Zebra.")]), _example(texts, {3}), config)
    assert not record["unavailable"]
    small, large = (record["methods"][m] for m in methods)
    for run in (small, large):
        # the fake's length term (0.001 per context word, times 1 / (1 - p) through the
        # logit) takes about 0.2 off log 81 and leaves the others a hundredth or two
        assert 4.0 < run["scores"][3] < math.log(81)
        assert max(abs(s) for i, s in enumerate(run["scores"]) if i != 3) < 0.05
    assert (small["coalitions"], large["coalitions"]) == (33, 65)
    assert (small["forward_passes"], large["forward_passes"]) == (33, 65)
    assert small["seconds"] > 0
    assert large["seconds"] > 0
    draws = [np.random.RandomState(s).choice([False, True], 8, p=[0.5, 0.5]) for s in range(64)]
    seen = {"".join("1" if k else "0" for k in row) for row in draws}
    assert len(record["heldout"]) == 6
    assert not set(record["heldout"]) & seen
    metrics = question_metrics(record, "contextcite-engine-64")
    assert metrics["recall@1"] == 1.0
    assert metrics["flip@1"] is True
    assert metrics["drop@1"] == pytest.approx(math.log(9), abs=0.02)


def test_a_fixed_budget_method_keeps_its_own_budget() -> None:
    """``banzhaf-logprob-32`` is a Banzhaf request on the log p game at 32 coalitions
    whatever the run's budget: on 8 documents (256 coalitions) it fits the regression and
    names the one document the answer needs."""
    more = ["Bees make honey.", "Cats purr.", "Frogs croak."]
    texts = [*FILLER[:3], "The zebra has black and white stripes.", FILLER[3], *more]
    config = EvalConfig(model="fake", budget=128, heldout=6, methods=("banzhaf-logprob-32",))
    record = evaluate(RuleEngine([("zebra", "Zebra.")]), _example(texts, {3}), config)
    run = record["methods"]["banzhaf-logprob-32"]
    assert run["estimator"] == "banzhaf-regression"
    assert run["coalitions"] <= 32
    assert run["scores"][3] == pytest.approx(math.log(9), abs=0.05)
    assert max(abs(s) for i, s in enumerate(run["scores"]) if i != 3) < 0.05
    assert question_metrics(record, "banzhaf-logprob-32")["recall@1"] == 1.0


def test_at_twenty_documents_32_coalitions_fit_the_lasso_and_64_the_regression() -> None:
    texts = [*FILLER[:3], "The zebra has black and white stripes.", *FILLER[3:]]
    texts += [f"Filler sentence number {i}." for i in range(20 - len(texts))]
    methods = ("banzhaf-logprob-32", "banzhaf-logprob-64")
    config = EvalConfig(model="fake", budget=128, heldout=6, methods=methods)
    record = evaluate(RuleEngine([("zebra", "Zebra.")]), _example(texts[:20], {3}), config)
    expected = zip(methods, ("banzhaf-lasso", "banzhaf-regression"), (32, 64), strict=True)
    for name, estimator, budget in expected:
        run = record["methods"][name]
        assert run["estimator"] == estimator
        assert run["coalitions"] <= budget
        assert max(range(20), key=lambda i: run["scores"][i]) == 3
        assert question_metrics(record, name)["recall@1"] == 1.0


def test_the_services_own_checks_stay_out_of_a_methods_cost() -> None:
    """The harness checks every method itself; a Shapley job's coalitions are its level's
    alone (the service's removal and keep checks would add up to 6 of their own)."""
    texts = [*FILLER[:3], "The zebra has black and white stripes.", FILLER[3]]
    config = EvalConfig(model="fake", budget=12, heldout=4, methods=("shapley-logprob",))
    record = evaluate(RuleEngine([("zebra", "Zebra.")]), _example(texts, {3}), config)
    run = record["methods"]["shapley-logprob"]
    assert run["estimator"] == "layered"
    assert run["coalitions"] == 12  # the first layer of 5 documents (2n + 2), nothing more
