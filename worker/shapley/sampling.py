"""The result type every estimator returns, and the budgeted sampling loop they share.

Budget: a hard cap on the distinct coalitions a game evaluates, the full and empty
coalitions included (they anchor efficiency). Samplers draw *groups* of coalitions
(an antithetic pair of permutations, a complement pair, one Bernoulli coalition); a
group is admitted only if all its unseen coalitions fit in what is left of the budget,
so every admitted group is complete. Memoised coalitions are free, so a sampler may
draw more groups than ``budget / group size``; to stop a game whose coalitions are all
known from sampling forever, at most ``8 * budget`` coalition rows are drawn.

With ``target_stderr`` the loop works in about eight rounds and stops as soon as the
largest standard error over features and answers is at most the target. With a
``separated`` rule it works in rounds too and stops as soon as the rule holds for the
estimate so far (adaptive stopping: the top feature is told apart from the rest).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from worker.shapley.errors import ShapleyInputError
from worker.shapley.game import Floats, Game, Masks, coalition_key

MAX_DRAW_FACTOR = 8
ROUNDS = 8
MIN_STOP_SAMPLES = 8
"""No stopping rule acts on fewer independent samples (Owen or permutation groups,
KernelSHAP pairs). Measured on 100 saturating log-probability toy games at n = 10
(``tests/worker/shapley/test_shapley_stopping.py``): stopping as soon as two Owen groups
separated the top feature by 2 stderr stopped 61 times at budget 128 and named the wrong
top feature in 13 of them; a 2-group stderr has one degree of freedom, and two groups
can even hold the same coalitions (complement pairs at q and 1 - q), a stderr of 0."""

_T_975 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26}
_T_975 |= {10: 2.23, 12: 2.18, 15: 2.13, 20: 2.09, 30: 2.04}


def critical_value(df: int) -> float:
    """Student's t 97.5% quantile for ``df`` degrees of freedom (up to 30 the table's next
    smaller entry, so never too small; past 30, 2.0, within 2% of t): the half-width of a
    95% bound in stderrs."""
    if df < 1:
        return float("inf")
    if df > 30:
        return 2.0
    return _T_975[max(k for k in _T_975 if k <= df)]


@dataclass(frozen=True)
class Estimate:
    """Scores of one game: ``mean[i, k]`` is feature i's value for answer k.

    ``answers`` are the game's normalised answers (columns); ``coalitions`` the distinct
    coalitions the game evaluated; ``samples`` the groups a sampling estimator used
    (0 for exact enumeration).
    """

    mean: Floats
    stderr: Floats
    coalitions: int
    answers: list[str]
    method: str
    samples: int = 0
    stopped_early: bool = False
    """Sampling stopped before the budget because its stopping rule held."""


class Sampler(Protocol):
    """One sampling estimator: what a group of coalitions is and how groups combine."""

    name: str

    def group_cost(self, n: int) -> int:
        """Unseen coalitions one group typically needs (sizes the draws)."""
        ...

    def draw(self, rng: np.random.Generator, n: int, count: int) -> Masks:
        """``count`` groups as a bool array (count, group size, n)."""
        ...

    def finish(self, groups: Masks, values: Floats, anchor: Floats) -> tuple[Floats, Floats]:
        """(mean, stderr), each (n, K), from groups, their values (G, g, K) and
        ``anchor`` = [v(N), v(empty)] (2, K)."""
        ...


def anchors(n: int) -> Masks:
    """The full and the empty coalition."""
    return np.stack([np.ones(n, dtype=np.bool_), np.zeros(n, dtype=np.bool_)])


def evaluate_anchors(game: Game, budget: int) -> Floats:
    """Evaluate N and the empty set within budget; return v(N) - v(empty) per answer."""
    masks = anchors(game.n_features)
    if game.evaluations + game.unseen(masks) > budget:
        raise ShapleyInputError(
            f"budget {budget} cannot hold the full and empty coalitions; use budget >= 2"
        )
    game.evaluate(masks)
    return total_of(game)


def total_of(game: Game) -> Floats:
    """v(N) - v(empty) per answer, over the answers the game knows now."""
    values = game.values(anchors(game.n_features))
    total: Floats = values[0] - values[1]
    return total


def admit(game: Game, groups: Masks, budget: int) -> int:
    """How many leading groups fit, whole, in what is left of the budget."""
    room = budget - game.evaluations
    fresh: set[bytes] = set()
    for g, group in enumerate(groups):
        new = {k for k in map(coalition_key, group) if not game.known(k)} - fresh
        if len(fresh) + len(new) > room:
            return g
        fresh |= new
    return len(groups)


Separated = Callable[[list[str], Floats, Floats, float], bool]
"""A stopping rule on (output labels, mean, stderr, critical value) of the estimate so
far; the critical value is the bound's half-width in stderrs for the samples drawn."""


