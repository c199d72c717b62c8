"""The explanation pipeline end to end over the rule-based fake model."""

from __future__ import annotations

import numpy as np
import pytest

from service.contract.results import ExplainResult
from service.contract.schemas import ExplainRequest
from tests.fakes import FakeEngine, FakeOracle, make_fake_engine, make_raising_engine
from worker.explain import JobCancelled, run_explanation
from worker.shapley.errors import ShapleyInputError
from worker.shapley.game import normalize_answer
from worker.shapley.segment import document_units
from worker.shapley.units import Document

DOCUMENTS: list[object] = [
    "Paris is the capital of France. It has the Eiffel Tower. Many tourists visit.",
    "Berlin is the capital of Germany. It is also the largest city of Germany.",
    "Bananas are yellow. They grow in warm places.",
    {"title": "Rome", "text": "Rome is the capital of Italy. It is old."},
]


def request(**kwargs: object) -> ExplainRequest:
    body: dict[str, object] = {
        "question": "What is the capital of France?",
        "documents": DOCUMENTS,
        "levels": ["document", "sentence", "word"],
        "budget": 96,
        "refine": {"rule": "top_k", "k": 1},
    }
    body.update(kwargs)
    return ExplainRequest.model_validate(body)


def session_for(req: ExplainRequest, engine: FakeEngine | None = None) -> FakeOracle:
    docs = [Document(d.text, d.title) for d in req.document_objects()]
    return (engine or make_fake_engine()).open_session(req.question, docs, masking=req.masking)


def run(req: ExplainRequest, **kwargs: object) -> tuple[ExplainResult, FakeOracle]:
    session = session_for(req)
    return run_explanation(req, session, model="fake", **kwargs), session  # type: ignore[arg-type]


def totals(session: FakeOracle, req: ExplainRequest) -> dict[str, float]:
    """v_y(N) - v_y(empty) per normalised answer, straight from the fake model."""
    units = document_units(session.documents)
    full = normalize_answer(session.answer_for(session.context(units, np.ones(4, dtype=bool))))
    empty = normalize_answer(session.answer_for(session.context(units, np.zeros(4, dtype=bool))))
    out = {full: 1.0}
    out[empty] = out.get(empty, 0.0) - 1.0
    return out


def test_answer_candidates_and_passage_ranking() -> None:
    req = request()
    result, _ = run(req)
    assert result.answer == "Paris."
    assert [c.text for c in result.candidates][:2] == ["Paris.", "Berlin"]
    assert result.candidates[0].score == pytest.approx(1.0)
    assert result.passage_ranking[0] == 0
    assert sorted(result.passage_ranking) == [0, 1, 2, 3]
    assert sum(c.frequency for c in result.candidates) <= 1.0 + 1e-9
    assert [level.level for level in result.levels] == ["document", "sentence", "word"]


@pytest.mark.parametrize("estimator", ["auto", "permutation", "owen", "kernel", "layered"])
@pytest.mark.parametrize("masking", ["remove", "pad"])
def test_every_level_sums_to_the_total_per_answer(estimator: str, masking: str) -> None:
    req = request(estimator=estimator, masking=masking)
    result, session = run(req)
    expected = totals(session, req)
    keys = [normalize_answer(c.text) for c in result.candidates]
    for level in result.levels:
        sums = np.sum([f.score for f in level.features], axis=0)
        for key, total in zip(keys, sums, strict=True):
            assert total == pytest.approx(expected.get(key, 0.0), abs=1e-9), (level.level, key)
        assert level.coalitions <= req.budget


def test_features_carry_exact_offsets() -> None:
    req = request()
    result, _ = run(req)
    docs = req.document_objects()
    for level in result.levels:
        for feature in level.features:
            assert docs[feature.document].text[feature.start : feature.end] == feature.text
            assert len(feature.score) == len(feature.stderr) == len(result.candidates)
    words = [f for f in result.levels[2].features if " " not in f.text]
    assert {"capital", "France."} <= {f.text for f in words}


