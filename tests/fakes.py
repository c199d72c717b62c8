"""Rule-based stand-ins for the model, usable by every test without torch.

:class:`FakeOracle` answers by keyword rules over the text a coalition shows: the
first rule whose keyword appears (case-insensitively) in the rendered context wins,
else ``"unknown"``. Rendering uses the real masking helpers of
``worker.shapley.segment``, so masking semantics are exercised end to end.

:class:`FakeEngine` mirrors the Engine API (``name``, ``family``, ``device``,
``attention_backend``, ``max_context_tokens``, ``count_tokens``, ``open_session``);
the worker loads it with ``--model py:tests.fakes:make_fake_engine``.
``make_slow_fake_engine`` sleeps per batch (for cancellation and lease tests);
``make_raising_engine`` returns sessions that raise ``RuntimeError("engine exploded")``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from worker.shapley.oracle import Masks, OracleStats
from worker.shapley.segment import removed_spans, render
from worker.shapley.units import Document, Masking, Unit

DEFAULT_RULES: tuple[tuple[str, str], ...] = (
    ("capital of France", "Paris."),
    ("Eiffel Tower", "paris"),
    ("capital of Germany", "Berlin"),
    ("largest city of Germany", "Berlin!"),
    ("capital of Italy", "Rome"),
)
"""(keyword, raw answer): several keywords give the same normalised answer on purpose."""

PAD = "<pad>"


class FakeOracle:
    """An Oracle for one question and document set, answering by keyword rules."""

    def __init__(
        self,
        question: str,
        documents: Sequence[Document],
        *,
        masking: Masking = "remove",
        rules: Sequence[tuple[str, str]] = DEFAULT_RULES,
        delay: float = 0.0,
    ) -> None:
        self.question = question
        self.documents = list(documents)
        self.masking = masking
        self.rules = list(rules)
        self.delay = delay
        self.stats = OracleStats(attention_backend="fake")
        self.calls = 0
        self.coalitions_seen: list[tuple[tuple[int, int, int, bool], ...]] = []

    def context(self, units: Sequence[Unit], mask: npt.NDArray[np.bool_]) -> str:
        """The context text this coalition shows the model (titles included)."""
        if self.masking == "pad":
            return self._padded(units, mask)
        return "\n".join(
            f"[{k + 1}] {d.title}: {d.text}"
            for k, (_, d) in enumerate(render(self.documents, units, mask))
        )

    def _padded(self, units: Sequence[Unit], mask: npt.NDArray[np.bool_]) -> str:
        spans = removed_spans(units, mask, self.documents)
        parts = []
        for i, doc in enumerate(self.documents):
            text = doc.text
            for start, end in reversed(spans.get(i, [])):
                text = text[:start] + PAD + text[end:]
            hidden = spans.get(i) == [(0, len(doc.text))]
            parts.append(f"[{i + 1}] {PAD if hidden else doc.title}: {text}")
        return "\n".join(parts)

    def answer_for(self, context: str) -> str:
        lowered = context.lower()
        for keyword, answer in self.rules:
            if keyword.lower() in lowered:
                return answer
        return "unknown"

    def answers(self, units: Sequence[Unit], masks: Masks) -> list[str]:
        self._account(units, masks)
        return [self.answer_for(self.context(units, row)) for row in masks]

    def log_probs(
        self, units: Sequence[Unit], masks: Masks, answer: str
    ) -> npt.NDArray[np.float64]:
        """log 0.9 if the coalition's answer is ``answer``, else log 0.1, minus a length term."""
        self._account(units, masks)
        out = []
        for row in masks:
            context = self.context(units, row)
            hit = self.answer_for(context).strip() == answer.strip()
            out.append(math.log(0.9 if hit else 0.1) - 0.001 * len(context.split()))
        return np.array(out, dtype=np.float64)

    def _account(self, units: Sequence[Unit], masks: Masks) -> None:
        if self.delay:
            time.sleep(self.delay)
        self.calls += 1
        self.stats.batch_sizes.append(len(masks))
        self.stats.forward_passes += len(masks)
        for row in masks:
            self.stats.tokens_computed += len(self.context(units, row).split())
            self.coalitions_seen.append(
                tuple(
                    (u.document, u.start, u.end, bool(k)) for u, k in zip(units, row, strict=True)
                )
            )


class RaisingOracle(FakeOracle):
    """A session whose model fails on every call (poison-job tests)."""

    def answers(self, units: Sequence[Unit], masks: Masks) -> list[str]:
        raise RuntimeError("engine exploded")

    def log_probs(
        self, units: Sequence[Unit], masks: Masks, answer: str
    ) -> npt.NDArray[np.float64]:
        raise RuntimeError("engine exploded")


class FakeEngine:
    """The Engine API over :class:`FakeOracle` sessions; no model, no torch."""

    def __init__(self, name: str = "fake", *, delay: float = 0.0, raising: bool = False) -> None:
        self.name = name
        self.family = "fake"
        self.device = "cpu"
        self.attention_backend = "fake"
        self.max_context_tokens = 100_000
        self.delay = delay
        self.raising = raising
        self.sessions: list[FakeOracle] = []

    def count_tokens(self, question: str, documents: Sequence[Document]) -> int:
        """Whitespace tokens of question, titles and texts."""
        words = len(question.split())
        return words + sum(len(d.title.split()) + len(d.text.split()) for d in documents)

    def open_session(
        self,
        question: str,
        documents: Sequence[Document],
        *,
        masking: Masking = "remove",
        max_new_tokens: int = 16,
        fast: bool | None = None,
    ) -> FakeOracle:
        kind = RaisingOracle if self.raising else FakeOracle
        session = kind(question, documents, masking=masking, delay=self.delay)
        session.stats.fast = bool(fast)
        self.sessions.append(session)
        return session


def make_fake_engine() -> FakeEngine:
    """Factory for ``--model py:tests.fakes:make_fake_engine``."""
    return FakeEngine()


def make_slow_fake_engine() -> FakeEngine:
    """Like :func:`make_fake_engine` but every model call takes 50 ms."""
    return FakeEngine("fake-slow", delay=0.05)


def make_raising_engine() -> FakeEngine:
    """An engine whose sessions raise ``RuntimeError("engine exploded")``."""
    return FakeEngine("fake-raising", raising=True)