def run_sampler(
    game: Game,
    sampler: Sampler,
    budget: int,
    rng: np.random.Generator,
    target_stderr: float | None = None,
    separated: Separated | None = None,
) -> Estimate:
    """Draw groups until the budget is spent, the target standard error is reached or
    the ``separated`` rule holds."""
    n = game.n_features
    game.budget = budget
    evaluate_anchors(game, budget)
    cost = sampler.group_cost(n)
    rounds = target_stderr is not None or separated is not None
    round_size = max(2, budget // (ROUNDS * cost)) if rounds else None
    kept: list[Masks] = []
    drawn = 0
    stopped = False
    while drawn < MAX_DRAW_FACTOR * budget:
        count = max(1, (budget - game.evaluations) // cost)
        count = min(count, round_size) if round_size is not None else count
        batch = sampler.draw(rng, n, count)
        drawn += batch.shape[0] * batch.shape[1]
        fits = admit(game, batch, budget)
        if fits:
            game.evaluate(batch[:fits].reshape(-1, n))
            kept.append(batch[:fits])
        if fits < count:
            break
        if game.evaluations >= budget:
            continue  # spent (the next draw fits nothing): a rule holding now saves nothing
        if round_size is not None and _reached(game, sampler, kept, target_stderr, separated):
            stopped = True
            break
    return replace(_finish(game, sampler, kept, budget), stopped_early=stopped)


def _reached(
    game: Game,
    sampler: Sampler,
    kept: list[Masks],
    target: float | None,
    separated: Separated | None,
) -> bool:
    samples = sum(len(k) for k in kept)
    if samples < MIN_STOP_SAMPLES:
        return False
    mean, stderr = _combine(game, sampler, kept)
    if target is not None and np.max(stderr, initial=0.0) <= target:
        return True
    z = critical_value(samples - 1)
    return separated is not None and separated(list(game.outputs), mean, stderr, z)


def _finish(game: Game, sampler: Sampler, kept: list[Masks], budget: int) -> Estimate:
    if not kept:
        raise ShapleyInputError(
            f"budget {budget} is too small for one sample of the {sampler.name} estimator "
            f"over {game.n_features} features (needs about {sampler.group_cost(game.n_features)}"
            " more coalitions); raise the budget or use the kernel estimator"
        )
    mean, stderr = _combine(game, sampler, kept)
    samples = sum(len(k) for k in kept)
    return Estimate(mean, stderr, game.evaluations, list(game.outputs), sampler.name, samples)


def _combine(game: Game, sampler: Sampler, kept: list[Masks]) -> tuple[Floats, Floats]:
    groups = np.concatenate(kept)
    shape = groups.shape
    values = game.values(groups.reshape(-1, shape[2])).reshape(shape[0], shape[1], -1)
    return sampler.finish(groups, values, game.values(anchors(shape[2])))


def iid_stats(contrib: Floats) -> tuple[Floats, Floats]:
    """Mean and standard error over independent samples (G, n, K).

    With a single sample there is no spread to measure; the standard error is then NaN
    (unknown), which the result reports as null with the reason, never a placeholder.
    """
    mean = contrib.mean(axis=0)
    if contrib.shape[0] < 2:
        return mean, np.full(mean.shape, np.nan)
    stderr = contrib.std(axis=0, ddof=1) / np.sqrt(contrib.shape[0])
    return mean, stderr
