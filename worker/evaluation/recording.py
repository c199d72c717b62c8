"""An Oracle that passes every call through and notes the coalitions it was asked about.

The harness wraps each method's session in one, so the held-out coalitions of the LDS can
be drawn from those that no estimator ever saw.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from worker.evaluation.faithfulness import mask_key
from worker.shapley.oracle import Masks, Oracle, OracleStats
from worker.shapley.units import Unit


class RecordingOracle:
    """Delegates to ``inner``; ``seen`` holds the document-level keys of every coalition."""

    def __init__(self, inner: Oracle) -> None:
        self.inner = inner
        self.stats: OracleStats = inner.stats
        self.seen: set[str] = set()

    def answers(self, units: Sequence[Unit], masks: Masks) -> list[str]:
        self._note(units, masks)
        return self.inner.answers(units, masks)

    def log_probs(
        self, units: Sequence[Unit], masks: Masks, answer: str
    ) -> npt.NDArray[np.float64]:
        self._note(units, masks)
        return self.inner.log_probs(units, masks, answer)

    def _note(self, units: Sequence[Unit], masks: Masks) -> None:
        if any(u.level != "document" for u in units):
            return  # only document-level games compete with the held-out coalitions
        for row in np.asarray(masks, dtype=bool):
            self.seen.add(mask_key(row))
