"""Request bodies the rule-based fake engine answers, and checks on results."""

from __future__ import annotations

from typing import Any

DOCUMENTS = [
    {"title": "France", "text": "Paris is the capital of France. It is large."},
    {"title": "Germany", "text": "Berlin is the capital of Germany. It is old."},
    "Rome is the capital of Italy. It has a long history.",
]


def explain_body(**changes: Any) -> dict[str, Any]:
    """An exact (enumerated) two-level explanation over three short documents."""
    body: dict[str, Any] = {
        "question": "What is the capital of France?",
        "documents": DOCUMENTS,
        "levels": ["document", "sentence"],
        "estimator": "exact",
        "budget": 64,
        "model": "fake",
    }
    return {**body, **changes}


def texts(body: dict[str, Any]) -> list[str]:
    return [d["text"] if isinstance(d, dict) else d for d in body["documents"]]


def check_result(result: dict[str, Any], body: dict[str, Any]) -> None:
    """A well-formed result: offsets point into the documents, one score per candidate,
    a passage ranking over all documents, and efficiency per level (each level's scores
    sum, per candidate, to the same v(N) - v(empty) in {-1, 0, 1})."""
    docs = texts(body)
    n_candidates = len(result["candidates"])
    assert n_candidates >= 1
    assert sorted(result["passage_ranking"]) == list(range(len(docs)))
    assert [level["level"] for level in result["levels"]] == body["levels"]
    totals = []
    for level in result["levels"]:
        for feature in level["features"]:
            text = docs[feature["document"]][feature["start"] : feature["end"]]
            assert feature["text"] == text
            assert len(feature["score"]) == len(feature["stderr"]) == n_candidates
        totals.append(
            [round(sum(f["score"][i] for f in level["features"]), 6) for i in range(n_candidates)]
        )
    assert all(total == totals[0] for total in totals), totals
    assert all(value in (-1.0, 0.0, 1.0) for value in totals[0]), totals
    assert result["stats"]["coalitions"] > 0
    assert result["stats"]["forward_passes"] > 0
