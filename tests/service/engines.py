"""Engine factories for worker subprocesses in the end-to-end tests.

``--model py:tests.service.engines:make_env_engine`` serves the rule-based fake engine as
``fake``; ``TEXTGENSHAP_TEST_ENGINE_DELAY`` (seconds per model call) makes it slow
enough for a signal to land in the middle of a job.
"""

from __future__ import annotations

import os

from tests.fakes import FakeEngine

DELAY_ENV = "TEXTGENSHAP_TEST_ENGINE_DELAY"


def make_env_engine() -> FakeEngine:
    return FakeEngine("fake", delay=float(os.environ.get(DELAY_ENV, "0")))
