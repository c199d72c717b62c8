"""What the client raises: every error is a :class:`ClientError`; a non-2xx answer an
:class:`ApiError` with the server's ``detail`` in plain words."""

from __future__ import annotations

import re
from typing import Any

from service.contract.schemas import JobView

_PYDANTIC_PREFIX = re.compile(r"(^|: )(?:Value error|Assertion failed), ")


class ClientError(Exception):
    """Base of every error this client raises on purpose."""


class ApiError(ClientError):
    """The server answered with a non-2xx status; ``detail`` is its explanation."""

    def __init__(self, status: int, detail: Any) -> None:
        self.status = status
        self.detail = detail
        super().__init__(f"HTTP {status}: {describe_detail(detail)}")


class JobFailed(ClientError):
    """The job ended in ``failed``; ``job.error`` says why."""

    def __init__(self, job: JobView) -> None:
        self.job = job
        error = job.error
        reason = f"{error.type}: {error.message}" if error else "no error recorded"
        super().__init__(f"job {job.job_id} {job.status.value}: {reason}")


class JobCancelled(JobFailed):
    """The job was cancelled before it finished."""


class JobTimeout(ClientError):
    """``wait`` gave up; ``job`` is the last state seen (the job may still finish)."""

    def __init__(self, job: JobView, timeout: float) -> None:
        self.job = job
        super().__init__(f"job {job.job_id} still {job.status.value} after {timeout:g} s")


def describe_detail(detail: Any) -> str:
    """Plain words for a FastAPI ``detail``: 422 lists become 'field: message; ...'."""
    if isinstance(detail, list):
        return "; ".join(_describe_item(item) for item in detail)
    if isinstance(detail, dict) and "message" in detail:
        return str(detail["message"])
    return str(detail)


def _describe_item(item: Any) -> str:
    if not isinstance(item, dict):
        return str(item)
    path = ".".join(str(part) for part in item.get("loc", []) if part != "body")
    message = _PYDANTIC_PREFIX.sub(r"\1", str(item.get("msg", item)))
    # the gateway already prefixes its messages with the field path; FastAPI's own do not
    return message if not path or message.startswith(f"{path}:") else f"{path}: {message}"
