"""A self-contained HTML report of one explanation: the viewer's heat-map in one file.

The file inlines the viewer's ``style.css`` and ``heatmap.js`` and the result as JSON,
so switching answer and level works offline exactly as on the web page. The first
view (the top answer at the finest level) is also rendered here in Python, so the
report is readable with scripts disabled and searchable as plain HTML.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from html import escape
from importlib import resources

from service.contract.results import ExplainResult, Feature, LevelResult, check_where, fast_note
from service.contract.schemas import DocumentIn, ExplainRequest

Key = tuple[int, int, int]  # (document, start, end) of a unit

# PuOr, the same stops as heatmap.js: orange = against the answer, purple = for it.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (179, 88, 6),
    (241, 163, 64),
    (247, 247, 247),
    (153, 142, 195),
    (84, 39, 136),
)


@cache
def asset(name: str) -> str:
    """Text of a file in ``service/static``, the viewer's and the report's shared CSS and
    JS (read once per process)."""
    return resources.files("service").joinpath("static", name).read_text(encoding="utf-8")


def heat_colour(t: float) -> str:
    """CSS colour of a score scaled to [-1, 1]; identical to ``heatColour`` in heatmap.js."""
    x = (max(-1.0, min(1.0, t)) + 1.0) * 2.0
    i = min(3, math.floor(x))
    f = x - i
    low, high = PALETTE[i], PALETTE[i + 1]
    rgb = [math.floor(a + (b - a) * f + 0.5) for a, b in zip(low, high, strict=True)]
    return f"rgb({rgb[0]}, {rgb[1]}, {rgb[2]})"


def _fmt(x: float) -> str:
    return ("+" if x >= 0 else "\u2212") + f"{abs(x):.3f}"


def plus_minus(stderr: float | None) -> str:
    """'± 0.012', or a plain word where the estimator could not measure a standard error."""
    return " (stderr unknown)" if stderr is None else f" \u00b1 {stderr:.3f}"


def _normalise(text: str) -> str:
    kept = "".join(c if c.isalnum() else " " for c in text.lower())
    return " ".join(kept.split())


def default_answer(result: ExplainResult) -> int:
    """Index of the candidate matching the full-context answer (else the top candidate)."""
    target = _normalise(result.answer)
    matches = [i for i, c in enumerate(result.candidates) if _normalise(c.text) == target]
    return matches[0] if matches else 0


def unit_kinds(result: ExplainResult) -> dict[Key, str]:
    """What each unit is, named by the coarsest level listing it (as heatmap.js does)."""
    kinds: dict[Key, str] = {}
    for level in result.levels:
        name = "whole document" if level.level == "document" else level.level
        for f in level.features:
            kinds.setdefault((f.document, f.start, f.end), name)
    return kinds


def segments(text: str, features: Sequence[Feature]) -> list[tuple[str, Feature | None]]:
    """Pieces of one document: plain text between features, one piece per feature."""
    out: list[tuple[str, Feature | None]] = []
    at = 0
    for f in sorted(features, key=lambda f: f.start):
        if f.start > at:
            out.append((text[at : f.start], None))
        out.append((text[f.start : f.end], f))
        at = max(at, f.end)
    if at < len(text):
        out.append((text[at:], None))
    return out


def _mark(piece: str, f: Feature, answer: int, scale: float, kind: str) -> str:
    score, stderr = f.score[answer], f.stderr[answer]
    t = score / scale
    uncertain = " uncertain" if stderr is not None and abs(score) <= stderr else ""
    ink = "#fff" if abs(t) > 0.7 else "#111"
    return (
        f'<mark class="feat{uncertain}" tabindex="0" data-document="{f.document}" '
        f'data-start="{f.start}" data-end="{f.end}" data-score="{score!r}" '
        f'data-stderr="{stderr!r}" title="score {_fmt(score)}{plus_minus(stderr)} ({kind})" '
        f'style="background-color: {heat_colour(t)}; color: {ink};">{escape(piece)}</mark>'
    )


@dataclass(frozen=True)
class _View:
    """One selection of the heat-map: which answer, which level, how colours scale."""

    result: ExplainResult
    answer: int
    level: LevelResult

    @property
    def scale(self) -> float:
        scores = (abs(f.score[self.answer]) for f in self.level.features)
        return max(scores, default=0.0) or 1.0


def _document(index: int, doc: DocumentIn, view: _View, kinds: dict[Key, str]) -> str:
    features = [f for f in view.level.features if f.document == index]
    scale = view.scale
    body = "".join(
        _mark(piece, f, view.answer, scale, kinds[(f.document, f.start, f.end)])
        if f
        else escape(piece)
        for piece, f in segments(doc.text, features)
    )
    title = f'<span class="doc-title"> \u2014 {escape(doc.title)}</span>' if doc.title else ""
    ranking = view.result.passage_ranking
    rank = ranking.index(index) + 1 if index in ranking else 0
    tied = " (tied)" if any(index in group for group in view.result.tied_passages) else ""
    badge = f'<span class="doc-rank">rank {rank}{tied}</span>' if rank else ""
    badge += "".join(
        f'<span class="doc-score">document score {_fmt(f.score[view.answer])}'
        f"{plus_minus(f.stderr[view.answer])}</span>"
        for f in view.result.levels[0].features
        if f.document == index
    )
    return (
        f'<article class="doc" data-document="{index}"><h3 class="doc-head">'
        f'Document {index + 1}{title}{badge}</h3><p class="doc-text">{body}</p></article>'
    )


def _answers(result: ExplainResult, answer: int) -> str:
    items = "".join(
        f'<li><button type="button" class="answer" data-index="{i}" '
        f'aria-pressed="{str(i == answer).lower()}"><span class="answer-text">'
        f'{escape(c.text or "(empty answer)")}</span><span class="answer-score">score '
        f"{_fmt(c.score)}</span></button></li>"
        for i, c in enumerate(result.candidates)
    )
    return f'<h2>Answers</h2><ol class="answers">{items}</ol>'


def render_static_view(documents: Sequence[DocumentIn], result: ExplainResult) -> str:
    """The heat-map for the default answer at the finest level, as plain HTML."""
    view = _View(result, default_answer(result), result.levels[-1])
    kinds = unit_kinds(result)
    docs = "".join(_document(i, d, view, kinds) for i, d in enumerate(documents))
    return f'{_answers(result, view.answer)}{_checks(result)}<div class="documents">{docs}</div>'


def _checks(result: ExplainResult) -> str:
    """The ranking's checks on the model, worded as the live viewer words them."""
    if not result.checks:
        return ""
    items = []
    for c in result.checks:
        where = check_where(c, first=1).capitalize()
        moved = "" if c.logprob_drop is None else f", log p(answer) {_fmt(-c.logprob_drop)}"
        verdict = "answer changed" if c.answer_changed else "same answer"
        items.append(f"<li>{where}: \u201c{escape(c.answer)}\u201d ({verdict}{moved})</li>")
    note = fast_note(result.stats)
    lead = f'<p class="fast-note">{escape(note[0].upper() + note[1:])}.</p>' if note else ""
    return f'<h2>Checks on the model</h2>{lead}<ul class="checks">{"".join(items)}</ul>'


