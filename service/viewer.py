"""The web viewer: one page and its assets, shipped inside the package (no CDN, no build).

The gateway includes ``router``; the page itself talks only to the public API
(``/models``, ``/explain``, ``/jobs/{id}``) plus ``/examples`` served here.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import HTMLResponse, Response

from service.client.report import asset

router = APIRouter(tags=["viewer"])

# Only these files are served: a fixed list keeps path tricks out by construction.
STATIC_TYPES: dict[str, str] = {
    "app.js": "text/javascript; charset=utf-8",
    "heatmap.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}


@cache
def examples() -> list[dict[str, Any]]:
    """Bundled NaturalQuestions examples (question, answers, documents, gold_index)."""
    path = resources.files("service").joinpath("examples", "nq_examples.json")
    examples: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))["examples"]
    return examples


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def index() -> HTMLResponse:
    return HTMLResponse(asset("index.html"))


@router.get("/static/{name}", include_in_schema=False)
def static(name: str) -> Response:
    media_type = STATIC_TYPES.get(name)
    if media_type is None:
        raise HTTPException(status_code=404, detail=f"no static file named {name!r}")
    return Response(asset(name), media_type=media_type, headers={"Cache-Control": "no-cache"})


@router.get("/examples")
def list_examples() -> list[dict[str, Any]]:
    """A few real NQ-open questions with five passages each, for trying the service."""
    return examples()