def test_no_model_input_is_decoded_twice_and_stats_are_filled() -> None:
    result, session = run(request())
    stats = result.stats
    # every distinct input is decoded once and, for the log-probability column, scored once
    assert stats.coalitions == len(set(session.coalitions_seen))
    assert session.stats.forward_passes == len(session.coalitions_seen) == 2 * stats.coalitions
    assert stats.coalitions < sum(level.coalitions for level in result.levels)
    assert stats.model == "fake"
    assert stats.attention_backend == "fake"
    assert stats.speculative_acceptance_rate is None
    assert set(stats.seconds) == {
        *("answer", "document", "sentence", "word", "ranking", "checks", "total")
    }


def test_progress_walks_through_the_stages() -> None:
    events: list[tuple[str, int, int]] = []
    run(request(), progress=lambda stage, done, total: events.append((stage, done, total)))
    stages = [e[0] for e in events]
    assert stages[0] == "answer"
    assert stages[-1] == "checks"
    order = list(dict.fromkeys(stages))
    assert order == ["answer", "document", "sentence", "word", "ranking", "checks"]
    assert all(0 <= done <= total for _, done, total in events)
    assert ("document", 16, 16) in events


def test_cancellation_between_batches() -> None:
    req = request(budget=400)
    session = session_for(req)
    asked = []

    def should_cancel() -> bool:
        asked.append(1)
        return len(asked) > 4

    with pytest.raises(JobCancelled):
        run_explanation(req, session, model="fake", should_cancel=should_cancel, batch_size=4)
    assert session.calls <= 2 * 4  # a batch is decoded, then scored for log p(y)


def test_same_request_same_result() -> None:
    first, _ = run(request(seed=7, estimator="owen"))
    second, _ = run(request(seed=7, estimator="owen"))
    first.stats.seconds = second.stats.seconds = {}
    assert first == second
    assert ExplainResult.model_validate_json(first.model_dump_json()) == first


def test_logprob_value_explains_the_full_context_answer() -> None:
    req = request(value="logprob", levels=["document", "sentence"])
    result, session = run(req)
    assert [c.text for c in result.candidates] == ["Paris."]
    assert result.candidates[0].frequency == 1.0
    units = document_units(session.documents)
    masks = np.array([[True] * 4, [False] * 4])
    full, empty = session.log_probs(units, masks, "Paris.")
    for level in result.levels:
        assert sum(f.score[0] for f in level.features) == pytest.approx(full - empty)


def test_banzhaf_method_is_labelled_and_not_forced_efficient() -> None:
    result, _ = run(request(method="banzhaf", levels=["document"]))
    assert result.levels[0].estimator == "banzhaf-exact"
    scores = [f.score[0] for f in result.levels[0].features]
    assert scores[0] == pytest.approx(1.0)


def test_banzhaf_below_its_regression_is_a_lasso_with_null_stderr_and_a_reason() -> None:
    docs = [*DOCUMENTS, *(f"Filler passage number {i}." for i in range(6))]  # 10 documents
    result, _ = run(request(method="banzhaf", documents=docs, levels=["document"], budget=16))
    level = result.levels[0]
    assert level.estimator == "banzhaf-lasso"
    assert level.coalitions <= 16
    assert all(f.logprob_stderr is None and set(f.stderr) == {None} for f in level.features)
    assert "Lasso" in (level.stderr_note or "")
    # the Paris passage alone moves log p("Paris."): the sparse fit leaves the rest at 0
    scores = [f.logprob for f in level.features]
    assert scores[0] is not None
    assert scores[0] > 1.0
    assert scores[1:] == [0.0] * 9


def test_engine_errors_propagate_unchanged() -> None:
    req = request()
    session = session_for(req, make_raising_engine())
    with pytest.raises(RuntimeError, match="engine exploded"):
        run_explanation(req, session, model="fake")


