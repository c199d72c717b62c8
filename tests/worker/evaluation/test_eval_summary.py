"""Summaries of hand-made records: means, counts, groups and the Markdown table."""

import pytest

from worker.evaluation.summary import summarize, to_markdown


def _method(ranking: list[int], recall: dict[str, float | None], seconds: float) -> dict:
    return {
        "ranking": ranking,
        "recall": recall,
        "seconds": seconds,
        "coalitions": 10,
        "forward_passes": 20,
    }


def _record(
    qid: str,
    *,
    lang: str,
    relevant: bool | None,
    abstained: bool,
    conc: dict | None,
    shap_r1: float | None,
    correct: bool | None,
) -> dict:
    return {
        "id": qid,
        "lang": lang,
        "context_relevant": relevant,
        "full_correct": correct,
        "abstained": abstained,
        "methods": {
            "given": _method([0, 1], {"1": 0.0, "3": 1.0}, 0.0),
            "shapley": _method([1, 0], {"1": shap_r1, "3": shap_r1}, 2.0),
        },
        "explanation": {"top_correct": correct, "concentration": conc, "offsets_ok": True},
    }


RECORDS = [
    _record(
        "a",
        lang="en",
        relevant=True,
        abstained=False,
        conc={"entropy": 0.2, "top1_share": 0.9},
        shap_r1=1.0,
        correct=True,
    ),
    _record(
        "b",
        lang="en",
        relevant=False,
        abstained=True,
        conc={"entropy": 0.8, "top1_share": 0.3},
        shap_r1=0.0,
        correct=False,
    ),
    _record("c", lang="ja", relevant=False, abstained=True, conc=None, shap_r1=None, correct=None),
    {"id": "d", "error": {"type": "ContextTooLong", "message": "too long"}},
]


def test_summary_means_and_counts() -> None:
    s = summarize(RECORDS, ks=(1, 3))
    assert s["n"] == 3
    assert s["errors"] == 1
    assert s["accuracy"]["full_context"] == {"mean": 0.5, "n": 2}
    shap = s["methods"]["shapley"]
    assert shap["recall"]["1"] == {"mean": 0.5, "n": 2}
    assert shap["seconds"] == {"mean": 2.0, "n": 3}
    assert s["methods"]["given"]["recall"]["3"] == {"mean": 1.0, "n": 3}


def test_summary_groups_by_context_label_and_language() -> None:
    s = summarize(RECORDS, ks=(1,))
    ctx = s["context"]
    assert ctx["relevant"]["abstention"] == {"mean": 0.0, "n": 1}
    assert ctx["not_relevant"]["abstention"] == {"mean": 1.0, "n": 2}
    assert ctx["not_relevant"]["entropy"] == {"mean": 0.8, "n": 1}
    assert ctx["all"]["top1_share"]["mean"] == pytest.approx(0.6)
    assert set(s["by_lang"]) == {"en", "ja"}
    assert s["by_lang"]["ja"]["all"]["n"] == 1


def test_markdown_has_one_row_per_method_and_group() -> None:
    md = to_markdown(summarize(RECORDS, ks=(1, 3)), "NQ")
    assert md.startswith("## NQ\n")
    assert "| shapley | 0.500 | 0.500 | 2.00 | 10.0 | 20.0 |" in md
    assert "| given | 0.000 | 1.000 | 0.00 | 10.0 | 20.0 |" in md
    assert "| en | not_relevant | 1 | 1.000 | 0.800 | 0.300 |" in md
    assert "| ja | not_relevant | 1 | 1.000 | – | – |" in md


def test_abstention_is_judged_from_the_stored_answer_with_the_current_phrases() -> None:
    # a run made before "document does not contain" was a phrase stored abstained=False
    old = _record("e", lang="sw", relevant=False, abstained=False, conc=None, shap_r1=None,
                  correct=None)  # fmt: skip
    old["full_answer"] = "No, the document does not contain a sentence that refers to Kibera"
    answered = _record("f", lang="sw", relevant=False, abstained=True, conc=None, shap_r1=None,
                       correct=None)  # fmt: skip
    answered["full_answer"] = "Mto Po ni mto mrefu"
    ctx = summarize([old, answered], ks=(1,))["context"]
    assert ctx["not_relevant"]["abstention"] == {"mean": 0.5, "n": 2}
