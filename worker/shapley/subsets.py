"""Enumeration of all coalitions, for the exact estimators."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from worker.shapley.errors import ShapleyInputError
from worker.shapley.game import Masks

MAX_EXACT_FEATURES = 20
"""2**20 coalitions is the most exact enumeration will ever attempt."""


def check_exact_budget(n: int, budget: int) -> None:
    """Exact enumeration needs all 2**n coalitions inside the budget."""
    if n > MAX_EXACT_FEATURES:
        raise ShapleyInputError(
            f"exact enumeration supports at most {MAX_EXACT_FEATURES} features (got {n}); "
            "use a sampling estimator"
        )
    if 2**n > budget:
        raise ShapleyInputError(
            f"exact enumeration of {n} features needs {2**n} coalitions but the budget is "
            f"{budget}; raise the budget or use a sampling estimator"
        )


def all_coalitions(n: int) -> tuple[npt.NDArray[np.int64], Masks]:
    """Codes 0..2**n - 1 (bit i = feature i kept) and the matching bool masks."""
    codes = np.arange(2**n, dtype=np.int64)
    masks = ((codes[:, None] >> np.arange(n)) & 1).astype(np.bool_)
    return codes, masks
