"""A small explanation with known offsets, shared by the viewer tests."""

from __future__ import annotations

from service.contract.results import ContextCheck, ExplainResult, FastAgreement
from service.contract.schemas import ExplainRequest

DOC0 = "Paris is the capital. It is in France."
DOC1 = "Berlin <b>is</b> big 🐻."


def _feature(doc: int, start: int, end: int, text: str, score: list[float]) -> dict[str, object]:
    return {
        "document": doc,
        "start": start,
        "end": end,
        "text": text,
        "score": score,
        "stderr": [0.05, 0.05],
    }


def sample_request() -> ExplainRequest:
    return ExplainRequest(
        question="What is the capital of France?",
        documents=[{"title": "France & co", "text": DOC0}, DOC1],
        levels=["document", "sentence", "word"],
    )


def sample_result() -> ExplainResult:
    """Document 0 refined into sentences, its first sentence into words; doc 1 stays whole."""
    whole1 = _feature(1, 0, len(DOC1), DOC1, [-0.1, 0.4])
    levels = [
        {
            "level": "document",
            "coalitions": 4,
            "estimator": "exact",
            "features": [_feature(0, 0, len(DOC0), DOC0, [0.8, -0.3]), whole1],
        },
        {
            "level": "sentence",
            "coalitions": 8,
            "estimator": "exact",
            "features": [
                _feature(0, 0, 21, "Paris is the capital.", [0.6, -0.2]),
                _feature(0, 22, 38, "It is in France.", [0.2, -0.1]),
                whole1,
            ],
        },
        {
            "level": "word",
            "coalitions": 32,
            "estimator": "owen",
            "features": [
                _feature(0, 0, 5, "Paris", [0.5, -0.2]),
                _feature(0, 6, 8, "is", [0.0, 0.01]),
                _feature(0, 9, 12, "the", [0.04, 0.0]),
                _feature(0, 13, 21, "capital.", [0.06, -0.01]),
                _feature(0, 22, 38, "It is in France.", [0.2, -0.1]),
                whole1,
            ],
        },
    ]
    return ExplainResult.model_validate(
        {
            "answer": "Paris",
            "candidates": [
                {"text": "paris", "frequency": 0.7, "score": 0.8},
                {"text": "berlin", "frequency": 0.3, "score": 0.4},
            ],
            "levels": levels,
            "passage_ranking": [0, 1],
            "stats": {
                "model": "fake",
                "coalitions": 44,
                "forward_passes": 44,
                "tokens_computed": 1000,
                "speculative_acceptance_rate": None,
                "attention_backend": "none",
                "seconds": {"document": 0.1},
            },
        }
    )


def with_candidates(result: ExplainResult, n: int) -> ExplainResult:
    """``result`` with ``n`` candidates; the added ones score 0 everywhere (rare answers)."""
    extra = n - len(result.candidates)
    data = result.model_dump()
    data["candidates"] += [
        {"text": f"rare {i}", "frequency": 0.01, "score": 0.0} for i in range(extra)
    ]
    for level in data["levels"]:
        for feature in level["features"]:
            feature["score"] = feature["score"] + [0.0] * extra
            feature["stderr"] = feature["stderr"] + [0.0] * extra
    return ExplainResult.model_validate(data)


CHECKS = [
    ContextCheck(kind="remove", documents=[0], answer="Berlin", answer_changed=True,
                 logprob_drop=2.5),
    ContextCheck(kind="keep", documents=[0], answer="paris", answer_changed=False,
                 logprob_drop=None),
]  # fmt: skip
"""Two checks of the sample's ranking: the top passage removed, then alone."""


def fast_result(result: ExplainResult) -> ExplainResult:
    """``result`` as a fast-mode job returns it: two checks, run exact, and fast mode's
    agreement with them (5 of the 7 checked contexts)."""
    agreed = FastAgreement(coalitions=7, answers_agree=5 / 7, logprob_mean_abs_diff=0.4)
    stats = result.stats.model_copy(update={"fast": True, "fast_agreement": agreed})
    return result.model_copy(update={"checks": CHECKS, "stats": stats})
