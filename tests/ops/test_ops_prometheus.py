"""The shipped Prometheus files, checked by the real promtool (Debian package `prometheus`):
config and rules load, the alerts fire when they should (promtool unit tests), and every
dashboard query is valid PromQL."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml
from ops_assets import (
    ALERT_RULES,
    PROMETHEUS_CONFIG,
    ROOT,
    dashboard_queries,
    load_yaml,
    require_tool,
    substitute_variables,
)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("promtool"), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def test_promtool_check_config_passes_and_loads_the_rules() -> None:
    result = promtool("check", "config", str(PROMETHEUS_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout + result.stderr


def test_promtool_check_rules_passes() -> None:
    result = promtool("check", "rules", str(ALERT_RULES))
    rules = sum(len(g["rules"]) for g in load_yaml(ALERT_RULES)["groups"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {rules} rules found" in result.stdout


def test_alert_rules_fire_as_the_unit_tests_expect() -> None:
    result = promtool("test", "rules", "tests/ops/alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_severity_summary_and_description() -> None:
    for group in load_yaml(ALERT_RULES)["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
            assert set(rule["annotations"]) == {"summary", "description"}, rule["alert"]


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query (variables substituted) as a recording rule."""
    queries = dashboard_queries()
    rules = [
        {"record": f"dashboard:query_{i}:check", "expr": substitute_variables(q.expr)}
        for i, q in enumerate(queries)
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(queries)} rules found" in result.stdout


def test_scrape_jobs_cover_gateway_and_workers() -> None:
    config = load_yaml(PROMETHEUS_CONFIG)
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert {"textgenshap-gateway", "textgenshap-worker"} <= jobs
    assert config["rule_files"] == ["alerts.yml"]
    assert (PROMETHEUS_CONFIG.parent / "alerts.yml") == ALERT_RULES
