"""Fake engines for the evaluation tests, over the rule-based FakeOracle of ``tests.fakes``.

:class:`RuleEngine` answers every question by the same keyword rules (controlled games with
a known answer). :class:`GoldEngine` has one rule per NQ question (its gold answer string
-> that answer), so it answers correctly exactly when the gold passage is shown (README:
no other passage contains it).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tests.fakes import FakeEngine, FakeOracle
from worker.evaluation.data import load_examples
from worker.shapley.units import Document, Masking

NQ = Path(__file__).parent / "data" / "nq-10docs-6.jsonl.gz"


class RuleEngine(FakeEngine):
    """The same keyword rules for every question."""

    def __init__(self, rules: Sequence[tuple[str, str]], name: str = "fake-rules") -> None:
        super().__init__(name)
        self.rules = list(rules)

    def rules_for(self, question: str) -> list[tuple[str, str]]:
        return self.rules

    def open_session(
        self,
        question: str,
        documents: Sequence[Document],
        *,
        masking: Masking = "remove",
        max_new_tokens: int = 16,
        fast: bool | None = None,
    ) -> FakeOracle:
        rules = self.rules_for(question)
        session = FakeOracle(question, documents, masking=masking, rules=rules)
        self.sessions.append(session)
        return session


class GoldEngine(RuleEngine):
    """Answers a question's first gold answer iff a shown passage contains it."""

    def __init__(self, answers: dict[str, str]) -> None:
        super().__init__([], "fake-gold")
        self.answers = answers

    def rules_for(self, question: str) -> list[tuple[str, str]]:
        answer = self.answers.get(question)
        return [(answer, answer)] if answer else []


def make_gold_engine() -> GoldEngine:
    """Factory for ``--model py:eval_fakes:make_gold_engine`` style loading."""
    return GoldEngine({e.question: e.answers[0] for e in load_examples(NQ)})
