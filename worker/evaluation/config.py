"""What an evaluation run holds fixed, and the layout version of its records."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from worker.evaluation.methods import METHODS

SCHEMA = 2
"""Record layout version: 2 = one target (y) for every method, raw check outcomes."""


@dataclass(frozen=True)
class EvalConfig:
    """What a run holds fixed; stored next to the results so a resumed run matches.

    ``seed`` is the run's base seed: each question's seed derives from it and the
    question's id. ``ks``: the top-k of the removal and keep checks; ``recall_ks``: the
    recall@k reported; ``heldout``: random coalitions per question for the LDS;
    ``estimator``: the Shapley and Banzhaf methods' request estimator.
    """

    model: str
    budget: int = 32
    estimator: str = "auto"
    methods: tuple[str, ...] = METHODS
    masking: str = "remove"
    max_new_tokens: int = 16
    seed: int = 0
    heldout: int = 32
    ks: tuple[int, ...] = (1, 2, 3)
    recall_ks: tuple[int, ...] = (1, 3, 5)
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, **asdict(self)}
