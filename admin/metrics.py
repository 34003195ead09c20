"""Prometheus metrics of the admin site, at ``/metrics`` (an API token with the scope
``metrics`` is needed).

Each admin process keeps its own counters. Under gunicorn with several workers,
set PROMETHEUS_MULTIPROC_DIR to an empty folder shared by them and the counts
are merged (prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis
from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from admin.db import get_db
from admin.errors import respond
from admin.tokens import refuse_token
from core.queue import jobs_held, queue_length, recovery_counts

bp = Blueprint("metrics", __name__)

REQUESTS = Counter("admin_requests_total", "Requests served", ["endpoint", "method", "status"])
REQUEST_SECONDS = Histogram(
    "admin_request_seconds",
    "Time to serve a request",
    ["endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
QUEUE_LENGTH = Gauge(
    "inspection_queue_length", "Jobs waiting in the inspect queue", multiprocess_mode="max"
)
HELD = Gauge(
    "inspection_jobs_held", "Jobs taken by workers, not yet acknowledged", multiprocess_mode="max"
)

WORKERS_LOST = Gauge(
    "inspection_lost_workers",
    "Workers found dead by the others' heartbeats (counted in Redis)",
    multiprocess_mode="max",
)
JOBS_RESTORED = Gauge(
    "inspection_restored_jobs",
    "Jobs put back on the queue from lost workers (counted in Redis)",
    multiprocess_mode="max",
)
LINE_GAUGES = (QUEUE_LENGTH, HELD, WORKERS_LOST, JOBS_RESTORED)


@bp.route("/metrics")
def metrics() -> Any:
    refusal = refuse_token(get_db(), request.headers.get("Authorization", ""), "metrics")
    if refusal is not None:
        return respond(*refusal)  # JSON, as every error at /metrics
    try:
        client = redis.Redis.from_url(
            current_app.config["REDIS_URL"], socket_timeout=2, socket_connect_timeout=2
        )
        QUEUE_LENGTH.set(queue_length(client))
        HELD.set(jobs_held(client))
        lost, restored = recovery_counts(client)
        WORKERS_LOST.set(lost)
        JOBS_RESTORED.set(restored)
        client.close()
    except redis.RedisError:
        for gauge in LINE_GAUGES:
            gauge.set(float("nan"))
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
    return Response(generate_latest(), mimetype=CONTENT_TYPE_LATEST)


def init_app(app: Flask) -> None:
    @app.before_request
    def start_timer() -> None:
        g.request_started = time.perf_counter()

    @app.after_request
    def count_request(response: Any) -> Any:
        endpoint = request.endpoint or "unknown"
        REQUESTS.labels(endpoint, request.method, str(response.status_code)).inc()
        started = g.get("request_started")
        if started is not None:
            REQUEST_SECONDS.labels(endpoint).observe(time.perf_counter() - started)
        return response
