"""The pure parts of bench/peers.py: exact Shapley reference, coalition order, Spearman,
and the smaller game built for slow machines."""

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

from worker.evaluation.data import load_examples

BENCH = Path(__file__).resolve().parents[3] / "bench"


sys.path.insert(0, str(BENCH))
pm = importlib.import_module("peer_methods")
peers = importlib.import_module("peers")


def test_all_masks_bit_i_keeps_unit_i() -> None:
    masks = pm.all_masks(3)
    assert masks.shape == (8, 3)
    assert masks[0].tolist() == [False, False, False]
    assert masks[1].tolist() == [True, False, False]
    assert masks[6].tolist() == [False, True, True]


def test_exact_shapley_on_known_games() -> None:
    masks = pm.all_masks(3)
    both = np.array([float(m[0] and m[1]) for m in masks])  # unanimity game on {0, 1}
    assert pm.exact_shapley(both, 3).tolist() == pytest.approx([0.5, 0.5, 0.0])
    additive = masks @ np.array([1.0, 2.0, -3.0])
    assert pm.exact_shapley(additive, 3).tolist() == pytest.approx([1.0, 2.0, -3.0])


def test_spearman_with_ties_and_flat_inputs() -> None:
    assert peers.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert peers.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert peers.spearman([1, 1, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486833)
    assert peers.spearman([1, 1, 1], [1, 2, 3]) is None


def test_shrink_keeps_gold_and_first_others_in_order() -> None:
    example = load_examples(Path(__file__).parent / "data" / "nq-10docs-6.jsonl.gz")[0]
    assert example.relevant == frozenset({9})
    small = peers.shrink(example, 5)
    assert [d.title for d in small.documents] == [
        example.documents[i].title for i in (0, 1, 2, 3, 9)
    ]
    assert small.relevant == frozenset({4})
    assert peers.shrink(example, 0) is example


def test_counted_passes_sees_direct_forward_calls_and_restores() -> None:
    import torch

    model = torch.nn.Linear(2, 2)
    with pm.counted_passes(model) as passes:
        model(torch.zeros(1, 2))
        model.forward(torch.zeros(1, 2))  # as Captum calls it
    assert passes[0] == 2
    assert "forward" not in vars(model)
    model(torch.zeros(1, 2))
    assert passes[0] == 2


def test_contextcite_peer_explains_the_answer_every_other_peer_scores() -> None:
    """The package is handed the full-context answer's ids (what Captum and shap score by
    plain teacher forcing) and never generates: its per-ablation log p of the response
    equals the plain forward's on the same prompt."""
    import torch

    from worker.engine.loading.registry import load_engine

    engine = load_engine("tiny-llama")
    example = load_examples(Path(__file__).parent / "data" / "nq-10docs-6.jsonl.gz")[0]
    example = peers.shrink(example, 3)
    args = type("Args", (), {"budget": 8, "max_new_tokens": 4})()
    job = peers._job(engine, example, "Paris", args)
    citer = pm.contextcite_citer(job, 4)
    assert citer._response_ids == job.answer_ids()
    package = torch.nn.functional.logsigmoid(torch.tensor(citer._logit_probs)).sum(dim=1)
    plain = [pm.plain_log_prob(job, m, job.answer_ids()) for m in citer._masks]
    np.testing.assert_allclose(package.numpy(), plain, atol=2e-3)
    assert len(pm.contextcite_scores(job, 4)) == 3
