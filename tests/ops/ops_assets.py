"""The shipped deployment files, read the way Grafana and Prometheus read them.

One place knows where the dashboards, alert rules and configs live, how a Grafana query
becomes plain PromQL (template variables substituted) and which metric names a PromQL
expression reads, so the static and the live tests check the same things.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
PROMETHEUS_CONFIG = DOCKER / "prometheus" / "prometheus.yml"
ALERT_RULES = DOCKER / "prometheus" / "alerts.yml"
DASHBOARD_DIR = DOCKER / "grafana" / "dashboards"
PROVISIONING = DOCKER / "grafana" / "provisioning"
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

# What Grafana puts in place of its built-in interval variables for a short test window;
# the scrape interval of the live test is 1 s, so 30 s holds plenty of samples.
GRAFANA_BUILTINS = {"__rate_interval": "30s", "__interval": "5s", "__range": "60s"}

# The metric contract of the brief (sample names as scraped): gateway, then worker.
CONTRACT_GATEWAY = frozenset(
    {
        "textgenshap_http_requests_total",
        "textgenshap_http_request_duration_seconds_bucket",
        "textgenshap_http_request_duration_seconds_sum",
        "textgenshap_http_request_duration_seconds_count",
        "textgenshap_jobs_submitted_total",
        "textgenshap_jobs_finished_total",
        "textgenshap_queue_depth",
        "textgenshap_queue_pending",
        "textgenshap_rejected_requests_total",
    }
)
CONTRACT_WORKER = frozenset(
    {
        "textgenshap_worker_jobs_total",
        "textgenshap_worker_stage_duration_seconds_bucket",
        "textgenshap_worker_stage_duration_seconds_sum",
        "textgenshap_worker_stage_duration_seconds_count",
        "textgenshap_worker_coalitions_total",
        "textgenshap_worker_forward_passes_total",
        "textgenshap_worker_tokens_computed_total",
        "textgenshap_worker_batch_size_bucket",
        "textgenshap_worker_batch_size_sum",
        "textgenshap_worker_batch_size_count",
        "textgenshap_worker_draft_tokens_proposed_total",
        "textgenshap_worker_draft_tokens_accepted_total",
        "textgenshap_worker_speculative_acceptance_ratio",
        "textgenshap_worker_info",
        "textgenshap_worker_busy",
        "textgenshap_worker_memory_bytes",
        "textgenshap_worker_model_load_seconds",
    }
)

# Series Prometheus makes itself rather than scraping them from a target.
SYNTHETIC_METRICS = frozenset({"up"})

_PROMQL_WORDS = frozenset(
    {
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "and",
        "or",
        "unless",
        "offset",
        "atan2",
        "inf",
        "nan",
    }
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_LABEL_LISTS = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", re.IGNORECASE
)
_IDENT = re.compile(r"(?<![\w:.])([A-Za-z_:][\w:]*)(\s*\()?")
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


@dataclass(frozen=True)
class Query:
    """One dashboard target: where it sits and what it asks Prometheus."""

    dashboard: str
    panel: str
    ref_id: str
    expr: str
    instant: bool

    @property
    def where(self) -> str:
        return f"{self.dashboard} / {self.panel} / {self.ref_id}"


def referenced_metrics() -> dict[str, set[str]]:
    """Metric name -> where the dashboards, their variables and the alert rules use it."""
    uses: dict[str, set[str]] = {}
    sources = [(q.where, q.expr) for q in dashboard_queries()]
    sources += [(f"variable {q}", label_values_metric(q)) for q in variable_queries()]
    sources += [(f"alert {name}", expr) for name, expr in alert_exprs().items()]
    for where, expr in sources:
        for name in metric_names(expr):
            uses.setdefault(name, set()).add(where)
    return uses


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard JSON file by file name."""
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARD_DIR.glob("*.json"))}


def all_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Top-level panels plus those nested in collapsed rows."""
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def dashboard_queries() -> list[Query]:
    """Every PromQL target of every panel of every shipped dashboard."""
    queries = []
    for name, board in dashboards().items():
        for panel in all_panels(board):
            for target in panel.get("targets", []):
                queries.append(
                    Query(
                        name,
                        panel["title"],
                        target["refId"],
                        target["expr"],
                        bool(target.get("instant")),
                    )
                )
    return queries


def variable_queries() -> list[str]:
    """The ``label_values(metric, label)`` queries of the dashboards' template variables."""
    found = []
    for board in dashboards().values():
        for variable in board["templating"]["list"]:
            query = variable["query"]
            found.append(query["query"] if isinstance(query, dict) else query)
    return found


def alert_exprs() -> dict[str, str]:
    """Alert (or recording) rule name -> expression, from the shipped rules file."""
    rules = {}
    for group in load_yaml(ALERT_RULES)["groups"]:
        for rule in group["rules"]:
            rules[rule.get("alert") or rule["record"]] = rule["expr"]
    return rules


def substitute_variables(expr: str, values: dict[str, str] | None = None) -> str:
    """Replace Grafana variables: built-in intervals by test durations, the dashboard's
    own variables by ``.*`` (what "All" sends, since every variable sets allValue ``.*``)."""
    table = {**GRAFANA_BUILTINS, **(values or {})}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return table.get(name, ".*")

    return _VARIABLE.sub(replace, expr)


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects: identifiers that are not functions, keywords,
    label names (in matchers or by/on lists) or durations."""
    text = _STRING.sub('""', substitute_variables(expr))
    text = _LABEL_LISTS.sub(" ", _RANGES.sub(" ", _MATCHERS.sub(" ", text)))
    names = set()
    for match in _IDENT.finditer(text):
        ident, call = match.group(1), match.group(2)
        if call is None and ident.lower() not in _PROMQL_WORDS:
            names.add(ident)
    return names


def label_values_metric(query: str) -> str:
    """The metric of a ``label_values(metric, label)`` variable query."""
    match = re.fullmatch(r"\s*label_values\(\s*([A-Za-z_:][\w:]*)\s*,\s*(\w+)\s*\)\s*", query)
    if match is None:
        raise ValueError(f"not a label_values(metric, label) query: {query!r}")
    return match.group(1)


def exported_sample_names(exposition: str) -> set[str]:
    """Sample names (``x_total``, ``x_bucket``, ``x_sum``...) in a /metrics text body."""
    names = set()
    for line in exposition.splitlines():
        if line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def require_tool(name: str) -> str:
    """Path of a command the test needs; fails (never skips) with the install hint."""
    path = shutil.which(name)
    if path is None:
        raise AssertionError(
            f"`{name}` not found on PATH: install the Debian package that provides it "
            "(apt-get install -y prometheus docker-compose; `make test` does this)"
        )
    return path
