"""What a coalition costs the causal engine: which stored slots it reuses, what it computes.

A plan is pure data shared by the session (which makes and re-makes plans against the
prefix store) and the two batch layouts (``batching.tree``, ``batching.linear``) that run them.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

Slots = npt.NDArray[np.int64]
NO_SLOTS: Slots = np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class CoalitionPlan:
    """One coalition's work: reuse the stored slots ``keep``, then compute ``new`` from
    position ``start``; afterwards the first ``stored`` of them join the prefix store.
    ``prompt`` is what the answer is conditioned on (fast mode: the full context);
    ``game`` and ``mask`` say which coalition of which unit list it is (for draft votes);
    ``placed``: the positions the ``keep`` slots take in this coalition's prompt, their
    keys moved there (fast mode: every removed document's gap closed); None: the
    positions they were stored at."""

    key: Hashable
    prompt: tuple[int, ...]
    keep: Slots
    new: tuple[int, ...]
    start: int
    stored: int = 0
    game: Hashable = None
    mask: npt.NDArray[np.bool_] | None = None
    placed: Slots | None = None

    @property
    def reach(self) -> int:
        return len(self.keep)

    @property
    def length(self) -> int:
        return self.start + len(self.new)

    @property
    def branch_key(self) -> Hashable:
        """Plans with equal keys see the same stored slots (and may share nodes)."""
        return self.keep.tobytes()

    def extended(self, tokens: tuple[int, ...]) -> CoalitionPlan:
        return replace(self, new=self.new + tokens)
