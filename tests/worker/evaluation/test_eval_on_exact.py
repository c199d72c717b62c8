"""bench/eval_on_exact.py: an evaluation's scores judged on a table of every coalition."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from bench.eval_on_exact import rows  # noqa: E402

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
