"""Engine factories for reliability worker processes.

``--model py:tests.reliability.engines:make_crashing_engine`` serves the rule-based fake
engine as ``fake``, except that a job whose question contains :data:`CRASH` kills the
worker process outright (as a segfault in native code would): no error is reported, the
lease simply stops being renewed.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from tests.fakes import FakeEngine, FakeOracle

CRASH = "CRASH-THE-WORKER"


class CrashingEngine(FakeEngine):
    def open_session(self, question: str, documents: Any, **kwargs: Any) -> FakeOracle:
        if CRASH in question:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().open_session(question, documents, **kwargs)


def make_crashing_engine() -> CrashingEngine:
    return CrashingEngine("fake", delay=0.2)
