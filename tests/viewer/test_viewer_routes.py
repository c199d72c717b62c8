"""The viewer's routes on the live gateway: the page, its assets, the bundled examples."""

from __future__ import annotations

import gzip
import json

import httpx
import pytest

from worker.evaluation.paths import nq_file

NQ_DEV = nq_file(10)


def test_index_page_links_only_local_assets(gateway: str) -> None:
    response = httpx.get(f"{gateway}/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert '<script src="/static/heatmap.js"></script>' in page
    assert '<script src="/static/app.js"></script>' in page
    assert '<link rel="stylesheet" href="/static/style.css">' in page
    assert "http://" not in page
    assert "https://" not in page


@pytest.mark.parametrize(
    ("name", "media_type", "marker"),
    [
        ("app.js", "text/javascript", "/jobs/"),
        ("heatmap.js", "text/javascript", "function heatColour"),
        ("style.css", "text/css", "mark.feat"),
    ],
)
def test_static_assets_are_served_with_their_types(
    gateway: str, name: str, media_type: str, marker: str
) -> None:
    response = httpx.get(f"{gateway}/static/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(media_type)
    assert marker in response.text


@pytest.mark.parametrize(
    "name", ["index.html", "nope.js", "..%2Fviewer.py", "..%2F..%2Fpyproject.toml"]
)
def test_only_known_assets_are_served(gateway: str, name: str) -> None:
    assert httpx.get(f"{gateway}/static/{name}").status_code == 404


def test_examples_are_real_nq_dev_questions_with_their_gold_passage(gateway: str) -> None:
    served = httpx.get(f"{gateway}/examples").json()
    assert 3 <= len(served) <= 5
    with gzip.open(NQ_DEV, "rt", encoding="utf-8") as lines:
        source = {r["id"]: r for r in map(json.loads, lines)}
    for example in served:
        original = source[example["id"]]
        assert example["question"] == original["question"]
        assert example["answers"] == original["answers"]
        assert len(example["documents"]) == 5
        gold = example["documents"][example["gold_index"]]
        assert gold == original["documents"][original["gold_index"]]
        assert all(d in original["documents"] for d in example["documents"])
