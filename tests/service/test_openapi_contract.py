"""``openapi.yaml`` is the published contract: it must equal what the app generates."""

from __future__ import annotations

from pathlib import Path

import yaml

from service.app import openapi_schema

ROOT = Path(__file__).resolve().parents[2]


def test_committed_openapi_equals_the_generated_schema() -> None:
    committed = yaml.safe_load((ROOT / "openapi.yaml").read_text(encoding="utf-8"))
    generated = openapi_schema()
    assert committed == generated, "regenerate: python -m service.openapi > openapi.yaml"


def test_the_contract_documents_every_public_route() -> None:
    paths = openapi_schema()["paths"]
    assert {
        ("/explain", "post"),
        ("/jobs/{job_id}", "get"),
        ("/jobs/{job_id}", "delete"),
        ("/models", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
    } <= {(path, method) for path, ops in paths.items() for method in ops}
    post = paths["/explain"]["post"]
    assert set(post["responses"]) == {"202", "401", "413", "422", "429", "503"}
    assert post["parameters"][0]["name"] == "idempotency-key"
