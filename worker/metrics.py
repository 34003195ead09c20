"""Prometheus metrics of a worker process, served on WORKER_METRICS_HOST:WORKER_METRICS_PORT
(127.0.0.1 by default: the endpoint has no login, so only this machine reads it).

With the solo pool (recommended) the jobs run in the process that serves the
metrics. Several workers on one host: each takes the first free port from
WORKER_METRICS_PORT up (the log says which).
"""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

JOBS = Counter("inspection_jobs_total", "Jobs stored, by verdict", ["status"])
REJECTED = Counter("inspection_rejected_total", "Rejected jobs, by reason", ["reason"])
DUPLICATES = Counter(
    "inspection_duplicate_jobs_total", "Jobs that already had a row (sent twice or redelivered)"
)
BATCH_SIZE = Histogram(
    "inspection_batch_size", "Jobs per batch", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256)
)
BATCH_SECONDS = Histogram(
    "inspection_batch_seconds",
    "Time to inspect and store one batch",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
EMBED_SECONDS = Histogram(
    "inspection_embed_seconds",
    "Time to embed one batch",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)
END_TO_END_SECONDS = Histogram(
    "inspection_end_to_end_seconds",
    "From the producer's enqueue to the stored row",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
FINDINGS = Counter("inspection_findings_total", "Findings stored (anomalous regions of frames)")
DEAD_LETTERS = Counter(
    "inspection_dead_letters_total", "Messages stored as dead letters (no job id recoverable)"
)
DATABASE_RETRIES = Counter(
    "inspection_database_retries_total", "Batches retried because the database was unreachable"
)
STORAGE_FAULTS = Counter(
    "inspection_storage_faults_total",
    "Failed tries to store a batch, held and retried (store: blobs | database; reason: full, "
    "read_only, permission, io_error, out_of_memory, insufficient_resources, unreachable)",
    ["store", "reason"],
)
STORAGE_BLOCKED = Gauge(
    "inspection_storage_blocked",
    "1 while a store fails and this worker holds its batch unacknowledged, else 0",
    ["store"],
)
for _store in ("blobs", "database"):  # shown as 0 from the start, so an alert can watch it
    STORAGE_BLOCKED.labels(_store).set(0)
WORKERS_LOST = Counter(
    "inspection_workers_lost_total", "Workers this one found dead (heartbeat lapsed) and reaped"
)
JOBS_RESTORED = Counter(
    "inspection_jobs_restored_total", "Jobs this worker put back on the queue from lost workers"
)
MODEL = Gauge("inspection_model_loaded", "The model this process loaded (1)", ["version", "arch"])
DELIVERIES = Counter(
    "inspection_deliveries_total",
    "Tries to push an event to a plant system (target: webhook | mqtt; outcome: delivered, "
    "retry (failed, tried again later), failed (given up after DELIVERY_MAX_ATTEMPTS))",
    ["target", "outcome"],
)

# Error text fragments -> a short reason, for a metric label with few values.
REASONS = (
    ("internal error", "internal_error"),
    ("empty", "empty"),
    ("truncated", "corrupt"),
    ("corrupt", "corrupt"),
    ("not an image", "not_an_image"),
    ("format", "unsupported_format"),
    ("animated", "animated"),
    ("pixels", "too_many_pixels"),
    ("bytes", "too_large"),
    ("send a smaller image", "too_large"),
    ("inbox", "image_path"),
    ("image_path", "image_path"),
    ("base64", "bad_base64"),
)


def rejected_reason(error: str | None) -> str:
    text = (error or "").lower()
    for fragment, reason in REASONS:
        if fragment in text:
            return reason
    return "bad_message"


def start_metrics_server(port: int, host: str = "127.0.0.1", attempts: int = 32) -> int | None:
    """Serve /metrics on ``host`` (this machine only by default: it has no login) at
    the first free port from ``port``; None when disabled or none free."""
    if port == 0:
        return None
    for candidate in range(port, port + attempts):
        try:
            start_http_server(candidate, addr=host)
        except OSError:
            continue
        log.info("Prometheus metrics on %s port %d", host, candidate)
        return candidate
    log.warning("no free port for metrics in %d-%d", port, port + attempts - 1)
    return None
