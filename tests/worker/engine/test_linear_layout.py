"""The linear layout (a row per coalition, one draft chain; what FlashAttention 2 runs):
exact answers and log-probabilities through the kernel the GPU path calls, here its
PyTorch reference, and the automatic choice of layout and backend."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tests.worker.engine.conftest import DOCS, QUESTION, mixed_units, random_masks
from tests.worker.engine.reference import causal_log_prob
from tests.worker.engine.test_causal_exact import check_against_generate
from worker.engine.attention import flash
from worker.engine.base import EngineOptions
from worker.engine.causal import engine as causal
from worker.engine.loading.registry import load_engine


def linear_engine(name: str):
    """A tiny engine in the linear layout whose kernel counts its calls."""
    engine = load_engine(name, device="cpu", options=EngineOptions(layout="linear"))
    calls = []

    def counted(*args, **kwargs):
        calls.append(kwargs.get("window"))
        return flash.reference_kvcache_attention(*args, **kwargs)

    engine.kernel, engine.kernel_calls = counted, calls
    return engine


@pytest.fixture(scope="module")
def linear():
    return {name: linear_engine(name) for name in ("tiny-llama", "tiny-gemma")}


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gemma"])
def test_answers_equal_generate(linear, name):
    engine = linear[name]
    engine.kernel_calls.clear()
    outcome = check_against_generate(engine, "remove", 200, seed=1)
    assert outcome["equal"] == 200  # measured: 200 of 200, no near ties
    assert outcome["accepted"] > 0  # draft chains were verified and taken
    assert outcome["distinct"] >= 3
    pad = check_against_generate(engine, "pad", 60, seed=2)
    assert pad["equal"] == 60
    assert len(engine.kernel_calls) > 0  # every pass went through the kernel
    if name == "tiny-gemma":  # sliding-window layers passed their window (48) to it
        assert set(engine.kernel_calls) == {48, None}


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gemma"])
def test_log_probs_equal_plain_forward(linear, name):
    engine = linear[name]
    units = mixed_units()
    masks = random_masks(len(units), 60, seed=3)
    session = engine.open_session(QUESTION, DOCS, max_new_tokens=8)
    answer = session.answers(units, masks[:1])[0]
    target = session.answer_tokens(units, masks[:1])[0]
    got = session.log_probs(units, masks, answer)
    ref = [causal_log_prob(engine.model, session.prompt_ids(units, m), target) for m in masks]
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)


def test_flash_attention_picks_the_linear_layout(monkeypatch):
    monkeypatch.setattr(
        causal, "pick_kernel", lambda device: (flash.FLASH, flash.reference_kvcache_attention)
    )
    engine = load_engine("tiny-llama", device="cpu")
    assert engine.options.layout == "auto"
    assert engine.linear
    assert engine.attention_backend == "flash_attention_2"
    session = engine.open_session(QUESTION, DOCS, max_new_tokens=4)
    assert session.stats.attention_backend == "flash_attention_2"
    fast = engine.tuned(replace(engine.options, fast=True))
    assert not fast.linear  # fast mode masks slots out: trees and SDPA only
    assert fast.attention_backend == "sdpa"
    assert not engine.tuned(replace(engine.options, layout="tree")).linear
    assert engine.linear  # the engine the others were derived from is unchanged


def test_a_verified_chain_saves_decoding_steps(linear):
    engine = linear["tiny-gemma"]
    units = mixed_units()
    masks = random_masks(len(units), 40, seed=7)
    passes = {}
    for speculative in (False, True):
        tuned = engine.tuned(replace(engine.options, speculative=speculative))
        session = tuned.open_session(QUESTION, DOCS, max_new_tokens=8)
        session.answers(units, masks)
        passes[speculative] = session.stats.forward_passes
    assert passes[True] < 0.7 * passes[False]  # measured: 123 against 202
