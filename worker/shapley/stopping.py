"""Adaptive stopping at the document level (TextGenSHAP's confidence bounds): sampling
stops once the top document is told apart from every other one, so an easy question
spends a fraction of the budget and a hard one all of it."""

from __future__ import annotations

import numpy as np

from worker.shapley.game import Floats
from worker.shapley.sampling import Separated

Z = 2.0
"""Half-width of a confidence bound in standard errors (about 95%) when the sampling loop
gives none (it passes Student's t for the samples drawn so far)."""


def top_separated(column: str) -> Separated:
    """A rule: the top feature's lower bound (mean - z stderr) in output ``column`` clears
    the upper bound of every other feature. Never holds while a standard error is unknown
    or the column has not appeared."""

    def rule(outputs: list[str], mean: Floats, stderr: Floats, z: float = Z) -> bool:
        if column not in outputs or mean.shape[0] < 2:
            return False
        j = outputs.index(column)
        m, s = mean[:, j], stderr[:, j]
        if not np.all(np.isfinite(s)):
            return False
        top = int(np.argmax(m))
        others = np.delete(np.arange(len(m)), top)
        return bool(m[top] - z * s[top] > np.max(m[others] + z * s[others]))

    return rule
