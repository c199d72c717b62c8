"""The HTML report: marked spans with the right offsets, scores and colours, inlined assets."""

from __future__ import annotations

import json
import re

from service.client.report import (
    default_answer,
    heat_colour,
    render_report,
    render_static_view,
    segments,
)
from service.contract.results import ContextCheck, ExplainResult
from service.contract.schemas import ExplainRequest
from tests.viewer.sample import fast_result

MARK = re.compile(r"<mark ([^>]*)>([^<]*)</mark>")
ATTR = re.compile(r'([\w-]+)="([^"]*)"')


def _marks(html: str) -> list[tuple[dict[str, str], str]]:
    return [(dict(ATTR.findall(attrs)), text) for attrs, text in MARK.findall(html)]


def test_heat_colour_is_puor_with_white_centre() -> None:
    assert heat_colour(0.0) == "rgb(247, 247, 247)"
    assert heat_colour(1.0) == "rgb(84, 39, 136)"
    assert heat_colour(-1.0) == "rgb(179, 88, 6)"
    assert heat_colour(5.0) == heat_colour(1.0)
    assert heat_colour(0.5) == "rgb(153, 142, 195)"
    assert heat_colour(0.25) == "rgb(200, 195, 221)"


def test_segments_leave_uncovered_text_plain(sample_result: ExplainResult) -> None:
    words = [f for f in sample_result.levels[2].features if f.document == 0]
    pieces = segments("Paris is the capital. It is in France.", words)
    assert [(text, f is not None) for text, f in pieces] == [
        ("Paris", True),
        (" ", False),
        ("is", True),
        (" ", False),
        ("the", True),
        (" ", False),
        ("capital.", True),
        (" ", False),
        ("It is in France.", True),
    ]


def test_default_answer_matches_the_full_context_answer(sample_result: ExplainResult) -> None:
    assert default_answer(sample_result) == 0
    flipped = sample_result.model_copy(update={"answer": "Berlin!"})
    assert default_answer(flipped) == 1


def test_report_marks_word_level_features_for_the_top_answer(
    sample_request: ExplainRequest, sample_result: ExplainResult
) -> None:
    html = render_report(sample_request, sample_result)
    marks = _marks(html)
    assert [text for _, text in marks] == [
        "Paris",
        "is",
        "the",
        "capital.",
        "It is in France.",
        "Berlin &lt;b&gt;is&lt;/b&gt; big 🐻.",
    ]
    assert [float(a["data-score"]) for a, _ in marks] == [0.5, 0.0, 0.04, 0.06, 0.2, -0.1]
    assert [a["data-start"] + ":" + a["data-end"] for a, _ in marks][:2] == ["0:5", "6:8"]
    first, whole = marks[0][0], marks[-1][0]
    assert first["title"] == "score +0.500 ± 0.050 (word)"
    assert first["style"] == "background-color: rgb(84, 39, 136); color: #fff;"
    assert whole["style"] == f"background-color: {heat_colour(-0.2)}; color: #111;"
    assert "uncertain" in marks[1][0]["class"]  # |0.0| <= stderr 0.05
    assert marks[0][0]["class"] == "feat"


def test_report_is_self_contained_and_carries_the_result(
    sample_request: ExplainRequest, sample_result: ExplainResult
) -> None:
    html = render_report(sample_request, sample_result)
    assert "<link" not in html
    assert 'src="' not in html
    assert "HeatMap.mount" in html
    assert "function heatColour" in html
    assert "mark.feat" in html  # style.css inlined
    payload = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', html)
    assert payload is not None
    data = json.loads(payload.group(1))
    assert data["documents"][0] == {
        "title": "France & co",
        "text": sample_request.documents[0].text,
    }
    assert data["documents"][1]["text"] == "Berlin <b>is</b> big 🐻."
    assert ExplainResult.model_validate(data["result"]) == sample_result
    assert "<\\/b>" in payload.group(1)  # a '</' in the data cannot close the script
    assert 'Document 1<span class="doc-title"> — France &amp; co</span>' in html
    assert '<span class="doc-rank">rank 2</span>' in html
    assert '<span class="doc-score">document score −0.100 ± 0.050</span>' in html


def test_the_static_view_words_the_checks_as_the_viewer_does(
    sample_request: ExplainRequest, sample_result: ExplainResult
) -> None:
    checks = [
        ContextCheck(kind="remove", documents=[0, 1], answer="<Berlin>", answer_changed=True,
                     logprob_drop=2.5),
        ContextCheck(kind="keep", documents=[0], answer="paris", answer_changed=False,
                     logprob_drop=None),
    ]  # fmt: skip
    documents = sample_request.document_objects()
    html = render_static_view(documents, sample_result.model_copy(update={"checks": checks}))
    assert (
        '<h2>Checks on the model</h2><ul class="checks">'
        "<li>Without documents 1, 2: “&lt;Berlin&gt;” (answer changed, log p(answer) −2.500)</li>"
        "<li>Only documents 1: “paris” (same answer)</li></ul>"
    ) in html
    assert "Checks on the model" not in render_static_view(documents, sample_result)


NOTE = (
    "Fast mode (approximate) scored the passages; these checks ran on the exact model, where "
    "fast mode gave the same answer on 5 of their 7 contexts"
)


def test_a_fast_jobs_checks_say_they_ran_exact(
    sample_request: ExplainRequest, sample_result: ExplainResult
) -> None:
    documents = sample_request.document_objects()
    html = render_static_view(documents, fast_result(sample_result))
    assert (
        f'<h2>Checks on the model</h2><p class="fast-note">{NOTE}.</p><ul class="checks">' in html
    )
    assert "fast-note" not in render_static_view(
        documents, fast_result(sample_result).model_copy(update={"stats": sample_result.stats})
    )
