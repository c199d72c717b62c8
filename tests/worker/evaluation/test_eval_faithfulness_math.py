"""The pure pieces of the faithfulness harness: seeds, tie-breaking, check coalitions,
held-out coalitions, Spearman / LDS, expected recall under random ties, paired statistics."""

import numpy as np
import pytest

from worker.evaluation import faithfulness as fx
from worker.evaluation import paired


def test_question_seeds_are_stable_and_differ_between_questions() -> None:
    assert fx.question_seed("q1") == fx.question_seed("q1")
    assert fx.question_seed("q1") != fx.question_seed("q2")
    assert fx.question_seed("q1", base=1) != fx.question_seed("q1", base=0)
    seeds = {fx.question_seed(f"id{i}") for i in range(1000)}
    assert len(seeds) == 1000
    assert all(0 <= s < 2**31 for s in seeds)


def test_ties_follow_the_shared_random_priority_not_the_given_order() -> None:
    priority = fx.tie_order(6, seed=3)
    assert sorted(priority) == list(range(6))
    scores = [1.0, 1.0, 1.0, 5.0, 1.0, 0.0]
    top = fx.top_documents(scores, priority)
    assert top[0] == 3
    assert top[-1] == 5
    tied = top[1:5]
    assert tied == sorted([0, 1, 2, 4], key=lambda i: priority[i])
    # over many seeds each tied document leads the tie about equally often
    leaders = [fx.top_documents([1.0] * 4, fx.tie_order(4, s))[0] for s in range(2000)]
    counts = np.bincount(leaders, minlength=4) / 2000
    assert np.all(np.abs(counts - 0.25) < 0.04)


def test_removal_and_keep_masks() -> None:
    top = [4, 0, 2, 1, 3]
    assert fx.mask_key(fx.removal_mask(5, top, 2)) == "01110"
    assert fx.mask_key(fx.keep_mask(5, top, 2)) == "10001"
    assert fx.mask_key(fx.from_key("10110")) == "10110"


def test_heldout_masks_are_distinct_and_avoid_what_estimators_saw() -> None:
    seen = {fx.mask_key(row) for row in fx.heldout_masks(8, 100, seed=1)}
    held = fx.heldout_masks(8, 32, seed=2, exclude=seen)
    keys = [fx.mask_key(row) for row in held]
    assert len(keys) == 32 == len(set(keys))
    assert not set(keys) & seen
    assert "1" * 8 not in keys
    assert "0" * 8 not in keys
    assert abs(held.mean() - 0.5) < 0.1
    # the same seed, the same coalitions; fewer exist than asked: all that exist
    assert np.array_equal(held, fx.heldout_masks(8, 32, seed=2, exclude=seen))
    assert len(fx.heldout_masks(3, 32, seed=0)) == 6


def test_spearman_with_ties_and_undefined_cases() -> None:
    assert fx.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert fx.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ties take average ranks: [1, 2.5, 2.5, 4] against [1, 2, 3, 4]
    assert fx.spearman([0, 1, 1, 2], [0, 1, 2, 3]) == pytest.approx(0.9486833)
    assert fx.spearman([1, 1, 1], [1, 2, 3]) is None
    assert fx.spearman([1], [1]) is None


def test_lds_of_an_exact_additive_game_is_one() -> None:
    rng = np.random.default_rng(0)
    weights = rng.normal(size=6)
    masks = fx.heldout_masks(6, 32, seed=5)
    truth = masks.astype(float) @ weights + 3.0
    assert fx.lds(weights.tolist(), masks, truth.tolist()) == pytest.approx(1.0)
    assert fx.lds((-weights).tolist(), masks, truth.tolist()) == pytest.approx(-1.0)
    assert fx.lds(weights.tolist(), masks[:0], []) is None


def test_expected_recall_counts_a_tie_by_its_share() -> None:
    scores = [1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    assert paired.expected_recall_at_k(scores, [2], 1) == pytest.approx(0.25)
    assert paired.expected_recall_at_k(scores, [2], 3) == pytest.approx(0.75)
    assert paired.expected_recall_at_k(scores, [2], 4) == pytest.approx(1.0)
    assert paired.expected_recall_at_k(scores, [5], 5) == pytest.approx(0.5)
    assert paired.expected_recall_at_k([3.0, 2.0, 1.0], [0], 1) == 1.0
    assert paired.expected_recall_at_k([3.0, 2.0, 1.0], [2], 2) == 0.0
    assert paired.expected_recall_at_k(scores, [0, 4], 4) == pytest.approx(0.5)
    assert paired.expected_recall_at_k(scores, [], 1) is None
    # a ranking that cannot tell passages apart is at chance, wherever the gold one is
    assert paired.expected_recall_at_k([0.0] * 10, [0], 1) == pytest.approx(0.1)


def test_paired_interval_covers_a_known_difference() -> None:
    rng = np.random.default_rng(1)
    base = rng.normal(size=200)
    better = base + 0.3 + rng.normal(scale=0.2, size=200)
    diff = paired.paired_difference(better.tolist(), base.tolist())
    assert diff.n == 200
    assert diff.low < 0.3 < diff.high
    assert diff.high - diff.low < 0.12
    # questions one method lacks are dropped from both sides
    gap = paired.paired_difference([1.0, None, 3.0], [0.0, 5.0, None])
    assert (gap.mean, gap.n) == (1.0, 1)


def test_bootstrap_mean_is_reproducible_and_honest_about_small_n() -> None:
    assert paired.bootstrap_mean([]).mean is None
    one = paired.bootstrap_mean([0.5])
    assert (one.mean, one.low, one.high, one.n) == (0.5, None, None, 1)
    values = [0.0, 1.0] * 20
    assert paired.bootstrap_mean(values) == paired.bootstrap_mean(values)
    interval = paired.bootstrap_mean(values)
    assert interval.low < 0.5 < interval.high


def test_exact_sign_test() -> None:
    test = paired.sign_test([1.0] * 8 + [0.5, 0.0], [0.0] * 8 + [0.5, 0.0])
    assert (test.wins, test.losses, test.ties) == (8, 0, 2)
    assert test.p_value == pytest.approx(2 / 256)
    balanced = paired.sign_test([1, 0, 1, 0], [0, 1, 0, 1])
    assert balanced.p_value == pytest.approx(1.0)
    assert paired.sign_test([1.0], [1.0]).p_value is None


def test_removal_drop_reads_the_table_after_the_top_k_leave() -> None:
    values = {"111": -1.0, "011": -4.0, "010": -7.0, "001": -6.0}
    scores, priority = [3.0, 1.0, 1.0], [0, 2, 1]  # documents 1 and 2 tie: 2 goes first
    assert fx.removal_drop(scores, priority, values, 1) == pytest.approx(3.0)  # "011"
    assert fx.removal_drop(scores, priority, values, 2) == pytest.approx(6.0)  # "010"
