"""Deployment settings, read once from ``TEXTGENSHAP_*`` environment variables.

Invalid values refuse to start (pydantic raises with the offending variable named), so a
typo in a deployment fails at boot rather than at the first request.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything a gateway or worker can be tuned with; defaults suit one CPU machine."""

    model_config = SettingsConfigDict(env_prefix="TEXTGENSHAP_", extra="ignore")

    redis_url: str = Field(default="", description="Empty: embedded in-process queue.")
    key_prefix: str = Field(default="textgenshap:", min_length=1, max_length=100)
    default_model: str = Field(default="gemma-3-270m", min_length=1)
    scaled_models: str = Field(
        default="",
        description="Comma-separated models the gateway accepts while no live worker serves "
        "them (workers scaled to zero by the queue, docs/deploy.md); the default model "
        "always is.",
    )
    lease_seconds: float = Field(default=30.0, gt=0.2, le=3600)
    result_ttl_seconds: int = Field(default=86_400, ge=1)
    max_deliveries: int = Field(default=3, ge=1, le=100)
    queue_max: int = Field(default=1_000, ge=1)
    retry_after_seconds: int = Field(default=5, ge=1, le=3600)
    max_documents: int = Field(default=100, ge=1)
    max_document_chars: int = Field(default=20_000, ge=1)
    max_total_chars: int = Field(default=200_000, ge=1)
    max_budget: int = Field(default=2_048, ge=1)
    max_body_bytes: int = Field(default=2_000_000, ge=1_024)
    heartbeat_seconds: float = Field(default=5.0, gt=0, le=300)
    job_deadline_seconds: float = Field(
        default=3_600.0,
        ge=0,
        description="Wall-clock seconds one delivery of a job may run before it fails with "
        "JobDeadlineExceeded (never redelivered); 0 = no deadline. The hard cap: the "
        "deadline derived from the job's own speed (job_deadline_factor) is usually earlier.",
    )
    job_deadline_factor: float = Field(
        default=8.0,
        ge=0,
        description="A job's deadline, once its full-context answer is known: this many "
        "times that answer's seconds for every planned coalition (levels x budget), at "
        "least job_deadline_floor_seconds, at most job_deadline_seconds; 0 = the cap alone.",
    )
    job_deadline_floor_seconds: float = Field(default=120.0, ge=0)
    max_units_per_level: int = Field(
        default=1_000,
        ge=1,
        description="Features one hierarchy level may have (sentences or words after "
        "refinement); a job over it fails at once, before its estimator allocates anything.",
    )
    redis_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    model_cache_dir: Path = Field(default=Path("~/.cache/textgenshap"))
    # --- tenancy and abuse limits (service.auth, service.ratelimit; docs/reliability.md)
    api_keys: str = Field(default="", description="Comma-separated sha256 hex of API keys.")
    api_keys_file: Path | None = Field(default=None, description="File of key hashes, one a line.")
    allowed_hosts: str = Field(
        default="",
        description="Comma-separated Host header names the gateway answers (others get "
        "400). Empty: any, except that a keyless gateway on a loopback address answers "
        "only localhost names (against DNS rebinding).",
    )
    allow_anonymous: bool = Field(
        default=False, description="Serve without keys on a non-loopback host (behind a proxy)."
    )
    rate_limit_per_minute: int = Field(default=120, ge=0, description="Submits per key; 0: off.")
    rate_limit_burst: int = Field(default=60, ge=1)
    max_active_jobs_per_key: int = Field(default=100, ge=0, description="Unfinished; 0: off.")
    max_levels: int = Field(default=3, ge=1, le=3)
    max_new_tokens: int = Field(default=128, ge=1)
    max_tokens: int = Field(default=0, ge=0, description="Prompt tokens; 0: the model's window.")

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        schemes = ("redis://", "rediss://", "unix://")
        if value and not value.startswith(schemes):
            raise ValueError(f"redis_url must start with one of {schemes} or be empty")
        return value

    @field_validator("model_cache_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @model_validator(mode="after")
    def _chars_consistent(self) -> Settings:
        if self.max_document_chars > self.max_total_chars:
            raise ValueError("max_document_chars must not exceed max_total_chars")
        return self

    @property
    def accepted_idle_models(self) -> set[str]:
        """Models a request may name although no worker serves them right now."""
        extra = {name.strip() for name in self.scaled_models.split(",") if name.strip()}
        return extra | {self.default_model}

    @property
    def embedded(self) -> bool:
        """True when no Redis is configured: queue and worker live in this process."""
        return not self.redis_url