def test_bad_budget_is_a_typed_error() -> None:
    # the API refuses budget < 2 (422); the core must refuse it on its own too
    below_api_floor = request(budget=2).model_copy(update={"budget": 1})
    with pytest.raises(ShapleyInputError, match="budget"):
        run(below_api_floor)


def test_fake_engine_mirrors_the_engine_api() -> None:
    engine = make_fake_engine()
    docs = [Document("one two three", "T")]
    assert (engine.name, engine.family, engine.device, engine.attention_backend) == (
        "fake",
        "fake",
        "cpu",
        "fake",
    )
    assert engine.count_tokens("a b", docs) == 6
    assert engine.max_context_tokens > 1000
    session = engine.open_session("q", docs, masking="pad", max_new_tokens=4)
    assert session.masking == "pad"
    assert engine.sessions == [session]


def test_seed_derives_from_the_request_unless_given() -> None:
    from worker.explain import request_seed

    docs = [*DOCUMENTS, *(f"Filler passage number {i}." for i in range(4))]
    base = request(documents=docs, levels=["document"], budget=20, adaptive=False)
    assert request_seed(base) == request_seed(base.model_copy())
    other_question = base.model_copy(update={"question": "What is the capital of Italy?"})
    assert request_seed(other_question) != request_seed(base)
    assert request_seed(base.model_copy(update={"budget": 21})) != request_seed(base)
    assert request_seed(base.model_copy(update={"seed": 5})) == 5
    # the coalitions follow: same request, same ones; another question, others
    seen = [run(r)[1].coalitions_seen for r in (base, base, other_question)]
    assert seen[0] == seen[1]
    assert set(seen[0]) != set(seen[2])


def test_both_games_come_from_the_same_coalitions_and_rank_the_passages() -> None:
    """Every feature carries the answer game's scores and log p(y)'s; the log-probability
    scores are efficient too, and the passage ranking follows them for y."""
    req = request(levels=["document", "sentence"])
    result, session = run(req)
    units = document_units(session.documents)
    full, empty = session.log_probs(units, np.array([[True] * 4, [False] * 4]), "Paris.")
    for level in result.levels:
        assert all(f.logprob is not None for f in level.features)
        assert sum(f.logprob for f in level.features) == pytest.approx(full - empty)
    docs = result.levels[0].features
    by_logprob = sorted(range(4), key=lambda d: -docs[d].logprob)
    assert result.passage_ranking[0] == by_logprob[0] == 0
    answer_game = request(levels=["document"], rank_by="answer")
    assert run(answer_game)[0].passage_ranking[0] == 0


def test_passages_are_ranked_for_the_full_context_answer_not_the_top_candidate() -> None:
    """The ranking reads y's column (explain passes the full-context answer's key)."""
    docs = [
        "Berlin is the capital of Germany.",
        "It is also the largest city of Germany.",
        "Bananas are yellow.",
    ]
    req = request(documents=docs, levels=["document"], budget=8, rank_by="answer")
    result, _ = run(req)
    assert normalize_answer(result.answer) == "berlin"
    y = [normalize_answer(c.text) for c in result.candidates].index("berlin")
    scores = {f.document: f.score[y] for f in result.levels[0].features}
    assert scores[2] <= min(scores[0], scores[1])
    assert result.passage_ranking[-1] == 2
    # either passage alone gives Berlin: tied in the answer game, told apart by log p only
    assert scores[0] == pytest.approx(scores[1])
    assert result.tied_passages == []


