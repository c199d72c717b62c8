"""A fake engine for the evaluation tests: the rule-based FakeOracle of ``tests.fakes``,
with one rule per NQ question (its gold answer string -> that answer), so the fake answers
correctly exactly when the gold passage is shown (README: no other passage contains it)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tests.fakes import FakeEngine, FakeOracle
from worker.evaluation.data import load_examples
from worker.shapley.units import Document, Masking

NQ = Path(__file__).parent / "data" / "nq-10docs-6.jsonl.gz"


class GoldEngine(FakeEngine):
    """Answers a question's first gold answer iff a shown passage contains it."""

    def __init__(self, rules: dict[str, str]) -> None:
        super().__init__("fake-gold")
        self.rules = rules

    def open_session(
        self,
        question: str,
        documents: Sequence[Document],
        *,
        masking: Masking = "remove",
        max_new_tokens: int = 16,
        fast: bool | None = None,
    ) -> FakeOracle:
        answer = self.rules.get(question)
        rules = [(answer, answer)] if answer else []
        session = FakeOracle(question, documents, masking=masking, rules=rules)
        self.sessions.append(session)
        return session


def make_gold_engine() -> GoldEngine:
    """Factory for ``--model py:eval_fakes:make_gold_engine`` style loading."""
    return GoldEngine({e.question: e.answers[0] for e in load_examples(NQ)})
