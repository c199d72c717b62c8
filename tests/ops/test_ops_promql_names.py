"""The PromQL reading that the metric-coverage tests rely on: it must find every metric
an expression selects and nothing else (functions, label names, durations, keywords)."""

from __future__ import annotations

import pytest
from ops_assets import (
    exported_sample_names,
    label_values_metric,
    metric_names,
    substitute_variables,
)


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        ('up{job="textgenshap-worker"} == 0', {"up"}),
        (
            "histogram_quantile(0.95, sum by (le, stage) "
            "(rate(textgenshap_worker_stage_duration_seconds_bucket[$__rate_interval])))",
            {"textgenshap_worker_stage_duration_seconds_bucket"},
        ),
        (
            'sum(rate(a_total{status=~"5..",route=~"$route"}[5m])) / sum(rate(b_total[1h]))',
            {"a_total", "b_total"},
        ),
        ("(sum(up{job='w'}) or vector(0)) == 0", {"up"}),
        (
            "max(x) > 0 and on() (sum(rate(y_total[15m])) or vector(1e3)) == 0",
            {"x", "y_total"},
        ),
        ("sum(rate(x_total[5m] offset 1h)) without (instance)", {"x_total"}),
        ('count by (instance) (m{kind="by"}) * on (instance) group_left (model) n', {"m", "n"}),
        ("avg_over_time(ns:busy:ratio[${__range}])", {"ns:busy:ratio"}),
    ],
)
def test_metric_names_finds_selected_metrics_only(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_substitute_variables_uses_test_intervals_and_all_for_dashboard_variables() -> None:
    expr = 'rate(m{instance=~"$instance",route=~"${route}"}[$__rate_interval]) [$__range]'
    assert substitute_variables(expr) == 'rate(m{instance=~".*",route=~".*"}[30s]) [60s]'


def test_label_values_metric_reads_the_metric_and_rejects_other_queries() -> None:
    assert label_values_metric("label_values(textgenshap_worker_info, instance)") == (
        "textgenshap_worker_info"
    )
    with pytest.raises(ValueError, match="label_values"):
        label_values_metric("query_result(up)")


def test_exported_sample_names_reads_exposition_lines() -> None:
    body = (
        "# HELP a_total A.\n# TYPE a_total counter\n"
        'a_total{route="/x"} 3.0\nb_bucket{le="+Inf"} 1.0\nc 2.0\n'
    )
    assert exported_sample_names(body) == {"a_total", "b_bucket", "c"}