def test_a_single_sample_gives_null_stderr_with_a_reason() -> None:
    docs = [*DOCUMENTS, *(f"Filler passage number {i}." for i in range(4))]
    result, _ = run(request(documents=docs, levels=["document"], estimator="owen", budget=20))
    level = result.levels[0]
    assert level.estimator == "owen"
    y = [c.text for c in result.candidates].index(result.answer)
    assert all(f.stderr[y] is None and f.logprob_stderr is None for f in level.features)
    assert level.stderr_note is not None
    assert "1 independent sample" in level.stderr_note
    layer_only, _ = run(request(documents=docs, levels=["document"], budget=20))
    level = layer_only.levels[0]  # auto: layered, its first layer (18) and one middle pair
    assert level.estimator == "layered"
    assert all(f.logprob_stderr is None for f in level.features)
    assert "1 independent sample" in (level.stderr_note or "")
    sampled, _ = run(request(documents=docs, levels=["document"], budget=24))
    level = sampled.levels[0]
    assert level.estimator == "layered"
    y = [c.text for c in sampled.candidates].index(sampled.answer)
    # the model's own answer and log p are measured for every document
    assert all(f.stderr[y] is not None and f.logprob_stderr is not None for f in level.features)
    # a filler that changes nothing can show no spread for the rarer answers: null, said so
    nulls = [f.document for f in level.features if None in f.stderr]
    assert (level.stderr_note is None) == (not nulls)
    assert level.stderr_note is None or "no spread" in level.stderr_note


def test_adaptive_stopping_spends_less_when_one_document_decides() -> None:
    """With Owen sampling every coalition is sampled, so stopping saves most; ``auto``
    (layered) stops only within its middle pairs (test_shapley_stopping)."""
    docs = [*DOCUMENTS, *(f"Filler passage number {i}." for i in range(4))]
    owen = {"documents": docs, "levels": ["document"], "budget": 200, "estimator": "owen"}
    fixed, _ = run(request(**owen, adaptive=False))
    early, _ = run(request(**owen))
    assert not fixed.levels[0].stopped_early
    assert fixed.levels[0].coalitions > 180
    assert early.levels[0].stopped_early
    assert early.levels[0].coalitions < fixed.levels[0].coalitions
    assert early.passage_ranking[0] == fixed.passage_ranking[0] == 0


def test_the_layered_estimator_is_named_on_every_level_it_fits() -> None:
    """Levels of n units run the whole first layer from 2n + 2 coalitions, the partial one
    from n + 2 (named so, with its stderrs null and said why), and kernel below that."""
    result, _ = run(request(estimator="layered", budget=20))  # 4 documents, 6 sentences, 11 words
    for level in result.levels:
        units = len(level.features)
        expected = "layered" if 2 * units + 2 <= 20 else "layered-partial"
        expected = expected if units + 2 <= 20 else "kernel"
        assert level.estimator == ("exact" if units == 1 else expected), (level.level, units)
    assert {level.estimator for level in result.levels} >= {"layered", "layered-partial"}
    partial = next(level for level in result.levels if level.estimator == "layered-partial")
    # the model's answer and log p: unknown; answers this level never saw score 0 exactly
    assert all(f.stderr[0] is None and f.logprob_stderr is None for f in partial.features)
    assert partial.stderr_note is not None
    assert "first layer" in partial.stderr_note


def test_every_result_checks_its_ranking_on_the_model() -> None:
    """Removing the top passage (Paris) changes the fake's answer; keeping it alone does not;
    the checks follow the passage ranking and cost nothing when turned off."""
    req = request(levels=["document"])
    result, session = run(req)
    top = result.passage_ranking
    assert [(c.kind, c.documents) for c in result.checks] == [
        *[("remove", top[:k]) for k in (1, 2, 3)],
        *[("keep", top[:k]) for k in (1, 2, 3)],
    ]
    remove1, keep1 = result.checks[0], result.checks[3]
    assert top[0] == 0
    assert remove1.answer_changed
    assert remove1.answer == "Berlin"
    assert remove1.logprob_drop is not None
    assert remove1.logprob_drop > 2.0
    assert keep1.answer == "Paris."
    assert not keep1.answer_changed
    assert result.stats.coalitions == len(set(session.coalitions_seen))
    unchecked, _ = run(request(levels=["document"], checks=False))
    assert unchecked.checks == []
    assert "checks" not in unchecked.stats.seconds
    assert unchecked.levels == result.levels  # the checks never change the scores
    assert unchecked.stats.coalitions <= result.stats.coalitions
