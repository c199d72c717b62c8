"""Typed errors of the Shapley core.

Bad input to the core is a caller's mistake, not a model failure: it is a
``ValueError`` subclass so that it maps to a client error wherever it surfaces, and
its message says what a valid value looks like.
"""

from __future__ import annotations


class ShapleyInputError(ValueError):
    """Invalid input to segmentation, games, estimators or the hierarchy."""
