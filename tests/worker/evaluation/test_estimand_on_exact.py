"""bench/estimand_on_exact.py: the Shapley and Banzhaf rankings, exact and as service
requests, checked for removal, sufficiency and LDS on a table of every coalition."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from bench.estimand_on_exact import COLUMNS, layers_at_most, one_question, report  # noqa: E402
from tests.worker.evaluation.test_redraw_on_exact import table_row  # noqa: E402
from worker.shapley import layered  # noqa: E402


def row_with_answers(interaction: float = 0.0) -> dict:
    """log p additive (weights 3, -1, 0.5, 2, 0, 1; p tiny), and the greedy answer y
    whenever document 3 is kept, "z" otherwise."""
    row = table_row(interaction=interaction, offset=-20.0)
    answers = {k: "y" if k[3] == "1" else "z" for k in row["values"]}
    return {**row, "model": "m", "answer": "y", "answers": answers}


def test_on_an_additive_table_every_ranking_is_the_weights_and_reads_both_games() -> None:
    """Both estimands are the weights on an additive game: every method ranks 0, 3, 5
    first. Removing document 0 keeps y (3 is kept), removing 0 and 3 loses it; document 0
    alone does not give y, 0 and 3 together do. The population LDS of an exact additive
    fit is 1 (to the ties that rounding in the last bit breaks among the 64 predictions)."""
    got = one_question(row_with_answers(), seeds=1, tokens=1)
    assert set(got) >= {"exact-shapley", "exact-banzhaf", "default", "banzhaf@32", "loo"}
    for method, checks in got.items():
        assert set(checks) == set(COLUMNS)
        assert checks["drop@2"] == pytest.approx(5.0, abs=1e-6), method
        assert (checks["flip@1"], checks["flip@2"]) == (0.0, 1.0), method
        assert (checks["keep@1"], checks["keep@2"]) == (0.0, 1.0), method
    for method in ("exact-shapley", "exact-banzhaf", "default", "banzhaf@64"):
        assert got[method]["lds"] == pytest.approx(1.0, abs=0.01), method
        assert got[method]["vs-shapley"] == pytest.approx(1.0), method


def test_a_third_order_bonus_splits_the_estimands() -> None:
    """A bonus of 6 when 3, 4 and 5 are all kept: Shapley gives each a third of it (3: 4,
    0 and 5: 3), Banzhaf each its expected share on uniform coalitions, a quarter of 6
    (3: 3.5, 0: 3, 5: 2.5). Each exact estimand agrees with itself, not with the other;
    the default enumerates 2^6 coalitions (exact Shapley), ``banzhaf@64`` too (exact
    Banzhaf)."""
    got = one_question(row_with_answers(interaction=6.0), seeds=1, tokens=1)
    assert got["exact-shapley"]["vs-shapley"] == pytest.approx(1.0)
    assert got["exact-banzhaf"]["vs-banzhaf"] == pytest.approx(1.0)
    assert got["exact-banzhaf"]["vs-shapley"] < 1.0
    for request, estimand in (("default", "exact-shapley"), ("banzhaf@64", "exact-banzhaf")):
        assert got[request] == pytest.approx(got[estimand], abs=0.01), request
    lines = report([row_with_answers(6.0)] * 2, [got, got])
    assert "m, N = 2 tables: paired differences" in lines
    assert "m, 6 documents, N = 2 tables: means" in lines
    pair = next(line for line in lines if line.startswith("| banzhaf@64 minus default |"))
    drop3 = pair.split("|")[4].strip()  # Banzhaf's top three (3, 0, 5) lose the bonus too
    assert drop3 == "0.00 [0.00, 0.00]"


def test_the_one_layer_variant_caps_layered_and_restores_it() -> None:
    """At 10 documents and 128 coalitions ``layered`` enumerates two layers (112
    coalitions); the variant enumerates one and samples the rest."""
    assert layered.full_layers(10, 128) == 2
    with layers_at_most(1):
        assert layered.full_layers(10, 128) == 1
        assert layered.full_layers(4, 128) == 1
    assert layered.full_layers(10, 128) == 2
