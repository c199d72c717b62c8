"""The Grafana dashboards and provisioning: valid dashboard JSON (the keys Grafana needs,
unique ids, a sane grid), every query bound to the provisioned datasource, the panels
the issue asks for, and only metrics from the brief's contract."""

from __future__ import annotations

from itertools import combinations
from typing import Any

import pytest
from ops_assets import (
    CONTRACT_GATEWAY,
    CONTRACT_WORKER,
    PROVISIONING,
    SYNTHETIC_METRICS,
    all_panels,
    dashboards,
    load_yaml,
    metric_names,
    referenced_metrics,
)

BOARDS = dashboards()
DASHBOARD_KEYS = {
    "uid",
    "title",
    "panels",
    "schemaVersion",
    "templating",
    "time",
    "tags",
    "version",
    "annotations",
    "refresh",
}
PANEL_TYPES = {"row", "timeseries", "stat", "table"}


def _datasource_uid() -> str:
    (source,) = load_yaml(PROVISIONING / "datasources" / "prometheus.yml")["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    return source["uid"]


def test_two_dashboards_with_distinct_uids() -> None:
    assert set(BOARDS) == {"textgenshap-overview.json", "textgenshap-workers.json"}
    uids = [board["uid"] for board in BOARDS.values()]
    assert uids == ["textgenshap-overview", "textgenshap-workers"]


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_dashboard_has_the_keys_grafana_needs(name: str) -> None:
    board = BOARDS[name]
    assert set(board) >= DASHBOARD_KEYS
    assert 36 <= board["schemaVersion"] <= 41
    assert len(board["uid"]) <= 40
    assert board["annotations"]["list"][0]["builtIn"] == 1


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_panel_ids_are_unique_and_types_known(name: str) -> None:
    panels = all_panels(BOARDS[name])
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    assert {panel["type"] for panel in panels} <= PANEL_TYPES


def _cells(panel: dict[str, Any]) -> set[tuple[int, int]]:
    pos = panel["gridPos"]
    return {
        (x, y)
        for x in range(pos["x"], pos["x"] + pos["w"])
        for y in range(pos["y"], pos["y"] + pos["h"])
    }


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_panels_fit_the_24_column_grid_without_overlap(name: str) -> None:
    panels = BOARDS[name]["panels"]
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] >= 0, panel["title"]
        assert pos["w"] > 0, panel["title"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
    for a, b in combinations(panels, 2):
        assert not _cells(a) & _cells(b), (a["title"], b["title"])


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_every_query_uses_the_provisioned_prometheus(name: str) -> None:
    expected = {"type": "prometheus", "uid": _datasource_uid()}
    for panel in all_panels(BOARDS[name]):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == expected, panel["title"]
        assert panel["targets"], panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == expected, panel["title"]
            assert target["expr"].strip(), panel["title"]


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_variables_query_prometheus_and_send_regex_for_all(name: str) -> None:
    variables = BOARDS[name]["templating"]["list"]
    assert variables
    for variable in variables:
        assert variable["type"] == "query"
        assert variable["datasource"]["uid"] == _datasource_uid()
        assert variable["allValue"] == ".*"
        assert variable["includeAll"] is True


def test_dashboard_provider_reads_the_mounted_directory() -> None:
    (provider,) = load_yaml(PROVISIONING / "dashboards" / "textgenshap.yml")["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/etc/grafana/dashboards"


def _metrics_of(name: str) -> set[str]:
    board = BOARDS[name]
    return {
        m for p in all_panels(board) for t in p.get("targets", []) for m in metric_names(t["expr"])
    }


def test_overview_shows_traffic_latency_queue_errors_and_jobs() -> None:
    assert _metrics_of("textgenshap-overview.json") == CONTRACT_GATEWAY - {
        "textgenshap_http_request_duration_seconds_sum",
        "textgenshap_http_request_duration_seconds_count",
    } | {
        "up",
        "textgenshap_worker_stage_duration_seconds_bucket",
        "textgenshap_worker_stage_duration_seconds_sum",
        "textgenshap_worker_stage_duration_seconds_count",
    }


def test_workers_dashboard_shows_every_worker_metric() -> None:
    worker_only = CONTRACT_WORKER - {
        "textgenshap_worker_stage_duration_seconds_bucket",
        "textgenshap_worker_stage_duration_seconds_sum",
        "textgenshap_worker_stage_duration_seconds_count",
    }
    assert _metrics_of("textgenshap-workers.json") == worker_only


def test_dashboards_and_alerts_use_only_contract_metrics() -> None:
    allowed = CONTRACT_GATEWAY | CONTRACT_WORKER | SYNTHETIC_METRICS
    unknown = {name: uses for name, uses in referenced_metrics().items() if name not in allowed}
    assert unknown == {}
