"""bench/redraw_on_exact.py: a run's default request replayed on a table of every coalition."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from bench.redraw_on_exact import default_scores, one_question, table  # noqa: E402

N = 6
WEIGHTS = np.array([3.0, -1.0, 0.5, 2.0, 0.0, 1.0])
RUN = {"model": "m", "budget": 20, "estimator": "auto"}


def table_row(interaction: float = 0.0) -> dict:
    """log p(y) additive in the documents (plus, optionally, a bonus when 3, 4 and 5 are
    all kept: a third-order term, which the first layer alone does not fix), the same
    answer everywhere."""
    keys = [format(i, f"0{N}b") for i in range(2**N)]
    mask = {k: np.array([c == "1" for c in k]) for k in keys}
    values = {
        k: float(WEIGHTS @ m + interaction * (m[3] and m[4] and m[5])) for k, m in mask.items()
    }
    return {"id": "q", "n": N, "values": values, "answers": dict.fromkeys(keys, "y")}


def record(row: dict, seed: int = 7, scores: list[float] | None = None) -> dict:
    own = scores if scores is not None else default_scores(row, RUN, seed)
    return {
        "id": "q",
        "seed": seed,
        "tie_priority": list(range(N)),
        "methods": {"shapley": {"scores": own}},
    }


def test_the_records_seed_reproduces_its_scores_and_an_additive_table_has_no_draw() -> None:
    """Below 2^6 coalitions the default samples, yet on an additive game every draw gives
    the exact values (the first layer alone fixes them): record, redraws and exact agree,
    and the drops are the top weights' sums."""
    row = table_row()
    out = one_question(row, record(row), RUN, seeds=3)
    assert out["reproduced"] == pytest.approx(0.0, abs=1e-9)
    for k, expected in ((1, 3.0), (2, 5.0), (3, 6.0)):
        drop = out[f"drop@{k}"]
        for source in ("record", "redraws", "worst redraw", "exact"):
            assert drop[source] == pytest.approx(expected, abs=1e-6)


def test_a_record_from_another_draw_shows_its_cost_against_the_redraws() -> None:
    """A record whose scores rank document 1 (weight -1) second is not what its seed gives:
    the check says so, and its drop@2 falls 3 nats short of the redraws' (3 - 1 = 2 against
    3 + 2 = 5)."""
    row = table_row()
    wrong = [3.0, 2.5, 0.5, 2.0, 0.0, 1.0]
    out = one_question(row, record(row, scores=wrong), RUN, seeds=3)
    assert out["reproduced"] == pytest.approx(3.5)
    assert out["drop@2"]["record"] == pytest.approx(2.0)
    assert out["drop@2"]["redraws"] == pytest.approx(5.0, abs=1e-6)
    lines = table([out, out])
    assert any(line.startswith("| drop@2 | -3.00") for line in lines)


def test_redraws_differ_where_the_game_has_interactions() -> None:
    """With an interaction the sampled middle matters: different seeds give different
    scores, and the record still reproduces exactly from its own seed."""
    row = table_row(interaction=4.0)
    first, second = default_scores(row, RUN, 1), default_scores(row, RUN, 2)
    assert not np.allclose(first, second)
    assert one_question(row, record(row, seed=1), RUN, seeds=2)["reproduced"] == 0.0
