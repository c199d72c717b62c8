"""The bf16-screened output head gives the fp32 head's greedy tokens: on random heads with
spread row norms, on exact and near ties, on crowded rows, and inside the engine."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.worker.engine.conftest import DOCS, QUESTION, mixed_units, random_masks
from worker.engine import screened_head
from worker.engine.loading.registry import load_engine
from worker.engine.screened_head import ScreenedHead, calibrate, plain_argmax


def _head(vocab: int, width: int, seed: int) -> torch.Tensor:
    """Rows of norms from 0.5 to 8 (SmolLM2's run from 1.8 to 7.5)."""
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randn(vocab, width, generator=generator)
    scale = torch.empty(vocab).uniform_(0.5, 8.0, generator=generator)
    return rows / rows.norm(dim=-1, keepdim=True) * scale[:, None]


def _states(count: int, width: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(count, width, generator=generator) * 3


@pytest.mark.parametrize(("vocab", "width"), [(4096, 64), (3001, 48), (2048, 96)])
def test_equals_the_fp32_argmax(vocab: int, width: int) -> None:
    weight = _head(vocab, width, seed=vocab)
    hidden = _states(2000, width, seed=1)
    head = ScreenedHead(weight)
    assert torch.equal(head.argmax(hidden), plain_argmax(weight, hidden))
    assert head.candidates < 2000 * 64  # a few per row, not the vocabulary


def test_prime_vocabulary_is_one_word_per_chunk() -> None:
    weight = _head(1009, 32, seed=3)
    head = ScreenedHead(weight)
    assert head.chunk == 1
    hidden = _states(300, 32, seed=4)
    assert torch.equal(head.argmax(hidden), plain_argmax(weight, hidden))


def test_ties_go_to_the_lowest_id_as_torch_argmax_breaks_them() -> None:
    weight = _head(2048, 64, seed=5)
    hidden = _states(400, 64, seed=6)
    winners = plain_argmax(weight, hidden)
    # Copy every winner's row to a higher and a lower id: an exact three-way tie.
    for word in winners.unique().tolist():
        weight[(word + 7) % 2048] = weight[word]
        weight[(word + 2041) % 2048] = weight[word]
    expected = plain_argmax(weight, hidden)
    assert torch.equal(ScreenedHead(weight).argmax(hidden), expected)
    counts = torch.bincount(expected, minlength=2048)
    assert counts.sum() == 400


def test_near_ties_below_bf16_precision_are_settled_in_fp32() -> None:
    weight = _head(2048, 64, seed=7)
    hidden = _states(400, 64, seed=8)
    generator = torch.Generator().manual_seed(9)
    for word in plain_argmax(weight, hidden).unique().tolist():
        # A rival that bf16 cannot tell apart, a little better or a little worse.
        nudge = 1 + 1e-4 * torch.randn(64, generator=generator)
        weight[(word + 11) % 2048] = weight[word] * nudge
    logits = hidden @ weight.T
    best_two = logits.topk(2, dim=-1).values
    near = (best_two[:, 0] - best_two[:, 1]) < 2**-8 * best_two[:, 0].abs()
    assert near.sum() > 300  # most rows' winner has a rival within bf16's resolution
    # Rivals within fp32's summation-order noise (``width * 2**-24`` of the summed
    # magnitudes) are the near-tie class batching has too; every other row must agree,
    # and those are still hundreds of rows bf16 cannot settle.
    magnitude = (hidden.abs() @ weight.abs().T).amax(dim=-1)
    fp32_tie = (best_two[:, 0] - best_two[:, 1]) <= 64 * 2**-24 * magnitude
    assert (near & ~fp32_tie).sum() > 250
    got, expected = ScreenedHead(weight).argmax(hidden), plain_argmax(weight, hidden)
    assert torch.equal(got[~fp32_tie], expected[~fp32_tie])


def test_crowded_rows_take_the_full_head(monkeypatch: pytest.MonkeyPatch) -> None:
    weight = _head(4096, 64, seed=10)
    hidden = _states(200, 64, seed=11)
    monkeypatch.setattr(screened_head, "CANDIDATE_CAP", 2)
    head = ScreenedHead(weight)
    assert torch.equal(head.argmax(hidden), plain_argmax(weight, hidden))


def test_calibrate_says_whether_screening_pays(monkeypatch: pytest.MonkeyPatch) -> None:
    head = ScreenedHead(_head(4096, 64, seed=12))
    slow = head.argmax

    def slower(hidden: torch.Tensor) -> torch.Tensor:
        import time

        time.sleep(0.02)
        return slow(hidden)

    monkeypatch.setattr(head, "argmax", slower)
    assert calibrate(head) is None
    monkeypatch.setattr(head, "argmax", slow)

    def plain_sleeping(weight: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        import time

        time.sleep(0.05)
        return weight[:1].sum() + hidden[:, 0]

    monkeypatch.setattr(screened_head, "plain_argmax", plain_sleeping)
    rows = calibrate(head)
    assert rows is not None
    assert 1 <= rows <= screened_head.MAX_READ_ROWS


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gemma"])
def test_engine_answers_equal_with_and_without_screening(name: str) -> None:
    engine = load_engine(name, device="cpu")
    units = mixed_units()
    masks = random_masks(len(units), 60, seed=13)
    answers = {}
    for choice in ("off", "on"):
        tuned = engine.tuned(dataclasses.replace(engine.options, screened_head=choice))
        session = tuned.open_session(QUESTION, DOCS, max_new_tokens=6)
        answers[choice] = session.answer_tokens(units, masks)  # type: ignore[attr-defined]
    assert answers["on"] == answers["off"]
    assert engine.screen.candidates > 0  # type: ignore[attr-defined]  # it ran


def test_many_rows_run_in_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    weight = _head(2048, 32, seed=14)
    hidden = _states(700, 32, seed=15)
    monkeypatch.setattr(screened_head, "ROWS_PER_CALL", 64)
    assert torch.equal(ScreenedHead(weight).argmax(hidden), plain_argmax(weight, hidden))


def test_a_state_holding_nan_gets_what_the_full_head_gives() -> None:
    weight = _head(512, 16, seed=16)
    hidden = _states(4, 16, seed=17)
    hidden[2, 5] = float("nan")
    got, expected = ScreenedHead(weight).argmax(hidden), plain_argmax(weight, hidden)
    assert torch.equal(got, expected)
    assert int(got.max()) < 512
