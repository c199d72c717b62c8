"""A Lasso fit of v(S) ~ b0 + sum_{i in S} b_i, for Banzhaf values from fewer coalitions
than ordinary least squares can use well.

With few complement pairs the regression in ``banzhaf.py`` is under-determined or rests
on a handful of residual degrees of freedom, and MSR (one mean per side of each feature)
leaves every other feature's effect in as noise. Documents that matter to an answer are
few, so a sparse fit recovers them from fewer rows: on the recorded NQ tables
(``bench/estimator_curve.py``, 8 documents, N = 20 per model, log p game, gemma /
smollm2; ``docs/results.md`` "Banzhaf below the regression"), at 16 coalitions the Lasso
on unpaired rows of the balanced design ranks the exact Banzhaf values at Spearman
0.75 / 0.75 where MSR reached 0.58 / 0.54 and ContextCite's own Lasso on 16 independent
draws 0.74 / 0.71; LDS 0.75 / 0.83 against 0.65 / 0.71 and 0.72 / 0.81.

The objective is scikit-learn's (and so ContextCite's): (1 / 2m) ||y - Zb||^2 +
alpha ||b||_1 on standardised columns Z, solved here by cyclic coordinate descent (a few
features, a few dozen rows: microseconds, and no scikit-learn in the worker). alpha is
``ALPHA_SHARE`` of each output column's standard deviation, so the penalty means the same
on the log p game (nats) and on the 0/1 answer game.
"""

from __future__ import annotations

import numpy as np

from worker.shapley.game import Floats, Masks

ALPHA_SHARE = 0.03
"""alpha over the column's standard deviation: 0.01 and 0.03 ranked the exact values
alike on the recorded tables, 0.1 and 0.3 shrank the second document away."""
MAX_SWEEPS = 2_000
TOLERANCE = 1e-10
"""Stop once no coefficient moves by more than this share of the values' scale."""


def lasso_fit(design: Masks, values: Floats, alpha_share: float = ALPHA_SHARE) -> Floats:
    """Coefficients (features, columns) of the Lasso fit of each column of ``values``
    (rows, columns) on the 0/1 ``design`` (rows, features), with an unpenalised intercept.
    A feature kept in every row or in none gets 0: the rows say nothing about it."""
    x = design.astype(np.float64)
    spread = x.std(axis=0)
    varies = spread > 0
    z = np.where(varies, (x - x.mean(axis=0)) / np.where(varies, spread, 1.0), 0.0)
    centred = values - values.mean(axis=0)
    alpha = alpha_share * centred.std(axis=0)
    coef = _coordinate_descent(z, centred, alpha)
    out: Floats = np.where(varies[:, None], coef / np.where(varies, spread, 1.0)[:, None], 0.0)
    return out


def _coordinate_descent(z: Floats, y: Floats, alpha: Floats) -> Floats:
    """Minimise (1 / 2m) ||y - zb||^2 + alpha ||b||_1 column by column of y at once."""
    rows, n = z.shape
    coef = np.zeros((n, y.shape[1]))
    residual = y.copy()
    norms = (z**2).sum(axis=0) / rows
    scale = max(float(np.abs(y).max(initial=0.0)), 1e-300)
    for _ in range(MAX_SWEEPS):
        moved = 0.0
        for j in np.flatnonzero(norms > 0):
            rho = z[:, j] @ residual / rows + norms[j] * coef[j]
            new = np.sign(rho) * np.maximum(np.abs(rho) - alpha, 0.0) / norms[j]
            step = new - coef[j]
            if np.any(step):
                residual -= np.outer(z[:, j], step)
                coef[j] = new
                moved = max(moved, float(np.abs(step).max()))
        if moved <= TOLERANCE * scale:
            break
    return coef
