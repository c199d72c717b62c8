"""Worker metrics (names are a contract with the dashboards; do not rename).

Served by ``textgenshap worker --metrics-port``; in the embedded default they are
registered on the gateway's registry so that one ``/metrics`` shows both sets.
"""

from __future__ import annotations

import os
import sys

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from service.contract.results import ExplainResult
from worker.shapley.oracle import OracleStats

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
STAGE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


def _rss_bytes() -> float:
    """Resident set size of this process, from /proc (Linux) or psutil."""
    try:
        with open("/proc/self/statm") as handle:
            return float(int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, IndexError):
        import psutil

        return float(psutil.Process().memory_info().rss)


def _gpu_bytes() -> float | None:
    """Allocated CUDA memory, only when torch is already loaded (never import it here)."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return None
    return float(torch.cuda.memory_allocated())


class WorkerMetrics:
    """The worker's instruments, registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry, worker_id: str) -> None:
        self.worker_id = worker_id
        self._add_job_costs(registry)
        self._add_speculation(registry)
        self._add_process_state(registry)

    def _add_job_costs(self, r: CollectorRegistry) -> None:
        self.jobs = Counter("textgenshap_worker_jobs", "Jobs ended here.", ["status"], registry=r)
        self.stage = Histogram(
            "textgenshap_worker_stage_duration_seconds",
            "Seconds per pipeline stage.",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.coalitions = Counter("textgenshap_worker_coalitions", "Coalitions.", registry=r)
        self.passes = Counter("textgenshap_worker_forward_passes", "Forward passes.", registry=r)
        self.tokens = Counter(
            "textgenshap_worker_tokens_computed", "Token positions computed.", registry=r
        )
        self.batch = Histogram(
            "textgenshap_worker_batch_size", "Coalitions per batch.", buckets=BATCH_BUCKETS,
            registry=r,
        )  # fmt: skip

    def _add_speculation(self, r: CollectorRegistry) -> None:
        self.proposed = Counter(
            "textgenshap_worker_draft_tokens_proposed", "Draft tokens proposed.", registry=r
        )
        self.accepted = Counter(
            "textgenshap_worker_draft_tokens_accepted", "Draft tokens accepted.", registry=r
        )
        self.acceptance = Gauge(
            "textgenshap_worker_speculative_acceptance_ratio",
            "Draft acceptance of the last job.",
            registry=r,
        )

    def _add_process_state(self, r: CollectorRegistry) -> None:
        self.info = Gauge(
            "textgenshap_worker_info",
            "Constant 1, labelled with what this worker serves.",
            ["worker", "model", "attention_backend", "device"],
            registry=r,
        )
        self.busy = Gauge("textgenshap_worker_busy", "1 while a job runs.", registry=r)
        self.memory = Gauge(
            "textgenshap_worker_memory_bytes", "Memory in use.", ["kind"], registry=r
        )
        self.load_seconds = Gauge(
            "textgenshap_worker_model_load_seconds", "Model load time.", ["model"], registry=r
        )

    def model_loaded(self, name: str, seconds: float, backend: str, device: str) -> None:
        self.load_seconds.labels(model=name).set(seconds)
        self.info.labels(self.worker_id, name, backend, device).set(1)
        self.sample_memory()

    def sample_memory(self) -> None:
        self.memory.labels(kind="rss").set(_rss_bytes())
        gpu = _gpu_bytes()
        if gpu is not None:
            self.memory.labels(kind="gpu").set(gpu)

    def job_ended(
        self, status: str, result: ExplainResult | None, stats: OracleStats | None
    ) -> None:
        """Count a job that ended here, with its costs when it produced any."""
        self.jobs.labels(status=status).inc()
        if result is not None:
            self.coalitions.inc(result.stats.coalitions)
            for stage, seconds in result.stats.seconds.items():
                self.stage.labels(stage=stage).observe(seconds)
        if stats is not None:
            self._oracle(stats)
        self.sample_memory()

    def _oracle(self, stats: OracleStats) -> None:
        self.passes.inc(stats.forward_passes)
        self.tokens.inc(stats.tokens_computed)
        for size in stats.batch_sizes:
            self.batch.observe(size)
        self.proposed.inc(stats.draft_tokens_proposed)
        self.accepted.inc(stats.draft_tokens_accepted)
        if stats.acceptance_rate is not None:
            self.acceptance.set(stats.acceptance_rate)
