"""Fixtures of the viewer tests."""

from __future__ import annotations

import pytest

from service.schemas import ExplainRequest, ExplainResult
from tests.viewer import sample


@pytest.fixture
def sample_request() -> ExplainRequest:
    return sample.sample_request()


@pytest.fixture
def sample_result() -> ExplainResult:
    return sample.sample_result()
