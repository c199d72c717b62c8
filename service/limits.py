"""Deployment limits checked before a job is enqueued (never a job that cannot succeed).

Static limits live on the schema; these depend on ``Settings`` and on which models the
live workers serve. Each failure names the field it is about.
"""

from __future__ import annotations

from service.contract.schemas import ExplainRequest
from service.contract.settings import Settings
from service.errors import RequestRejected
from worker.shapley.unit_bounds import first_overflow
from worker.shapley.units import Document


def check_documents(request: ExplainRequest, settings: Settings) -> None:
    """Count and size of the documents: too many or too large is a 422 naming them."""
    documents = request.document_objects()
    if len(documents) > settings.max_documents:
        raise RequestRejected(
            ["body", "documents"],
            f"too many documents: {len(documents)} > max_documents={settings.max_documents}",
        )
    for i, doc in enumerate(documents):
        if len(doc.text) > settings.max_document_chars:
            raise RequestRejected(
                ["body", "documents", i, "text"],
                f"document too large: {len(doc.text)} characters > "
                f"max_document_chars={settings.max_document_chars}",
            )
    total = sum(len(doc.text) + len(doc.title) for doc in documents)
    if total > settings.max_total_chars:
        raise RequestRejected(
            ["body", "documents"],
            f"documents too large in total: {total} characters > "
            f"max_total_chars={settings.max_total_chars}",
        )


def check_budget(request: ExplainRequest, settings: Settings) -> None:
    if request.budget > settings.max_budget:
        raise RequestRejected(
            ["body", "budget"],
            f"budget {request.budget} is over the cap max_budget={settings.max_budget}",
        )


def check_generation(request: ExplainRequest, settings: Settings) -> None:
    """Levels and answer length: the deployment may forbid the costly word level or long
    answers (each refusal names its field)."""
    if len(request.levels) > settings.max_levels:
        raise RequestRejected(
            ["body", "levels"],
            f"{len(request.levels)} levels requested; this deployment allows at most "
            f"max_levels={settings.max_levels}",
        )
    if request.max_new_tokens > settings.max_new_tokens:
        raise RequestRejected(
            ["body", "max_new_tokens"],
            f"max_new_tokens {request.max_new_tokens} is over the cap "
            f"max_new_tokens={settings.max_new_tokens}",
        )


def check_units(request: ExplainRequest, settings: Settings) -> None:
    """The levels' worst-case unit counts (whatever the scores refine) against
    ``max_units_per_level``: a job that could fail there is refused before it runs."""
    docs = [Document(text=d.text, title=d.title) for d in request.document_objects()]
    refine = request.refine
    cap = settings.max_units_per_level
    over = first_overflow(docs, request.levels, refine.rule, refine.k, cap)
    if over is None:
        return
    rule = f"top_k k={refine.k}" if refine.rule == "top_k" else "threshold"
    raise RequestRejected(
        ["body", "levels"],
        f"the {over.level} level could have up to {over.units} units (refine {rule} over "
        f"these documents), over max_units_per_level={cap}; ask for fewer levels, a "
        "smaller refine k, or shorter documents",
    )


def resolve_model(request: ExplainRequest, settings: Settings, served: set[str]) -> str:
    """The model the job runs on: the request's, or the default; it must be servable.

    Servable means some live worker serves it, or it is the deployment's default model
    or one of its ``scaled_models`` (whose workers may still be starting, or be scaled to
    zero until a job arrives). ``py:`` factories are for worker command lines only, never
    for requests.
    """
    model = request.model or settings.default_model
    servable = served | settings.accepted_idle_models
    if model.startswith("py:") or model not in servable:
        known = sorted(servable)
        raise RequestRejected(["body", "model"], f"unknown model {model!r}; served: {known}")
    return model


def check_request(request: ExplainRequest, settings: Settings, served: set[str]) -> str:
    """All deployment limits; returns the resolved model name."""
    check_documents(request, settings)
    check_budget(request, settings)
    check_generation(request, settings)
    check_units(request, settings)
    return resolve_model(request, settings, served)
