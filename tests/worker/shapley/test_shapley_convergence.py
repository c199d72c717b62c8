"""Statistical behaviour of the sampled estimators: 1/sqrt(budget) and honest stderr."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest

from tests.worker.shapley.toy_games import categorical_game, random_categorical
from worker.shapley.estimators import estimate
from worker.shapley.ranking import align
from worker.shapley.sampling import Estimate

N = 12
FN = random_categorical(N, 3, seed=21)
ESTIMATORS = [("shapley", "permutation"), ("shapley", "owen"), ("shapley", "kernel")]
ALL = [*ESTIMATORS, ("banzhaf", "auto")]


@cache
def exact(method: str) -> Estimate:
    return estimate(categorical_game(FN, N, batch_size=4096), method, "exact", budget=2**N)


def errors(method: str, estimator: str, budget: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    truth = exact(method)
    got = estimate(categorical_game(FN, N), method, estimator, budget=budget, seed=seed)
    mean, stderr = align(got, truth.answers)
    return mean - truth.mean, stderr


@pytest.mark.parametrize(("method", "estimator"), ALL)
def test_error_shrinks_like_one_over_sqrt_budget(method: str, estimator: str) -> None:
    budgets = np.array([120, 240, 480, 960])
    rmse = [
        np.sqrt(np.mean([np.mean(errors(method, estimator, int(b), s)[0] ** 2) for s in range(6)]))
        for b in budgets
    ]
    slope = np.polyfit(np.log(budgets), np.log(rmse), 1)[0]
    assert -0.85 <= slope <= -0.25, (slope, rmse)


@pytest.mark.parametrize(("method", "estimator"), ALL)
def test_truth_within_three_reported_stderr(method: str, estimator: str) -> None:
    hits = []
    for seed in range(20):
        error, stderr = errors(method, estimator, 300, 100 + seed)
        hits.append(np.abs(error) <= 3 * stderr + 1e-9)
    coverage = np.mean(hits)
    assert coverage >= 0.95, coverage
