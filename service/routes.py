"""The HTTP routes. Each one validates, talks to the queue, and returns a schema model;
errors are raised as exceptions and turned into statuses by ``service.errors``."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from service.auth import OwnerDep
from service.contract.jobs import JobQueue, NewJob, QueueUnavailable
from service.contract.schemas import (
    ExplainRequest,
    JobAccepted,
    JobStatus,
    JobView,
    ModelInfo,
    ModelsView,
)
from service.deps import MetricsDep, QueueDep, SettingsDep
from service.errors import JobConflict, JobNotFound
from service.limits import check_request
from service.ratelimit import RateLimitedOwner, active_slot

router = APIRouter()
logger = logging.getLogger(__name__)


class Message(BaseModel):
    """Body of every error that is not about one field."""

    detail: str


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    workers: int
    reason: str = ""


def _doc(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": Message} for code in codes}


def served_models(queue: JobQueue) -> dict[str, int]:
    """Model name -> number of live workers serving it."""
    counts: dict[str, int] = {}
    for worker in queue.workers():
        for model in worker.models:
            counts[model] = counts.get(model, 0) + 1
    return counts


@router.post(
    "/explain",
    status_code=202,
    response_model=JobAccepted,
    responses=_doc(401, 413, 429, 503),
    summary="Submit an explanation job",
)
def submit(
    body: ExplainRequest,
    request: Request,
    owner: RateLimitedOwner,
    response: Response,
    queue: QueueDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=200)] = None,
) -> JobAccepted:
    """Validate against the deployment's limits, then enqueue (202). The same
    Idempotency-Key with the same body (and API key) returns the same job."""
    model = check_request(body, settings, set(served_models(queue)))
    new = NewJob(model, body, owner=owner, idempotency_key=idempotency_key)
    with active_slot(request, owner, new.job_id) as release:
        submitted = queue.submit(new)
        if not submitted.created:
            release()
    job = submitted.job
    if submitted.created:
        metrics.submitted.labels(model=model).inc()
    status_url = f"/jobs/{job.job_id}"
    response.headers["Location"] = status_url
    return JobAccepted(job_id=job.job_id, status=job.status, status_url=status_url)


@router.get("/jobs/{job_id}", response_model=JobView, responses=_doc(401, 404, 503))
def get_job(job_id: str, queue: QueueDep, owner: OwnerDep) -> JobView:
    """Status, progress and, once finished, the result or the error. Another key's job
    is a 404, exactly like an unknown one."""
    record = queue.get(job_id)
    if record is None or record.owner != owner:
        raise JobNotFound(job_id)
    return record.view()


@router.delete(
    "/jobs/{job_id}",
    response_model=JobView,
    responses={202: {"model": JobView}, **_doc(401, 404, 409, 503)},
)
def cancel_job(job_id: str, queue: QueueDep, response: Response, owner: OwnerDep) -> JobView:
    """Cancel: a queued job ends at once (200); a running one stops at its next batch
    (202, ``cancel_requested``); cancelling a cancelled job is a no-op."""
    mine = queue.get(job_id)
    if mine is None or mine.owner != owner:
        raise JobNotFound(job_id)
    record = queue.cancel(job_id)
    if record is None:
        raise JobNotFound(job_id)
    if record.status in (JobStatus.succeeded, JobStatus.failed):
        raise JobConflict(f"job {job_id!r} already {record.status.value}; nothing to cancel")
    if record.status != JobStatus.cancelled:
        response.status_code = 202
    return record.view()


@router.get("/models", response_model=ModelsView, responses=_doc(503))
def models(queue: QueueDep, settings: SettingsDep) -> ModelsView:
    """Models that live workers serve right now, and the default model."""
    served = served_models(queue)
    infos = [ModelInfo(name=name, workers=n) for name, n in sorted(served.items())]
    return ModelsView(default=settings.default_model, models=infos)


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process answers (liveness); says nothing about Redis or workers."""
    return Health(status="ok")


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
def readyz(queue: QueueDep, require_worker: bool = True) -> Any:
    """Ready when the queue is reachable and at least one worker is alive.

    ``require_worker=false`` drops the second condition: a gateway whose workers scale to
    zero on an empty queue (Kubernetes with KEDA, docs/deploy.md) must stay ready without
    them, or no job could ever arrive to scale them up."""
    try:
        queue.ping()
        workers = len(queue.workers())
    except QueueUnavailable as exc:  # its message names no address
        body = Readiness(status="unavailable", workers=0, reason=str(exc))
        return JSONResponse(body.model_dump(), status_code=503)
    except Exception:  # noqa: BLE001 - readiness reports, it does not raise
        logger.exception("readiness check failed")
        body = Readiness(status="unavailable", workers=0, reason="queue check failed")
        return JSONResponse(body.model_dump(), status_code=503)
    if workers == 0 and require_worker:
        body = Readiness(status="unavailable", workers=0, reason="no live worker")
        return JSONResponse(body.model_dump(), status_code=503)
    return Readiness(status="ready", workers=workers)


@router.get("/metrics", include_in_schema=False)
def metrics_endpoint(metrics: MetricsDep) -> PlainTextResponse:
    """Prometheus exposition of the gateway's registry (and the embedded worker's)."""
    body = generate_latest(metrics.registry)
    return PlainTextResponse(body, media_type=CONTENT_TYPE_LATEST)
