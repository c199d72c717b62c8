"""Values read from a whole recorded table: every coalition's value, keyed by its mask as
"1"/"0" text (``worker.evaluation.faithfulness.mask_key``), as ``bench/exact_vs_loo.py``
records them. Exact Shapley and Banzhaf values come from the service's own enumerator, so
every bench scores estimators against the code the service runs (its exactness is tested
against the textbook sums in ``tests/worker/evaluation/test_exact_tables.py``)."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from worker.evaluation.faithfulness import mask_key
from worker.shapley.estimators import estimate
from worker.shapley.game import RealGame, normalize_answer

Table = dict[str, float]


def all_masks(n: int) -> np.ndarray:
    """Every coalition of n documents, the full one first."""
    rows = [[bool(b) for b in bits] for bits in itertools.product([1, 0], repeat=n)]
    return np.array(rows, dtype=bool)


def table_of(record: dict[str, Any], game: str) -> Table:
    """A recorded table's values for ``game``: log p(y) (``logprob``), or for ``answer``
    1 where the coalition's greedy answer is the full context's after QA normalisation."""
    if game == "logprob":
        return {k: float(v) for k, v in record["values"].items()}
    target = normalize_answer(record["answers"]["1" * record["n"]])
    return {k: float(normalize_answer(a) == target) for k, a in record["answers"].items()}


def _game(table: Table, n: int) -> RealGame:
    return RealGame(n, lambda masks: [table[mask_key(m)] for m in masks])


def exact_shapley(table: Table, n: int) -> np.ndarray:
    return estimate(_game(table, n), estimator="exact", budget=2**n).mean[:, 0]


def exact_banzhaf(table: Table, n: int) -> np.ndarray:
    return estimate(_game(table, n), method="banzhaf", budget=2**n).mean[:, 0]


def leave_one_out(table: Table, n: int) -> np.ndarray:
    """v(N) - v(N without i): how much the full context loses without each document."""
    full = "1" * n
    return np.array([table[full] - table[full[:i] + "0" + full[i + 1 :]] for i in range(n)])


def leave_one_in(table: Table, n: int) -> np.ndarray:
    """v({i}) - v(empty): what each document does alone."""
    empty = "0" * n
    return np.array([table[empty[:i] + "1" + empty[i + 1 :]] - table[empty] for i in range(n)])
