"""Coalitions spent where the ranking is open: the top-k boundaries, by paired differences.

The regression of ``layered`` estimates every score from the same middle sample, and at the
default budget that sample is small (at 8 documents, 27 of the 91 complement pairs of sizes
3-5; at 10, 8 pairs of the 386 in sizes 3-7). The scores come out accurate on average but
the 2nd and 3rd documents swap in some draws. On the exact tables of 52 NQ questions not
picked by outcome (docs/results.md, "Every unselected table") that cost the default's
top-2 removal 0.11-0.19 nats against exact Shapley, which is level there with ContextCite
at 64 ablations.

The difference of two Shapley values needs far fewer coalitions than either value. Over
T, the subsets of the other n - 2 features,

    phi_a - phi_b = 1/(n - 1) * sum over t = 0 .. n-2 of  mean_{|T| = t} [v(T + a) - v(T + b)]

(each size t weighs 1/(n - 1); the two coalitions of a term share T, so most of their
noise cancels). Sizes whose coalitions the enumerated layers hold are summed exactly from
the memo at no cost; each other size gets one T drawn uniformly, 2 coalitions. The pair
keeps the sum of its two scores (efficiency holds) and takes the new difference:
unbiased, like the regression, with the variance at the boundary moved from the middle
sample's to the paired draws'. Only the ranking column (``focus``) changes, and only the
two scores at each boundary; their stderr stays the regression's.
"""

from __future__ import annotations

import itertools

import numpy as np

from worker.shapley.game import Floats, Game, Masks

BOUNDARIES = (2, 3)
"""Refined in order: between ranks 2 and 3 (what top-2 removal and top-2 keep read), then
between 3 and 4 (top-3)."""


def open_sizes(n: int, layers: int) -> list[int]:
    """Sizes t of T (0 .. n-2) whose coalitions T + a (size t + 1) no enumerated layer
    holds: layer k holds sizes k and n - k."""
    held = set(range(1, layers + 1)) | {n - k for k in range(1, layers + 1)}
    return [t for t in range(n - 1) if t + 1 not in held]


def boundary_cost(n: int, layers: int) -> int:
    """Coalitions one boundary needs: one T per open size, two coalitions each."""
    return 2 * len(open_sizes(n, layers))


def _with(n: int, members: tuple[int, ...], extra: int) -> Masks:
    row = np.zeros((1, n), dtype=np.bool_)
    row[0, [*members, extra]] = True
    return row


def pair_difference(
    game: Game, focus: str, a: int, b: int, layers: int, rng: np.random.Generator
) -> float:
    """phi_a - phi_b in the output column labelled ``focus``: exact on the enumerated
    sizes, one paired draw on each open one (the module docstring's identity). Every size's
    coalitions go to the engine in one call (the draws do not depend on the values), so a
    boundary costs one batch, not one per size. The column is found by label after the
    evaluation: a coalition can bring a new answer, which adds a column before the log p
    one."""
    n = game.n_features
    others = [d for d in range(n) if d not in (a, b)]
    drawn = set(open_sizes(n, layers))
    pairs = []
    for t in range(n - 1):
        if t in drawn:
            sets = [tuple(rng.choice(others, size=t, replace=False).tolist())]
        else:
            sets = list(itertools.combinations(others, t))
        with_a = np.concatenate([_with(n, s, a) for s in sets])
        with_b = np.concatenate([_with(n, s, b) for s in sets])
        pairs.append((with_a, with_b))
    game.evaluate(np.concatenate([m for pair in pairs for m in pair]))
    column = game.outputs.index(focus)
    means = [
        float((game.values(with_a)[:, column] - game.values(with_b)[:, column]).mean())
        for with_a, with_b in pairs
    ]
    return float(np.mean(means))


def refine_boundaries(
    game: Game,
    mean: Floats,
    focus: str,
    column: int,
    layers: int,
    rng: np.random.Generator,
    boundaries: tuple[int, ...] = BOUNDARIES,
) -> Floats:
    """``mean`` with the scores of its ``column`` (the game's output ``focus``) at each
    boundary k (ranks k and k + 1) given the paired difference; the pair's sum is kept."""
    out = mean.copy()
    scores = out[:, column]
    for k in boundaries:
        if k >= len(scores):
            break
        order = np.argsort(-scores, kind="stable")
        a, b = int(order[k - 1]), int(order[k])
        difference = pair_difference(game, focus, a, b, layers, rng)
        centre = (scores[a] + scores[b]) / 2
        scores[a], scores[b] = centre + difference / 2, centre - difference / 2
    return out
