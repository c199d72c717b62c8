"""bench/eval_on_exact.py: an evaluation's scores judged on a table of every coalition."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from bench.eval_on_exact import drop_table, rows  # noqa: E402

N = 4
WEIGHTS = np.array([2.0, -1.0, 0.5, 0.0])


def table_row(answer: str = "Paris") -> dict:
    keys = [format(i, f"0{N}b") for i in range(2**N)]
    values = {k: float(WEIGHTS @ np.array([c == "1" for c in k])) for k in keys}
    return {"model": "m", "id": "q1", "n": N, "answer": answer, "values": values}


def record(answer: str = "paris.") -> dict:
    return {
        "id": "q1",
        "full_answer": answer,
        "heldout": ["1100", "0110", "1011", "0001", "1010"],
        "methods": {
            "given": {"scores": [4.0, 3.0, 2.0, 1.0]},
            "shapley": {"scores": WEIGHTS.tolist()},
            "backwards": {"scores": (-WEIGHTS).tolist()},
        },
    }


def test_scores_are_judged_on_every_coalition_and_the_held_out_ones() -> None:
    [row] = rows([table_row()], {"q1": record()})
    assert row["same_answer"]
    methods = row["methods"]
    assert "given" not in methods
    for name in ("shapley", "exact-shapley", "exact-banzhaf"):
        assert methods[name]["lds_all"] == pytest.approx(1.0)
        assert methods[name]["lds_heldout"] == pytest.approx(1.0)
    assert methods["backwards"]["lds_all"] == pytest.approx(-1.0)


def test_a_record_explaining_another_answer_is_left_out() -> None:
    [row] = rows([table_row("Lyon")], {"q1": record()})
    assert row == {"id": "q1", "same_answer": False}
    assert rows([table_row()], {}) == []


def test_removal_drops_are_read_from_the_table_and_paired_with_leave_one_out() -> None:
    """On the additive table, dropping the top document (weight 2) loses 2 nats, the top
    two (2 and 0.5) 2.5; the backwards ranking removes the negative one first and gains."""
    entry = record()
    entry["tie_priority"] = [0, 1, 2, 3]
    entry["methods"]["loo"] = {"scores": WEIGHTS.tolist()}
    [row] = rows([table_row()], {"q1": entry})
    assert row["methods"]["shapley"]["drop@1"] == pytest.approx(2.0)
    assert row["methods"]["shapley"]["drop@2"] == pytest.approx(2.5)
    assert row["methods"]["backwards"]["drop@1"] == pytest.approx(-1.0)
    lines = drop_table([row])
    backwards = next(line for line in lines if line.startswith("| backwards |"))
    assert backwards.split(" | ")[4] == "-3.00"  # drop@1 minus leave-one-out's


def test_a_table_that_scored_another_token_sequence_is_left_out() -> None:
    """Same answer text, but the record's own coalitions read other log p(y) from the
    model than the table holds (a table scoring y's text encoding, not its own ids)."""
    entry = record()
    entry["coalitions"] = {"1111": {"answer": "Paris", "logp": 2.5}}  # the table: 1.5
    assert rows([table_row()], {"q1": entry}) == [{"id": "q1", "same_answer": False}]
    entry["coalitions"] = {"1111": {"answer": "Paris", "logp": 1.5 + 1e-4}, "0000": {"logp": 0.0}}
    [row] = rows([table_row()], {"q1": entry})
    assert row["same_answer"]
