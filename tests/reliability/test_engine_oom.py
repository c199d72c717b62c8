"""Out of memory in a batch: the engine halves the batch and goes on, with the same
answers and scores as without the fault; a single coalition that does not fit, and any
other device error, fail loudly instead of being retried."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

from worker.engine.batching.budget import is_oom
from worker.engine.errors import EngineError
from worker.engine.loading.registry import load_engine
from worker.shapley import segment
from worker.shapley.units import Document

QUESTION = "Who wrote the report?"
DOCS = [
    Document("The report was written by Ada. It was long.", "Report"),
    Document("Bob reviewed it twice. He liked it.", "Review"),
    Document("Paris is in France. The weather was fine.", "Paris"),
    Document("The author is Ada Lovelace. She was a mathematician.", "Author"),
]


class Faulty:
    """A module stand-in that fails for batches of more than ``rows`` rows."""

    def __init__(self, inner: Any, rows: int, error: Exception) -> None:
        self.inner, self.rows, self.error = inner, rows, error
        self.refused: list[int] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        tensors = [v for v in (*args, *kwargs.values()) if isinstance(v, torch.Tensor)]
        batch = int(tensors[0].shape[0])
        if batch > self.rows:
            self.refused.append(batch)
            raise self.error
        return self.inner(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class BigAttentionFails:
    """``scaled_dot_product_attention`` that runs out of memory when a call attends over
    more than ``limit`` cached positions (rows x keys): what a device does when a batch is
    too big, since the keys and values of every row grow with it (T5 batches coalitions as
    rows; the causal engine packs them as a tree into one row's keys). Every engine path
    (HF's SDPA layers, the causal engine's blocks, the T5 kernel) goes through it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.refused: list[int] = []
        self.inner = torch.nn.functional.scaled_dot_product_attention

    def __call__(self, query: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        key = args[0] if args else kwargs["key"]
        size = int(key.shape[0] * key.shape[-2])
        if size > self.limit:
            self.refused.append(size)
            raise OOM
        return self.inner(query, *args, **kwargs)


OOM = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models, shared 2-core machine
    yield
    torch.set_num_threads(threads)


def coalitions() -> tuple[list[Any], np.ndarray]:
    units = segment.document_units(DOCS)
    rng = np.random.default_rng(3)
    masks = rng.random((10, len(units))) < 0.6
    masks[0], masks[1] = True, False
    return units, masks


def run(engine: Any) -> tuple[list[str], np.ndarray]:
    units, masks = coalitions()
    session = engine.open_session(QUESTION, DOCS, max_new_tokens=4)
    answers = session.answers(units, masks)
    return answers, session.log_probs(units, masks, answers[0])


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-t5"])
def test_oom_halves_the_batch_and_gives_the_same_results(name: str, monkeypatch) -> None:
    engine = load_engine(name, device="cpu")
    expected = run(engine)
    # one coalition (the full prompt, its draft and steps) fits; a batch of several does not
    limit = engine.count_tokens(QUESTION, DOCS) + 80
    faulty = BigAttentionFails(limit)
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", faulty)
    answers, scores = run(engine)
    assert answers == expected[0]
    np.testing.assert_allclose(scores, expected[1], rtol=1e-5, atol=1e-6)
    # batches over the limit were refused first (the answers and the scores), then halved
    assert len(faulty.refused) >= 2


@pytest.mark.parametrize(
    ("error", "raised", "message"),
    [
        (OOM, EngineError, "out of memory on a single coalition"),
        (RuntimeError("MPS backend out of memory"), EngineError, "single coalition"),
        (RuntimeError("CUDA error: an illegal memory access"), RuntimeError, "illegal memory"),
    ],
)
def test_unrecoverable_errors_propagate(
    error: Exception, raised: type[Exception], message: str
) -> None:
    engine = load_engine("tiny-llama", device="cpu")
    engine.base = Faulty(engine.base, 0, error)  # type: ignore[attr-defined]
    units, masks = coalitions()
    with pytest.raises(raised, match=message):
        engine.open_session(QUESTION, DOCS, max_new_tokens=4).answers(units, masks)


def test_what_counts_as_out_of_memory() -> None:
    assert is_oom(OOM)
    assert is_oom(RuntimeError("XPU out of memory. Tried to allocate"))
    assert not is_oom(RuntimeError("CUDA error: device-side assert triggered"))
    assert not is_oom(ValueError("out of memory"))  # not a device error


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-t5-fid"])
def test_out_of_memory_on_the_shared_context_fails_the_job(name: str, monkeypatch) -> None:
    """The full-context prompt (causal) and the passages (FiD) are computed once per job and
    cannot be split: out of memory there is an EngineError, not a raw device error."""
    engine = load_engine(name, device="cpu")
    faulty = BigAttentionFails(1)
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", faulty)
    units, masks = coalitions()
    with pytest.raises(EngineError, match="single coalition"):
        engine.open_session(QUESTION, DOCS, max_new_tokens=4).answers(units, masks)
    assert faulty.refused
