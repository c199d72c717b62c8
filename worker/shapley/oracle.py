"""What a game needs from a model, and nothing more.

The engine's per-job session implements :class:`Oracle`; so do the rule-based fakes the
tests use. Estimators and the hierarchy only ever talk to this protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from worker.shapley.units import Unit

Masks = npt.NDArray[np.bool_]
"""Coalitions as a boolean matrix of shape (m, len(units)): True keeps the unit."""


@dataclass
class OracleStats:
    """Cost counters a session accumulates over a job (see docs/performance.md).

    ``forward_passes``: times the model ran over a coalition's sequence (a T-token greedy
    answer with a KV cache is T passes). ``tokens_computed``: token positions actually
    computed (cache reuse lowers it). Draft counters belong to speculative decoding.
    """

    forward_passes: int = 0
    tokens_computed: int = 0
    draft_tokens_proposed: int = 0
    draft_tokens_accepted: int = 0
    attention_backend: str = "none"
    fast: bool = False  # answers from the engine's approximate fast mode
    batch_sizes: list[int] = field(default_factory=list)

    def absorb(self, other: OracleStats) -> None:
        """Add another session's work to this one's (a fast job's exact checks: one job,
        one set of counts for its result and the worker's metrics)."""
        self.forward_passes += other.forward_passes
        self.tokens_computed += other.tokens_computed
        self.draft_tokens_proposed += other.draft_tokens_proposed
        self.draft_tokens_accepted += other.draft_tokens_accepted
        self.batch_sizes.extend(other.batch_sizes)

    @property
    def acceptance_rate(self) -> float | None:
        if self.draft_tokens_proposed == 0:
            return None
        return self.draft_tokens_accepted / self.draft_tokens_proposed


class Oracle(Protocol):
    """A model bound to one question and one set of documents (one job).

    ``units`` is the feature list of the current game (it changes between hierarchy
    levels; it may mix whole documents with sentences or words of refined documents).
    Implementations may batch, cache and reuse work across calls within a job.
    """

    stats: OracleStats

    def answers(self, units: Sequence[Unit], masks: Masks) -> list[str]:
        """The greedy answer (decoded text, not yet normalised) for every coalition."""
        ...

    def log_probs(
        self, units: Sequence[Unit], masks: Masks, answer: str
    ) -> npt.NDArray[np.float64]:
        """log p(answer | coalition) under teacher forcing, one float per coalition."""
        ...
