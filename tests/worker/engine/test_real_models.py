"""The real offline models (SmolLM2 135M, Gemma 3 270M): engine answers equal plain
``generate`` with the newline stop and log-probs equal a plain forward pass, on a real NQ
question; answers end at their line."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest
import torch

from tests.worker.engine.reference import NEAR_TIE, answer_text, causal_generate, causal_log_prob
from worker.evaluation.metrics import normalize_answer
from worker.evaluation.paths import nq_file
from worker.shapley import segment
from worker.shapley.units import Document

NQ = nq_file(10)
MAX_NEW = 8
COALITIONS = 200

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def _both_cores() -> Iterator[None]:
    """Real models (unlike the tiny ones) gain from a second thread: the references alone
    are 400 plain ``generate`` calls, most of these tests' time in CI."""
    threads = torch.get_num_threads()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    yield
    torch.set_num_threads(threads)


def nq_example() -> tuple[str, list[Document]]:
    """The first NQ question with three passages cut to ~300 characters (keeps it fast)."""
    with gzip.open(NQ, "rt") as lines:
        record = json.loads(lines.readline())
    docs = [Document(d["text"][:300].rsplit(" ", 1)[0], d["title"]) for d in record["documents"]]
    return record["question"], docs[:3]


@pytest.fixture(scope="module", params=["smollm2-135m", "gemma-3-270m"])
def engine(request):
    """The model under the plain prompt: exactness does not depend on the prompt's words,
    and the default few-shot prompt's ~190 extra tokens would make the 400 reference
    ``generate`` calls, most of this module's time, about 1.6 times as long. The
    capital-of-France test switches to the default prompt, whose answers it checks."""
    from worker.engine.base import EngineOptions
    from worker.engine.loading.registry import load_engine

    return load_engine(request.param, device="cpu", options=EngineOptions(prompt_style="plain"))


@pytest.fixture(scope="module")
def references(engine):
    """200 random coalitions of the example's 10 sentences (mostly distinct), and plain
    ``generate``'s answer and smallest top-2 logit gap for each distinct prompt."""
    question, docs = nq_example()
    units = [u for d in range(len(docs)) for u in segment.sentence_units(docs, d)]
    rng = np.random.default_rng(0)
    masks = rng.random((COALITIONS, len(units))) < 0.6
    masks[0] = True
    session = engine.open_session(question, docs, max_new_tokens=MAX_NEW)
    prompts = [session.prompt_ids(units, row) for row in masks]
    refs = {}
    for prompt in prompts:
        if prompt not in refs:
            refs[prompt] = causal_generate(
                engine.model, engine.tokenizer, prompt, MAX_NEW, engine.eos, engine.pad
            )
    return question, docs, units, masks, prompts, refs


@pytest.mark.parametrize(("layout", "count"), [("tree", COALITIONS), ("linear", 60)])
def test_answers_and_log_probs_equal_plain_model(engine, references, layout, count):
    """Both batch layouts: the tree layout (the CPU default) on all 200 coalitions, the
    linear one (FlashAttention's, here through the kernel's reference) on the first 60,
    which keeps the slow tests within CI's time."""
    question, docs, units, masks, prompts, refs = references
    masks, prompts = masks[:count], prompts[:count]
    assert len(set(prompts)) >= 0.75 * count
    laid_out = engine.tuned(replace(engine.options, layout=layout))
    session = laid_out.open_session(question, docs, max_new_tokens=MAX_NEW)
    session.answers(units, masks[:1])  # as the pipeline does: the full context first
    got = session.answer_tokens(units, masks)
    texts = session.answers(units, masks)
    answer = texts[0]
    scored = session.log_probs(units, masks[:8], answer)
    near_ties = 0
    for prompt, mine, text in zip(prompts, got, texts, strict=True):
        ref, gap = refs[prompt]
        if list(mine) != ref:
            assert gap < NEAR_TIE, f"{list(mine)} != {ref} (top-2 gap {gap})"
            near_ties += 1
        else:
            assert text == answer_text(engine.tokenizer, ref, engine.eos)
    assert near_ties <= 2  # measured: none
    assert session.stats.draft_tokens_accepted > 0
    ref = [causal_log_prob(engine.model, prompts[i], got[0]) for i in range(8)]
    np.testing.assert_allclose(scored, ref, atol=1e-4, rtol=0)


def test_the_capital_of_france_is_answered_on_one_line(engine):
    """The example that fragmented the Shapley game ("Paris is the capital of France.\\n\\n
    The answer is not relevant to the"): the answer now ends at its line."""
    docs = [
        Document("Paris is the capital and largest city of France.", "Paris"),
        Document("Berlin is the capital and largest city of Germany.", "Berlin"),
        Document("Rome is the capital city of Italy.", "Rome"),
    ]
    units, full = segment.document_units(docs), np.ones((1, 3), dtype=bool)
    answers = {}
    for stop in (False, True):  # under the default prompt
        options = replace(engine.options, prompt_style="short", stop_at_newline=stop)
        session = engine.tuned(options).open_session(
            "What is the capital of France?", docs, max_new_tokens=16
        )
        answers[stop] = session.answers(units, full)[0]
    answer = answers[True]
    assert "\n" in answers[False]  # without the stop both models run on past the line
    assert answers[False].startswith(answer)
    assert "\n" not in answer
    assert answer.strip() == answer
    assert answer
    # measured under the plain prompt: smollm2 "Paris is the capital of France.", the base
    # Gemma 3 270M repeated the question; the default few-shot prompt gets "Paris" from both
    assert normalize_answer(answer) == "paris"


def test_fast_mode_on_the_bf16_twin(engine, references):
    """Fast mode on the bf16 copy: with everything kept it is plain ``generate`` on that
    copy, and its answers agree with the exact engine's as often as fp32 fast mode's do
    (measured on these 60 coalitions: 0.52 for SmolLM2, 0.92 for Gemma 3, both ways)."""
    question, docs, units, masks, prompts, refs = references
    masks = masks[:60]
    exact = [refs[p][0] for p in prompts[:60]]
    agreement = {}
    for choice in ("off", "on"):
        tuned = engine.tuned(replace(engine.options, fast_bf16=choice))
        session = tuned.open_session(question, docs, max_new_tokens=MAX_NEW, fast=True)
        got = session.answer_tokens(units, masks)
        agreement[choice] = np.mean([list(g) == e for g, e in zip(got, exact, strict=True)])
    assert session.engine.model.dtype == torch.bfloat16
    assert session.stats.fast
    twin = session.engine.model
    full, gap = causal_generate(twin, engine.tokenizer, prompts[0], MAX_NEW, engine.eos, engine.pad)
    assert list(got[0]) == full or gap < NEAR_TIE
    assert agreement["on"] >= agreement["off"] - 0.1
    assert agreement["off"] >= 0.4
