"""T5Kernel (direct calls of T5's modules) against Hugging Face's T5 forward, the generic
fallback kernel against it, and look-up drafts in the seq2seq sessions."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from tests.worker.engine.conftest import DOCS, QUESTION, mixed_units, random_masks
from worker.engine.seq2seq.kernel import EncoderMemory as Memory
from worker.engine.seq2seq.kernel import GenericKernel
from worker.engine.seq2seq.t5_kernel import T5Kernel

MAX_NEW = 8


def test_the_tiny_t5_runs_on_the_t5_kernel(engines):
    assert isinstance(engines["tiny-t5"].kernel, T5Kernel)
    assert isinstance(engines["tiny-t5-fid"].kernel, T5Kernel)


def _padded_ids(seed: int, lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    rng = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 259, (len(lengths), max(lengths)), generator=rng)
    mask = torch.arange(ids.shape[1])[None, :] < torch.tensor(lengths)[:, None]
    mask[0, 5:9] = False  # a hole inside a row, as pad masking makes
    return ids.masked_fill(~mask, 0), mask


def test_encoder_equals_hugging_face(engines):
    engine = engines["tiny-t5"]
    ids, mask = _padded_ids(0, [300, 170, 40])
    got = engine.kernel.encode(ids, mask)
    ref = engine.model.get_encoder()(input_ids=ids, attention_mask=mask.long()).last_hidden_state
    torch.testing.assert_close(got[mask], ref[mask], atol=1e-5, rtol=1e-5)
    alone = engine.kernel.encode(ids[1:2, :170], None)  # no mask: the cached bias, sliced
    ref = engine.model.get_encoder()(input_ids=ids[1:2, :170]).last_hidden_state
    torch.testing.assert_close(alone, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shared", [True, False])
def test_decoder_steps_at_different_positions_equal_a_plain_forward(engines, shared):
    """Rows fed in uneven chunks (each row at its own position, junk beyond it) give the
    logits of one teacher-forced forward pass over each row's whole sequence."""
    engine = engines["tiny-t5"]
    ids, mask = _padded_ids(1, [120, 90, 60])
    states = engine.kernel.encode(ids, mask)
    if shared:  # FiD: one memory for every row, a mask per row
        states, mask = states[:1], mask[:1].expand(3, -1) & (torch.rand(3, mask.shape[1]) < 0.7)
        mask = mask.clone()
        mask[:, 0] = True
    memory = engine.kernel.memory(states, mask)
    decoding = engine.kernel.decoding(memory, 12)
    targets = torch.randint(3, 259, (3, 8), generator=torch.Generator().manual_seed(2))
    targets[:, 0] = engine.start
    chunks = [[1, 3, 2], [2, 1, 4], [3, 2, 1], [2, 2, 1]]  # tokens fed per row per step
    fed = [0, 0, 0]
    got = torch.zeros(3, 8, engine.model.config.vocab_size)
    for step in chunks:
        width = max(step)
        rows = torch.zeros(3, width, dtype=torch.long)
        for r, n in enumerate(step):
            rows[r, :n] = targets[r, fed[r] : fed[r] + n]
            rows[r, n:] = 7  # junk past the row's own tokens
        logits, computed = decoding.step(rows, list(fed))
        assert computed == 3 * width
        for r, n in enumerate(step):
            got[r, fed[r] : fed[r] + n] = logits[r, :n]
            fed[r] += n
    full = states.expand(3, -1, -1)
    ref = engine.model(
        encoder_outputs=(full,), attention_mask=mask.long(), decoder_input_ids=targets
    ).logits
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-5)


def test_memory_rows_keep_the_shared_keys(engines):
    engine = engines["tiny-t5"]
    states = torch.randn(1, 10, engine.model.config.d_model)
    memory = engine.kernel.memory(states, torch.ones(4, 10, dtype=torch.bool))
    kept = memory.rows(torch.tensor([1, 3]))
    assert kept.parts[0] is memory.parts[0]
    assert kept.mask.shape == (2, 10)
    assert isinstance(memory, Memory)
    assert memory.shared


@pytest.mark.parametrize("name", ["tiny-t5", "tiny-t5-fid"])
def test_the_generic_kernel_gives_the_same_answers(engines, monkeypatch, name):
    engine = engines[name]
    units = mixed_units()
    masks = random_masks(len(units), 40, seed=11)

    def answers():  # the full context first, so that later batches have a draft
        session = engine.open_session(QUESTION, DOCS, max_new_tokens=MAX_NEW)
        first = session.answer_tokens(units, masks[:1])
        return session, first + session.answer_tokens(units, masks[1:])

    fast = answers()[1]
    monkeypatch.setattr(engine, "kernel", GenericKernel(engine.model))
    session, slow = answers()
    assert slow == fast
    assert session.stats.draft_tokens_accepted > 0


@pytest.mark.parametrize("name", ["tiny-t5", "tiny-t5-fid"])
def test_look_up_drafts_never_change_answers(engines, monkeypatch, name):
    engine = engines[name]
    units = mixed_units()
    masks = random_masks(len(units), 40, seed=12)
    plain = engine.tuned(replace(engine.options, lookup_tokens=0)).open_session(
        QUESTION, DOCS, max_new_tokens=MAX_NEW
    )
    without = plain.answer_tokens(units, masks)
    assert plain.lookup_proposed == 0
    session = engine.tuned(replace(engine.options, lookup_tokens=6)).open_session(
        QUESTION, DOCS, max_new_tokens=MAX_NEW
    )
    assert session.answer_tokens(units, masks) == without
    assert session.lookup_proposed > 0
    if session.lookup_accepted == 0:  # each rejection shortens the drafts: 6 + 5 + ... + 1
        assert session.lookup_proposed <= 21
