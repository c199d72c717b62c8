"""Document -> sentence -> word: one proper game per level (Owen-style hierarchy).

Level 1 scores whole documents. The units that *matter* are split at the next level
(documents into sentences, sentences into words); every other unit stays in the game
whole, so each level's scores still sum, per answer, to v(N) - v(empty).

A unit's *score* here is its score in the column the passage ranking reads first for the
full-context answer (``rank_by``: the log p(answer) game by default, else the answer game's
column for that answer), so the next level explains the passages the ranking names: on
the NQ records, refining by the largest score over all candidate answers (the rule before)
left the top-ranked passage unrefined in 16 of 49 gemma questions. Without that answer's
column (an empty answer), the largest score over the answers. ``top_k`` refines the ``k``
units with the largest score (ties by original order), counting only positive scores: a
unit that pushes the answer away is not where it came from. ``threshold`` refines every
unit whose lower confidence bound ``mean - stderr`` exceeds ``threshold``. If nothing matters, the
next level keeps the same units and its scores are the previous level's, with zero
new coalitions.

A requested sampling estimator whose single sample does not fit the budget at some
level (permutation or Owen over many words) is replaced by paired KernelSHAP, which
needs two coalitions per sample; the level reports the estimator that actually ran.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from worker.shapley.coalitions import CoalitionCache
from worker.shapley.errors import ShapleyInputError
from worker.shapley.estimators import estimate, fits
from worker.shapley.game import (
    LOGPROB_KEY,
    CategoricalGame,
    Game,
    Masks,
    RealGame,
    normalize_answer,
)
from worker.shapley.sampling import Estimate
from worker.shapley.segment import document_units, sentence_units, word_units
from worker.shapley.stopping import top_separated
from worker.shapley.units import Document, Level, Unit

LevelProgress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Plan:
    """How to score each level (mirrors the request fields)."""

    method: str = "shapley"
    estimator: str = "auto"
    budget: int = 128
    seed: int = 0
    target_stderr: float | None = None
    rule: str = "top_k"
    k: int = 2
    threshold: float = 0.05
    value: str = "answer"
    """'answer' (categorical game, plus log p of ``answer_text`` on the same coalitions when
    that answer is not empty) or 'logprob' (log p of ``answer_text`` alone)."""
    answer_text: str = ""
    batch_size: int = 32
    max_units: int = 1_000
    """A level with more features fails with :class:`ShapleyInputError` before sampling:
    the estimators' memory grows with n^2 (KernelSHAP) and n x answers x groups."""
    rank_by: str = "logprob"
    """The game the document level's adaptive stop (and the passage ranking) follows."""
    adaptive: bool = False
    """Stop sampling documents once the top one is separated (:mod:`stopping`)."""


@dataclass(frozen=True)
class LevelScores:
    """One level's units and their estimate (columns = ``estimate.answers``)."""

    level: Level
    units: list[Unit]
    estimate: Estimate


