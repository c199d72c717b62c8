"""The bench's exact values from whole tables equal the textbook sums."""

import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from bench.exact_tables import (  # noqa: E402
    all_masks,
    exact_banzhaf,
    exact_shapley,
    leave_one_in,
    leave_one_out,
    table_of,
)
from worker.evaluation.faithfulness import mask_key  # noqa: E402


def random_table(n: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    return {mask_key(m): float(rng.normal()) for m in all_masks(n)}


def shapley_by_sum(values: dict[str, float], n: int) -> list[float]:
    phi = [0.0] * n
    for key, value in values.items():
        size = key.count("1")
        for i in (i for i in range(n) if key[i] == "0"):
            weight = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
            phi[i] += weight * (values[key[:i] + "1" + key[i + 1 :]] - value)
    return phi


def banzhaf_by_sum(values: dict[str, float], n: int) -> list[float]:
    beta = [0.0] * n
    for key, value in values.items():
        for i in (i for i in range(n) if key[i] == "0"):
            beta[i] += (values[key[:i] + "1" + key[i + 1 :]] - value) / 2 ** (n - 1)
    return beta


@pytest.mark.parametrize("n", [3, 5])
def test_exact_values_equal_the_textbook_sums_on_random_tables(n: int) -> None:
    table = random_table(n, seed=n)
    assert exact_shapley(table, n) == pytest.approx(shapley_by_sum(table, n), abs=1e-9)
    assert exact_banzhaf(table, n) == pytest.approx(banzhaf_by_sum(table, n), abs=1e-9)


def test_leave_one_out_and_in_read_the_table() -> None:
    weights = np.array([1.0, -2.0, 0.5])
    table = {mask_key(m): float(weights @ m) + 3.0 for m in all_masks(3)}
    assert leave_one_out(table, 3) == pytest.approx(weights)
    assert leave_one_in(table, 3) == pytest.approx(weights)
    table["101"] = 0.0  # an interaction only leave-one-out of document 1 sees
    assert leave_one_out(table, 3) == pytest.approx([1.0, 2.5, 0.5])
    assert leave_one_in(table, 3) == pytest.approx(weights)


def test_all_masks_lists_every_coalition_once_the_full_one_first() -> None:
    masks = all_masks(4)
    assert masks.shape == (16, 4)
    assert masks[0].all()
    assert len({mask_key(m) for m in masks}) == 16


def test_the_answer_table_is_one_where_the_normalised_answer_is_the_full_contexts() -> None:
    record = {"n": 2, "values": {"11": -1.0, "10": -2.0, "01": -3.0, "00": -4.0}}
    record["answers"] = {"11": "The Paris.", "10": "paris", "01": "Lyon", "00": ""}
    assert table_of(record, "answer") == {"11": 1.0, "10": 1.0, "01": 0.0, "00": 0.0}
    assert table_of(record, "logprob") == record["values"]
