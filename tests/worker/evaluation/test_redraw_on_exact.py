"""bench/redraw_on_exact.py: a run's default request replayed on a table of every coalition."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from bench.redraw_on_exact import (  # noqa: E402
    CITE,
    cite_scores,
    default_scores,
    one_question,
    paired,
    record_tokens,
    table,
)

N = 6
WEIGHTS = np.array([3.0, -1.0, 0.5, 2.0, 0.0, 1.0])
RUN = {"model": "m", "budget": 20, "estimator": "auto"}


def table_row(interaction: float = 0.0, offset: float = 0.0) -> dict:
    """log p(y) additive in the documents (plus, optionally, a bonus when 3, 4 and 5 are
    all kept: a third-order term, which the first layer alone does not fix), the same
    answer everywhere. ContextCite's output, the logit of p(y), needs a true log p
    (``offset`` -20: p so small that the logit is log p to 1e-6)."""
    keys = [format(i, f"0{N}b") for i in range(2**N)]
    mask = {k: np.array([c == "1" for c in k]) for k in keys}
    values = {
        k: float(WEIGHTS @ m + interaction * (m[3] and m[4] and m[5]) + offset)
        for k, m in mask.items()
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


def cited_record(row: dict, tokens: int, seed: int = 7) -> dict:
    """A record with the default's draw from ``seed`` and ContextCite-64's fit on the
    package's own ablations with y of ``tokens`` tokens."""
    out = record(row, seed)
    out["methods"][CITE] = {"scores": cite_scores(row, None, tokens)}
    return out


def test_contextcite_reproduces_from_the_packages_ablations_and_redraws_from_others() -> None:
    """The record's ContextCite-64 comes back exactly from the package's masks, random
    masks give other scores, and exact Shapley's top document is 3 (2.0 plus a third of
    the interaction, above document 0's 3.0): removing it alone drops 2 + 4 = 6."""
    row = table_row(interaction=4.0, offset=-20.0)
    rec = cited_record(row, tokens=3)
    out = one_question(row, rec, RUN, seeds=3, method=CITE, tokens=3)
    assert out["reproduced"] == pytest.approx(0.0, abs=1e-9)
    assert not np.allclose(cite_scores(row, 1, 3), cite_scores(row, 2, 3))
    assert out["drop@1"]["exact"] == pytest.approx(6.0)


def test_the_token_count_that_reproduces_the_record_is_recovered() -> None:
    """The solver divides by y's token count, so a count one off fits other scores; the
    count within 3 of the encoding's that reproduces the record is the run's."""
    row = table_row(interaction=4.0, offset=-20.0)
    rec = cited_record(row, tokens=5)
    assert not np.allclose(cite_scores(row, None, 4), rec["methods"][CITE]["scores"])
    assert record_tokens(row, rec, encoded=4) == 5
    assert record_tokens(row, rec, encoded=7) == 5


def test_the_paired_table_sets_the_records_against_the_expectations() -> None:
    """A default record that ranks document 1 second trails ContextCite-64 by 3 nats of
    drop@2 in the records, while the default's expectation equals ContextCite's (both
    rank the additive game's weights), and so does exact Shapley: the gap is the draw."""
    row = table_row(offset=-20.0)
    wrong = [3.0, 2.5, 0.5, 2.0, 0.0, 1.0]
    rec = cited_record(row, tokens=2)
    rec["methods"]["shapley"]["scores"] = wrong
    ours = one_question(row, rec, RUN, seeds=3)
    theirs = one_question(row, rec, RUN, seeds=3, method=CITE, tokens=2)
    lines = paired([ours, ours], [theirs, theirs])
    assert lines[0].startswith("| drop@k (N = 2) |")
    assert lines[3].startswith("| drop@2 | -3.00 [-3.00, -3.00] | 0.00 [0.00, 0.00] | 0.00")


def test_the_replay_follows_the_runs_layered_design() -> None:
    """A run recorded before the ranking's boundary coalitions (no ``extra.layered``) is
    replayed without them; today's design spends 12 of 128 coalitions on them at 8
    documents, so the same seed gives other scores; an unknown design is refused."""
    from bench.redraw_on_exact import default_level, layered_design
    from worker.shapley import layered

    n = 8
    rng = np.random.default_rng(3)
    keys = [format(i, f"0{n}b") for i in range(2**n)]
    row = {
        "id": "q8",
        "n": n,
        "values": {k: float(rng.normal()) for k in keys},
        "answers": dict.fromkeys(keys, "y"),
    }
    run = {"model": "m", "budget": 128, "estimator": "auto"}
    before = default_level(row, run, 5)[0]
    now = default_level(row, {**run, "extra": {"layered": layered.DESIGN}}, 5)[0]
    assert sum(before) == pytest.approx(sum(now))  # both efficient
    assert not np.allclose(before, now)
    assert layered.BOUNDARIES == (2, 3)  # restored after the replay of the older design
    with pytest.raises(ValueError, match="unknown layered design"), layered_design("other"):
        pass
