"""Attention mass on a tiny random causal model: prompt layout and per-document mass."""

from dataclasses import replace
from types import SimpleNamespace

import pytest

from tests.fakes import make_fake_engine
from worker.engine.causal.attention_mass import prompt_layout
from worker.engine.loading.registry import load_engine
from worker.evaluation.attention import attention_scores
from worker.evaluation.data import Example
from worker.shapley.units import Document

DOCS = (
    Document("Paris is the capital of France.", "France"),
    Document("Berlin is the capital of Germany.", "Germany"),
    Document("Rome is the capital of Italy.", "Italy"),
)
EXAMPLE = Example(id="q", question="What is the capital of France?", documents=DOCS)


@pytest.fixture(scope="module")
def tiny():
    return load_engine("tiny-llama", device="cpu")


def test_layout_spans_cover_exactly_each_document_text(tiny) -> None:
    ids, spans = prompt_layout(tiny.tokenizer, EXAMPLE.question, list(DOCS))
    for span, doc in zip(spans, DOCS, strict=True):
        assert tiny.tokenizer.decode(ids[span.start : span.stop]) == doc.text + "\n"
    assert spans[0].stop < spans[1].start < spans[1].stop < spans[2].start


def test_mass_is_a_share_of_the_last_row_and_backend_is_restored(tiny) -> None:
    before = tiny.model.config._attn_implementation
    scores = attention_scores(tiny, EXAMPLE)
    assert scores is not None
    assert len(scores) == 3
    assert all(s > 0 for s in scores)
    assert 0 < sum(scores) < 1  # the head, headers and tail take the rest
    assert tiny.model.config._attn_implementation == before
    assert attention_scores(tiny, EXAMPLE) == scores  # deterministic


def test_engines_without_a_model_have_no_attention_ranker() -> None:
    assert attention_scores(make_fake_engine(), EXAMPLE) is None
    offered = SimpleNamespace(attention_mass=lambda q, docs: [0.5, 0.25, 0.25])
    assert attention_scores(offered, EXAMPLE) == [0.5, 0.25, 0.25]


def test_the_mass_is_taken_on_the_prompt_the_engine_builds(tiny) -> None:
    """The baseline reads the prompt the explanations see: the engine's prompt style."""
    short = tiny.attention_mass(EXAMPLE.question, list(DOCS))
    plain_engine = tiny.tuned(replace(tiny.options, prompt_style="plain"))
    plain = plain_engine.attention_mass(EXAMPLE.question, list(DOCS))
    assert tiny.options.prompt_style == "short"  # the shared engine is not changed
    ids_short, _ = prompt_layout(tiny.tokenizer, EXAMPLE.question, list(DOCS), "short")
    ids_plain, _ = prompt_layout(tiny.tokenizer, EXAMPLE.question, list(DOCS), "plain")
    assert len(ids_short) > len(ids_plain)  # the few-shot examples
    assert short != plain