def _script_json(value: object) -> str:
    """JSON safe inside a <script> element (no '</' can close it early)."""
    return json.dumps(value, ensure_ascii=False).replace("</", "<\\/")


def render_report(request: ExplainRequest, result: ExplainResult) -> str:
    """A complete HTML document for ``request``'s documents explained by ``result``."""
    documents = request.document_objects()
    data = {
        "documents": [d.model_dump() for d in documents],
        "result": result.model_dump(mode="json"),
    }
    meta = (
        f"model {escape(result.stats.model)} \u00b7 {result.stats.coalitions} coalitions \u00b7 "
        f"levels {escape(', '.join(level.level for level in result.levels))}"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>textgenshap report: {escape(request.question)}</title>
<style>{asset("style.css")}</style></head>
<body><header class="page-head"><h1>textgenshap report</h1>
<p class="tagline">Question: {escape(request.question)}</p>
<p class="report-meta">Answer: <strong>{escape(result.answer)}</strong> \u00b7 {meta}</p></header>
<main><section id="result" class="panel">{render_static_view(documents, result)}</section></main>
<script type="application/json" id="report-data">{_script_json(data)}</script>
<script>{asset("heatmap.js")}</script>
<script>HeatMap.mount(document.getElementById("result"),
  JSON.parse(document.getElementById("report-data").textContent));</script>
</body></html>
"""
