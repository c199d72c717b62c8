"""Fast mode's bf16 twin: a bf16 copy of an fp32 CPU model that only fast mode runs on."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from tests.worker.engine.conftest import DOCS, QUESTION, random_masks
from worker.engine.causal import engine as causal
from worker.engine.loading import bf16_twin
from worker.engine.loading.registry import load_engine
from worker.shapley import segment
from worker.shapley.units import Document


@pytest.fixture
def llama():
    """A tiny Llama of its own (its bf16 twin and timing are made per test)."""
    return load_engine("tiny-llama", device="cpu")


def tuned(engine, **changes):
    return engine.tuned(replace(engine.options, **changes))


def test_copy_is_bf16_and_leaves_the_model_alone():
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
    )  # fmt: skip
    model = LlamaForCausalLM(config).eval()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    twin = bf16_twin.bf16_copy(model)
    assert {p.dtype for p in twin.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name])
        assert torch.equal(dict(twin.named_parameters())[name], p.to(torch.bfloat16))
    # the tied head is still the embedding, in the copy as in the model
    assert twin.lm_head.weight is twin.model.embed_tokens.weight
    ids = torch.tensor([[1, 5, 9, 13, 2]])
    with torch.no_grad():
        full, half = model(ids).logits, twin(ids).logits.float()
    assert torch.allclose(full, half, atol=0.05 * full.abs().max().item())


def test_only_fp32_cpu_models_have_a_twin():
    model = torch.nn.Linear(4, 4)
    assert bf16_twin.applies(model)
    assert not bf16_twin.applies(model.to(torch.bfloat16))


def test_choice_follows_the_option_and_the_timing(llama, monkeypatch):
    timings = []
    monkeypatch.setattr(causal, "bf16_pays", lambda width: timings.append(width) or False)
    assert not tuned(llama, fast_bf16="off").fast_in_bf16
    assert tuned(llama, fast_bf16="on").fast_in_bf16
    auto = tuned(llama, fast_bf16="auto")
    assert not auto.fast_in_bf16
    assert not auto.fast_in_bf16
    assert timings == [64]  # timed once, at the model's width


def test_fast_sessions_run_on_the_twin_exact_ones_never(llama):
    llama = tuned(llama, fast=True, fast_bf16="on")
    fast = llama.open_session(QUESTION, DOCS, max_new_tokens=4)
    assert fast.engine.model.dtype == torch.bfloat16
    assert fast.engine.screen is None
    assert fast.engine.options is llama.options
    assert llama.model.dtype == torch.float32
    # the twin is made once and kept
    again = llama.open_session(QUESTION, DOCS, max_new_tokens=4)
    assert again.engine.model is fast.engine.model
    exact = llama.tuned(replace(llama.options, fast=False))
    assert exact.open_session(QUESTION, DOCS).engine is exact


def test_full_coalition_equals_generate_on_the_twin(llama):
    """With every document kept fast mode computes the full prompt exactly, so on the twin
    its answer is plain ``generate`` on the bf16 model."""
    llama = tuned(llama, fast=True, fast_bf16="on")
    units = segment.document_units(DOCS)
    full = np.ones((1, len(units)), dtype=bool)
    session = llama.open_session(QUESTION, DOCS, max_new_tokens=8)
    got = session.answer_tokens(units, full)[0]
    ids = torch.tensor([session.prompt_ids(units, full[0])])
    out = session.engine.model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        do_sample=False,
        max_new_tokens=8,
        pad_token_id=llama.pad,
        eos_token_id=sorted(llama.eos),
    )
    reference = out[0, ids.shape[1] :].tolist()
    assert list(got) == reference[: len(got)]
    assert len(got) == len(reference) or session.stop.done(list(got))


def test_removed_documents_stay_invisible_on_the_twin(llama):
    """Rewriting the hidden documents (same length, same positions) cannot change the
    answer: the kept first document's slots come before them, the tail does not see them."""
    llama = tuned(llama, fast=True, fast_bf16="on")
    other = DOCS[:1] + [Document("z" * len(d.text), d.title) for d in DOCS[1:]]
    answers = []
    for docs in (DOCS, other):
        units = segment.document_units(docs)
        keep = np.array([[True, False, False, False, False]])
        session = llama.open_session(QUESTION, docs, max_new_tokens=6)
        answers.append(session.answer_tokens(units, keep))
    assert answers[0] == answers[1]


def test_twin_log_probs_are_fp32_fast_modes_to_bf16_precision(llama):
    units = segment.document_units(DOCS)
    masks = random_masks(len(units), 12, seed=3)
    scores = {}
    for choice in ("off", "on"):
        session = tuned(llama, fast=True, fast_bf16=choice).open_session(
            QUESTION, DOCS, max_new_tokens=6
        )
        scores[choice] = session.log_probs(units, masks, "Ada")
    assert np.all(scores["on"] < 0)
    assert np.allclose(scores["on"], scores["off"], rtol=0.03, atol=0.05)
    assert not np.array_equal(scores["on"], scores["off"])  # it did run in bf16
