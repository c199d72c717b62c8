"""bench/load.py runs bounded against a live gateway and accounts for every job."""

from __future__ import annotations

import json

import pytest

from bench import load
from tests.reliability.conftest import KEY


def test_a_short_run_accounts_for_every_job(
    gateway: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--url", gateway, "--clients", "3", "--duration", "2", "--drain", "20"]
    assert load.main([*argv, "--api-key", KEY, "--json", "--poll-interval", "0.05"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["submitted"] >= 3
    assert (result["succeeded"], result["failed"], result["lost"]) == (result["submitted"], 0, 0)
    assert set(result["http_statuses"]) == {"200", "202"}
    assert 0 < result["submit_ms"]["p50"] <= result["submit_ms"]["p99"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--url", "http://10.0.0.1:8000"], "must be a loopback address"),
        (["--duration", "601"], "--duration must be in"),
        (["--clients", "0"], "--clients must be in"),
    ],
)
def test_unbounded_or_remote_runs_are_refused(argv: list[str], message: str) -> None:
    with pytest.raises(SystemExit, match=message):
        load.main(argv)
