"""Property tests on what users send: the request model and the segmentation it feeds.

Arbitrary JSON never raises anything but ``ValidationError`` from ``ExplainRequest``;
blank text in any unicode whitespace is a typed error at both layers; sentence and word
offsets round-trip on arbitrary unicode with sentence punctuation of several scripts;
the largest document the default limits admit segments in bounded time.
(tests/worker/shapley covers round-trips on short arbitrary text and the fixed cases.)
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from service.contract.schemas import ExplainRequest
from service.contract.settings import Settings
from worker.shapley.errors import ShapleyInputError
from worker.shapley.segment import (
    document_units,
    render,
    sentence_spans,
    sentence_units,
    word_units,
)
from worker.shapley.units import Document

FIELDS = [*ExplainRequest.model_fields, "temperature"]
WHITESPACE = (
    " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2007\u200a\u2028\u2029\u202f\u205f\u3000"  # noqa: E501
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),  # noqa: E501
    max_leaves=12,
)
request_like = st.dictionaries(
    st.sampled_from(FIELDS), json_values, max_size=len(FIELDS)
) | st.fixed_dictionaries(  # noqa: E501
    {
        "question": st.text(max_size=30),
        "documents": st.lists(
            st.text(max_size=30) | st.fixed_dictionaries({"text": json_values}), max_size=3
        ),
    },  # noqa: E501
    optional=dict.fromkeys(("levels", "budget", "refine", "model", "seed"), json_values),
)
prose = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)) | st.sampled_from(".!?。！？؟ \n\"'”"),  # noqa: E501
    min_size=1, max_size=300,
).filter(str.strip)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request_like)
def test_any_json_object_is_a_request_or_a_validation_error(payload: dict[str, Any]) -> None:
    try:
        request = ExplainRequest.model_validate(payload)
    except ValidationError:
        return
    assert request.documents  # accepted: usable by the pipeline
    assert all(d.text.strip() for d in request.document_objects())
    assert request.question.strip()


@settings(max_examples=200, deadline=None)
@given(json_values | st.text(max_size=50))
def test_any_json_text_is_a_request_or_a_validation_error(value: Any) -> None:
    raw = value if isinstance(value, str) else json.dumps(value)
    with pytest.raises(ValidationError):
        ExplainRequest.model_validate_json(raw)


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.sampled_from(WHITESPACE), max_size=20))
def test_blank_text_in_any_whitespace_is_a_typed_error(blank: str) -> None:
    with pytest.raises(ShapleyInputError, match="blank text|non-empty"):
        document_units([Document("fine"), Document(blank)])
    with pytest.raises(ValidationError, match="must not be blank|at least 1 character"):
        ExplainRequest(question="Why?", documents=[blank])
    with pytest.raises(ValidationError, match="must not be blank|at least 1 character"):
        ExplainRequest(question=blank, documents=["fine"])


@settings(max_examples=150, deadline=None)
@given(st.lists(prose, min_size=1, max_size=3))
def test_units_round_trip_and_full_masks_render_the_documents(texts: list[str]) -> None:
    docs = [Document(t, f"title {i}") for i, t in enumerate(texts)]
    sentences = [u for i in range(len(docs)) for u in sentence_units(docs, i)]
    words = [w for s in sentences for w in word_units(docs, s)]
    for unit in [*document_units(docs), *sentences, *words]:
        assert docs[unit.document].text[unit.start : unit.end] == unit.text
    for unit in [*sentences, *words]:
        assert unit.text == unit.text.strip()
        assert unit.text
    keep = np.ones(len(sentences), dtype=bool)
    shown = [(i, Document(d.text.strip(), d.title)) for i, d in enumerate(docs)]
    assert render(docs, sentences, keep) == shown  # only the outer whitespace goes
    assert render(docs, sentences, ~keep) == []


HUGE = {
    "prose": "Paris is the capital of France. It is large! Is it? ",
    "no spaces": "a",
    "dots": ". ",
    "cjk": "中文句子。",
    "abbreviations": "Dr. Mr. e.g. i.e. U.S.A. ",
}


@pytest.mark.parametrize("name", sorted(HUGE))
def test_the_largest_admitted_document_segments_in_bounded_time(name: str) -> None:
    limit = Settings().max_document_chars
    text = (HUGE[name] * limit)[:limit]
    start = time.perf_counter()
    spans = sentence_spans(text)
    assert time.perf_counter() - start < 30.0  # ~3 s measured; the 2-core machine is shared
    assert all(a < b <= c for (a, b), (c, _) in zip(spans, spans[1:], strict=False))
    covered = "".join(text[a:b] for a, b in spans)
    assert "".join(covered.split()) == "".join(text.split())
