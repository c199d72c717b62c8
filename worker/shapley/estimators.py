"""One entry point for every estimator: validates the request and dispatches.

``estimator="auto"`` enumerates exactly when all 2**n coalitions fit the budget; else it
runs ``layered`` (every feature alone and left out, then whole layers of sizes k and n-k
while they fit, the rest in sampled complement pairs) when the budget holds its first
layer (2n + 2), its partial first layer from n + 2 coalitions (every feature left out, as
many alone as fit: paired KernelSHAP, which ran there before, ranked below leave-one-out
itself on the recorded games), and paired KernelSHAP below that. Why layered: on the
recorded NQ games with every coalition evaluated on the real models
(``bench/estimator_curve.py``, 6 and 8 documents) it ranked the exact Shapley values of
the log p game best per coalition at every budget measured (8 documents: Spearman 0.87 /
0.93 at 18 coalitions, gemma / smollm2, where Owen sampling, the previous default, reached
0.77 at 32 and ContextCite's surrogate 0.88 / 0.87 at 64 ablations); on the answer game it
is ahead of Owen, not always of ContextCite.
It can lose on games dominated by high-order interactions (on synthetic saturating
log-mixture games at n = 10, Owen's Spearman 0.98 against its 0.91 at budget 128,
``tests/worker/shapley/test_shapley_stopping.py`` holds such games); the real ones do not
look like that. One Owen group is never run by ``auto``.
For ``method="banzhaf"`` ``auto`` enumerates by the same rule, else fits the least-squares
regression on complement pairs of a balanced design when the budget holds n + 3 pairs, and
a Lasso on its unpaired rows below that (``worker/shapley/banzhaf.py`` and ``lasso.py``
say why).
"""

from __future__ import annotations

import numpy as np

from worker.shapley.banzhaf import (
    BanzhafLasso,
    BanzhafRegression,
    BanzhafSampler,
    banzhaf_exact,
    regression_draws,
)
from worker.shapley.errors import ShapleyInputError
from worker.shapley.exact import shapley_exact
from worker.shapley.game import Game
from worker.shapley.kernel import KernelSampler
from worker.shapley.layered import partial_cost, shapley_layered
from worker.shapley.owen import OwenSampler
from worker.shapley.permutation import PermutationSampler
from worker.shapley.sampling import (
    Estimate,
    Sampler,
    Separated,
    evaluate_anchors,
    run_sampler,
)
from worker.shapley.subsets import MAX_EXACT_FEATURES

METHODS = ("shapley", "banzhaf")
AUTO_MEANS = "layered"
"""What ``auto`` runs when it neither enumerates nor falls back to the kernel (recorded by
evaluation runs, so that a run never mixes two meanings of ``auto``)."""
ESTIMATORS = ("auto", "exact", "permutation", "owen", "kernel", "layered")
_SAMPLERS: dict[str, type[Sampler]] = {
    "permutation": PermutationSampler,
    "owen": OwenSampler,
    "kernel": KernelSampler,
    "banzhaf-msr": BanzhafSampler,
    "banzhaf-regression": BanzhafRegression,
    "banzhaf-lasso": BanzhafLasso,
}
"""A fresh sampler per estimate (the regression holds the rest of its design block)."""


def estimate(
    game: Game,
    method: str = "shapley",
    estimator: str = "auto",
    budget: int = 128,
    seed: int | np.random.Generator = 0,
    target_stderr: float | None = None,
    separated: Separated | None = None,
    focus: str | None = None,
) -> Estimate:
    """Scores of every feature for every answer of ``game``, within ``budget`` coalitions.
    ``focus``: the output column the caller ranks by (where an estimator must choose what
    to evaluate first, it chooses for that column).

    Reproducible: the same game, arguments and seed give the same estimate.
    """
    _check(method, estimator, budget, target_stderr)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    n = game.n_features
    if n == 1:
        return _single(game, budget, method)
    choice = resolve(method, estimator, n, budget)
    if choice == "exact":
        return shapley_exact(game, budget)
    if choice == "banzhaf-exact":
        return banzhaf_exact(game, budget)
    if choice == "layered":
        return shapley_layered(game, budget, rng, target_stderr, separated, focus)
    return run_sampler(game, _SAMPLERS[choice](), budget, rng, target_stderr, separated)


def resolve(method: str, estimator: str, n: int, budget: int) -> str:
    """The concrete estimator ``auto`` (or an explicit choice) stands for."""
    exact_fits = n <= MAX_EXACT_FEATURES and 2**n <= budget
    if method == "banzhaf":
        if exact_fits:
            return "banzhaf-exact"
        return "banzhaf-regression" if budget - 2 >= regression_draws(n) else "banzhaf-lasso"
    if estimator != "auto":
        return estimator
    if exact_fits:
        return "exact"
    return AUTO_MEANS if budget >= partial_cost(n) else "kernel"


def fits(estimator: str, n: int, budget: int) -> bool:
    """Whether one sample of ``estimator`` (plus the full and empty coalitions) fits."""
    if estimator == "layered":
        return budget >= partial_cost(n)
    sampler = _SAMPLERS.get(estimator)
    return sampler is None or budget >= 2 + sampler().group_cost(n)


def _check(method: str, estimator: str, budget: int, target_stderr: float | None) -> None:
    if method not in METHODS:
        raise ShapleyInputError(f"unknown method {method!r}; choose one of {METHODS}")
    if estimator not in ESTIMATORS:
        raise ShapleyInputError(f"unknown estimator {estimator!r}; choose one of {ESTIMATORS}")
    if budget < 1:
        raise ShapleyInputError(f"budget must be >= 1 coalition (got {budget})")
    if target_stderr is not None and not target_stderr > 0:
        raise ShapleyInputError(f"target_stderr must be > 0 (got {target_stderr})")


def _single(game: Game, budget: int, method: str) -> Estimate:
    """One feature: its score is v(N) - v(empty) exactly, for Shapley and Banzhaf alike."""
    game.budget = budget
    total = evaluate_anchors(game, budget)
    name = "exact" if method == "shapley" else "banzhaf-exact"
    mean = total[None, :]
    return Estimate(mean, np.zeros_like(mean), game.evaluations, list(game.outputs), name)