class Hierarchy:
    """Scores the levels of one job over a shared :class:`CoalitionCache`."""

    def __init__(
        self,
        docs: Sequence[Document],
        cache: CoalitionCache,
        plan: Plan,
        progress: LevelProgress | None = None,
        checkpoint: Callable[[], None] | None = None,
    ) -> None:
        self.docs = list(docs)
        self.cache = cache
        self.plan = plan
        self._progress = progress
        self._checkpoint = checkpoint

    def first(self) -> LevelScores:
        """Level 1: whole documents."""
        return self.score("document", document_units(self.docs), index=0)

    def next(self, previous: LevelScores, level: Level, index: int) -> LevelScores:
        """The level below ``previous``: units that matter are split, the rest kept."""
        units = self.refine(previous)
        if units == previous.units:
            if self._progress is not None:
                self._progress(level, 0, 0)
            reused = replace(previous.estimate, coalitions=0)
            return LevelScores(level, units, reused)
        return self.score(level, units, index)

    def refine(self, scores: LevelScores) -> list[Unit]:
        """The next level's units (see the module docstring for the rule)."""
        plan = self.plan
        column = ranked_column(scores.estimate, normalize_answer(plan.answer_text), plan.rank_by)
        chosen = matters(scores.estimate, plan.rule, plan.k, plan.threshold, column)
        out: list[Unit] = []
        for unit, split in zip(scores.units, chosen, strict=True):
            out.extend(self._split(unit) if split and unit.level == scores.level else [unit])
        return out

    def _split(self, unit: Unit) -> list[Unit]:
        if unit.level == "document":
            return sentence_units(self.docs, unit.document)
        if unit.level == "sentence":
            return word_units(self.docs, unit)
        return [unit]

    def score(self, level: Level, units: list[Unit], index: int) -> LevelScores:
        """Estimate one level's game over ``units``."""
        if len(units) > self.plan.max_units:
            raise ShapleyInputError(
                f"the {level} level has {len(units)} units, over max_units_per_level="
                f"{self.plan.max_units}; ask for fewer levels, a smaller refine k, or "
                "shorter documents"
            )
        game = self._game(level, units)
        plan = self.plan
        rng = np.random.default_rng([plan.seed, index])
        name = plan.estimator if fits(plan.estimator, len(units), plan.budget) else "kernel"
        column = self._ranking_column()
        rule = top_separated(column) if plan.adaptive and level == "document" else None
        est = estimate(
            game, plan.method, name, plan.budget, rng, plan.target_stderr, rule, focus=column
        )
        return LevelScores(level, units, est)

    def _ranking_column(self) -> str:
        """The output column the passage ranking reads first (adaptive stopping waits for
        its top feature to separate; estimators that choose what to evaluate first choose
        for it)."""
        joint = self.plan.value == "answer" and self._scores_log_prob()
        by_logprob = joint and self.plan.rank_by == "logprob"
        return LOGPROB_KEY if by_logprob else normalize_answer(self.plan.answer_text)

    def _scores_log_prob(self) -> bool:
        """The answer game also scores log p(answer) (not for an empty answer)."""
        return bool(normalize_answer(self.plan.answer_text))

    def _game(self, level: Level, units: list[Unit]) -> Game:
        n = len(units)
        cap = 2**n if n <= 20 else self.plan.budget
        hook = self._progress

        def progress(done: int, budget: int) -> None:
            if hook is not None:
                hook(level, done, min(budget, cap) if budget else cap)

        progress(0, self.plan.budget)

        if self.plan.value == "logprob":
            return RealGame(
                n,
                lambda m: self._log_probs(units, m),
                self.plan.batch_size,
                progress,
                self._checkpoint,
                label=normalize_answer(self.plan.answer_text),
            )
        joint = self._scores_log_prob()
        return CategoricalGame(
            n,
            lambda m: self.cache.answers(units, m),
            self.plan.batch_size,
            progress,
            self._checkpoint,
            log_prob=(lambda m: self._log_probs(units, m)) if joint else None,
        )

    def _log_probs(self, units: list[Unit], masks: Masks) -> Sequence[float]:
        return list(self.cache.log_probs(units, masks, self.plan.answer_text))


def ranked_column(est: Estimate, key: str, rank_by: str) -> int | None:
    """The estimate's column the passage ranking reads first for answer ``key``
    (:func:`worker.shapley.ranking.passage_ranking`), None if it has none."""
    if rank_by == "logprob" and LOGPROB_KEY in est.answers:
        return est.answers.index(LOGPROB_KEY)
    return est.answers.index(key) if key and key in est.answers else None


def matters(
    est: Estimate, rule: str, k: int, threshold: float, column: int | None = None
) -> list[bool]:
    """Which features to refine: top-k by positive score, or LCB > threshold; the score is
    ``column``'s, or without one the best over the answers."""
    answers = [column] if column is not None else _answer_columns(est)
    mean, stderr = est.mean[:, answers], np.nan_to_num(est.stderr[:, answers])
    if rule not in ("top_k", "threshold"):
        raise ShapleyInputError(f"unknown refine rule {rule!r}; use 'top_k' or 'threshold'")
    if rule == "threshold":
        above: list[bool] = np.any(mean - stderr > threshold, axis=1).tolist()
        return above
    best = mean.max(axis=1)
    order = np.argsort(-best, kind="stable")[:k]
    chosen = np.zeros(mean.shape[0], dtype=bool)
    chosen[order[best[order] > 0]] = True
    return [bool(x) for x in chosen]


def _answer_columns(est: Estimate) -> list[int]:
    return [j for j, a in enumerate(est.answers) if a != LOGPROB_KEY]
