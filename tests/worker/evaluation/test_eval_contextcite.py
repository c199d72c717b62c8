"""ContextCite's released package inside the harness, on a tiny random causal model: it
attributes exactly the target answer, over the engine's prompts, with the package's own
ablations, and its smaller run is the larger run's first ablations."""

import numpy as np
import pytest
import torch

from worker.engine.base import EngineOptions
from worker.engine.loading.registry import load_engine
from worker.evaluation import contextcite
from worker.evaluation.config import EvalConfig
from worker.evaluation.data import Example
from worker.evaluation.runner import evaluate
from worker.shapley.segment import document_units
from worker.shapley.units import Document

DOCS = (
    Document("Paris is the capital of France.", "France"),
    Document("Berlin is the capital of Germany.", "Germany"),
    Document("Rome is the capital of Italy.", "Italy"),
    Document("Madrid is the capital of Spain.", "Spain"),
    Document("Lisbon is the capital of Portugal.", "Portugal"),
    Document("Vienna is the capital of Austria.", "Austria"),
)
QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def engine():  # noqa: ANN201
    return load_engine("tiny-llama")


def _package_mask(seed: int, n: int) -> np.ndarray:
    """ContextCite's ablation ``seed`` (its utils._create_mask, keep probability 1/2)."""
    return np.random.RandomState(seed).choice([False, True], size=n, p=[0.5, 0.5])


def test_contextcite_attributes_the_given_answer_with_its_own_ablations(engine) -> None:
    assert contextcite.available(engine) is None
    session = engine.open_session(QUESTION, list(DOCS), max_new_tokens=6)
    answer = session.answers(document_units(list(DOCS)), np.ones((1, 6), dtype=bool))[0]
    runs = contextcite.contextcite_runs(engine, QUESTION, DOCS, answer, [4, 8], max_new_tokens=6)
    scored = engine.tokenizer.decode(session.target_ids(answer))
    for size, run in runs.items():
        assert run.response == scored
        assert len(run.scores) == 6
        assert all(np.isfinite(run.scores))
        expected = np.stack([_package_mask(i, 6) for i in range(size)])
        assert np.array_equal(run.masks, expected)
        assert run.forward_passes == size
    assert runs[4].seconds < runs[8].seconds


@pytest.mark.parametrize("style", ["short", "plain"])
def test_the_package_scores_the_log_p_game_every_other_method_explains(style) -> None:
    """Its per-ablation log p of the response (token logit-probabilities through a log
    sigmoid, as the package aggregates them) equals the engine's log p(y) on the same
    coalitions: same prompt ids, same answer ids, in either prompt style."""
    styled = load_engine("tiny-llama", options=EngineOptions(prompt_style=style))
    docs, units = list(DOCS), document_units(list(DOCS))
    session = styled.open_session(QUESTION, docs, max_new_tokens=6)
    answer = session.answers(units, np.ones((1, 6), dtype=bool))[0]
    target = contextcite.engine_target(styled, QUESTION, docs, answer, {"max_new_tokens": 6})
    assert target.response_ids == session.target_ids(answer)
    citer = contextcite.package_citer(styled.model, styled.tokenizer, QUESTION, docs, target, 8)
    masks, logit_probs = citer._masks, citer._logit_probs
    package = torch.nn.functional.logsigmoid(torch.tensor(logit_probs)).sum(dim=1).numpy()
    ours = session.log_probs(units, np.asarray(masks, dtype=bool), answer)
    np.testing.assert_allclose(package, ours, atol=2e-3)
    assert target.prompt_ids(masks[0]) == list(session.prompt_ids(units, masks[0]))


def test_on_our_engine_the_estimator_gives_the_package_s_scores(engine) -> None:
    """Same ablations, same output, same solver: only the forward passes differ (ours are
    batched and prefix-cached), so the weights equal the package's up to the engines'
    float error, and the smaller run is the larger's first ablations."""
    docs, units = list(DOCS), document_units(list(DOCS))
    session = engine.open_session(QUESTION, docs, max_new_tokens=6)
    answer = session.answers(units, np.ones((1, 6), dtype=bool))[0]
    package = contextcite.contextcite_runs(
        engine, QUESTION, DOCS, answer, [16, 32], max_new_tokens=6
    )
    ours = contextcite.engine_runs(
        engine.open_session(QUESTION, docs, max_new_tokens=6), units, answer, [16, 32]
    )
    for size in (16, 32):
        assert np.array_equal(ours[size].masks, package[size].masks)
        assert max(abs(w) for w in package[size].scores) > 0.05  # not a Lasso of zeros
        np.testing.assert_allclose(ours[size].scores, package[size].scores, atol=1e-2)
    assert ours[16].forward_passes < ours[32].forward_passes


def test_harness_runs_contextcite_beside_the_other_methods(engine) -> None:
    example = Example(
        id="cc", question=QUESTION, documents=DOCS, answers=("Paris",), relevant=frozenset({0})
    )
    config = EvalConfig(
        model="tiny-llama",
        budget=8,
        heldout=4,
        max_new_tokens=6,
        methods=("loo", "contextcite-32", "contextcite-64"),
    )
    record = evaluate(engine, example, config)
    assert set(record["methods"]) == {"loo", "contextcite-32", "contextcite-64"}
    assert record["methods"]["contextcite-64"]["coalitions"] == 64
    seen = {"".join("1" if k else "0" for k in _package_mask(i, 6)) for i in range(64)}
    assert len(record["heldout"]) == 4
    assert not set(record["heldout"]) & seen  # never one of ContextCite's ablations
    assert not record["unavailable"]
