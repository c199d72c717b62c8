"""The newline stop on tiny models made to emit newlines often.

The registered tiny models emit byte 10 (id 13) rarely (2 of 200 tiny-llama answers end by
it, 6 of 200 tiny-t5 ones, none of tiny-gemma's), so here copies of them get that row of
the output projection scaled up, as the EOS row is: then 40-185 of 200 answers end by
the newline stop, and they must still equal plain ``generate`` with a stopping criterion.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.worker.engine.conftest import DOCS, QUESTION, mixed_units, random_masks
from tests.worker.engine.reference import causal_log_prob
from tests.worker.engine.test_causal_exact import MAX_NEW, check_against_generate
from tests.worker.engine.test_seq2seq_exact import compare, joint_reference
from worker.engine.base import EngineOptions
from worker.engine.causal.engine import CausalEngine
from worker.engine.loading.tiny import build_tiny
from worker.engine.seq2seq.engine import Seq2SeqEngine

NEWLINE = 13  # ByT5: byte 10 + 3
BOOST = {"tiny-llama": 2.0, "tiny-gemma": 2.0, "tiny-t5": 2.5}


def chatty(kind: str, **options: bool) -> CausalEngine | Seq2SeqEngine:
    """The tiny model ``kind`` with its newline logit scaled up by ``BOOST[kind]``."""
    loaded = build_tiny(kind, torch.device("cpu"))
    with torch.no_grad():
        loaded.model.get_output_embeddings().weight[NEWLINE] *= BOOST[kind]
    if kind == "tiny-t5":
        return Seq2SeqEngine(loaded, kind, fid=False, options=EngineOptions(**options))
    return CausalEngine(loaded, kind, EngineOptions(**options))


def newline_ended(answers: list[tuple[int, ...]]) -> list[int]:
    return [i for i, a in enumerate(answers) if a[-1] == NEWLINE]


@pytest.mark.parametrize("kind", ["tiny-llama", "tiny-gemma"])
def test_causal_answers_equal_generate_with_the_stop(kind):
    outcome = check_against_generate(chatty(kind), "remove", 200, seed=1)
    assert outcome["equal"] >= 198
    assert outcome["newline"] >= 20  # measured: 40 (llama), 185 (gemma)
    assert outcome["accepted"] > 0  # the draft tree holds stopped answers and is accepted


def test_joint_t5_answers_equal_generate_with_the_stop():
    engine = chatty("tiny-t5")
    units = mixed_units()
    masks = random_masks(len(units), 200, seed=5)
    session = engine.open_session(QUESTION, DOCS, max_new_tokens=MAX_NEW)
    got = session.answer_tokens(units, masks)
    outcome = compare(got, [joint_reference(engine, session, units, row) for row in masks])
    assert outcome["near_tie"] <= 2
    assert len(newline_ended(got)) >= 20  # measured: 60
    assert not any("\n" in text for text in session.answers(units, masks))


@pytest.mark.parametrize("kind", ["tiny-llama", "tiny-t5"])
def test_the_stop_cuts_answers_and_saves_passes(kind):
    """Without the stop the same greedy answers run on; with it they end at the newline."""
    units = mixed_units()
    masks = random_masks(len(units), 40, seed=11)
    sessions = [
        chatty(kind, stop_at_newline=on).open_session(QUESTION, DOCS, max_new_tokens=MAX_NEW)
        for on in (True, False)
    ]
    stopped, running = (s.answer_tokens(units, masks) for s in sessions)
    cut = newline_ended(stopped)
    assert len(cut) >= 4
    for i, (short, long) in enumerate(zip(stopped, running, strict=True)):
        assert long[: len(short)] == short
        assert (len(long) > len(short)) == (i in cut and len(short) < MAX_NEW)
    assert sessions[0].stats.forward_passes < sessions[1].stats.forward_passes


def test_log_probs_of_a_stopped_answer_score_its_newline_token():
    engine = chatty("tiny-llama")
    units = mixed_units()
    masks = random_masks(len(units), 200, seed=1)
    session = engine.open_session(QUESTION, DOCS, max_new_tokens=MAX_NEW)
    got = session.answer_tokens(units, masks)
    texts = session.answers(units, masks)
    # an answer text only ever produced by one token sequence, so that sequence is scored
    first = next(i for i in newline_ended(got) if texts.count(texts[i]) == got.count(got[i]))
    answer = texts[first]
    assert "\n" not in answer
    scored = session.log_probs(units, masks, answer)
    target = got[first]  # the answer's tokens up to and including the newline
    ref = [causal_log_prob(engine.model, session.prompt_ids(units, m), target) for m in masks]
    np.testing.assert_allclose(scored, ref, atol=1e-4, rtol=0)
