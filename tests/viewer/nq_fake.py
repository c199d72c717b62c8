"""A rule-based engine that gives the bundled NQ examples more than one answer.

The shared :class:`tests.fakes.FakeEngine` knows only capital-city rules, so every
bundled example would answer "unknown". Here the first bundled example answers
"Wilhelm Conrad Röntgen" while the laureates passage is shown and "Henry Moseley"
while only the Moseley passage is, which gives the viewer answers to switch between.
"""

from __future__ import annotations

from collections.abc import Sequence

from tests.fakes import FakeEngine, FakeOracle
from worker.shapley.units import Document, Masking

NQ_RULES: tuple[tuple[str, str], ...] = (
    ("Röntgen", "Wilhelm Conrad Röntgen"),
    ("Moseley", "Henry Moseley"),
    ("Ryder", "David J. Ryder"),
    ("liver", "beneath the liver"),
)


class NqFakeEngine(FakeEngine):
    """:class:`FakeEngine` whose sessions answer by :data:`NQ_RULES`."""

    def open_session(
        self,
        question: str,
        documents: Sequence[Document],
        *,
        masking: Masking = "remove",
        max_new_tokens: int = 16,
        fast: bool | None = None,
    ) -> FakeOracle:
        session = FakeOracle(question, documents, masking=masking, rules=NQ_RULES, delay=self.delay)
        self.sessions.append(session)
        return session


BATCH_SECONDS = 0.004  # a model's pace: a big job (4096 coalitions) runs for seconds, so a
# cancel sent while it runs lands before it ends even on a loaded machine (without it,
# such a job ended in under a second and a cancel could arrive after its last checkpoint)


def make_nq_fake_engine() -> NqFakeEngine:
    """Factory for ``--model py:tests.viewer.nq_fake:make_nq_fake_engine`` (served as fake-nq)."""
    return NqFakeEngine("fake-nq", delay=BATCH_SECONDS)
