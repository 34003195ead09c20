"""Running it like a plant: Celery's own tools, Prometheus metrics, JSON logs, and
switching the model, all against real worker processes."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request

from sqlalchemy import select

from admin import create_app
from admin.auth import create_user
from core.db import session_scope
from core.tables import Inspection, ModelVersion, ReferenceEmbedding
from model.checkpoint import save_checkpoint
from model.networks import build_network
from producer.client import InspectionClient
from tests.conftest import (
    BIN,
    ROOT,
    free_port,
    login,
    sample_images,
    seed_references,
    settings_env,
    wait_for_rows,
)


def submit(settings, count: int, extra: list[bytes] | None = None) -> None:
    with InspectionClient(settings) as client:
        for path in sample_images()[:count]:
            client.submit_file(path, "ops-cam")
        for data in extra or []:
            client.submit_bytes(data, "ops-cam")


def test_celery_inspect_ping_answers_when_remote_control_is_turned_on(settings, start_worker):
    # Off by default (any client of Redis could stop the workers through it); an
    # operator who wants `celery inspect` and Flower's controls turns it on.
    worker = start_worker(settings.model_copy(update={"worker_remote_control": True}))
    result = subprocess.run(
        [
            str(BIN / "celery"),
            "-A",
            "worker",
            "inspect",
            "ping",
            "--timeout",
            "10",
        ],
        cwd=ROOT,
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    name = worker.name.replace("%h", "")
    assert "pong" in result.stdout and name in result.stdout
    assert "task events: ON" in worker.output()  # so Flower sees the tasks


def test_worker_metrics_and_json_logs(settings, start_worker):
    observed = settings.model_copy(
        update={"worker_metrics_port": free_port(), "log_format": "json"}
    )
    seed_references(observed)
    worker = start_worker(observed)
    submit(observed, 6, extra=[b"not an image"])
    wait_for_rows(observed.database_url, 7, 60)
    # on this machine only (127.0.0.1) unless WORKER_METRICS_HOST says otherwise
    found = re.search(r"Prometheus metrics on 127\.0\.0\.1 port (\d+)", worker.output())
    port = int(found.group(1))
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'inspection_jobs_total{status="flagged"} 6.0' in text
    assert 'inspection_rejected_total{reason="not_an_image"} 1.0' in text
    assert re.search(r"inspection_batch_size_count \d", text)
    assert re.search(r"inspection_embed_seconds_count \d", text)
    assert "inspection_end_to_end_seconds_count 7.0" in text
    assert re.search(r'inspection_model_loaded\{arch="texture_net",version="[^"]+"\} 1.0', text)

    records = []
    for line in worker.output().splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
    about_jobs = [r for r in records if r["message"].startswith("job ")]
    assert len(about_jobs) == 7
    for record in about_jobs:
        assert record["job_id"] in record["message"] and record["camera"] == "ops-cam"
    batches = [r for r in records if r["message"].startswith("batch of")]
    assert batches and all(r["job_ids"] for r in batches)


def test_switching_the_model_reembeds_references_and_shows_on_the_dashboard(
    settings, start_worker, tmp_path
):
    seed_references(settings)
    first = start_worker(settings)
    submit(settings, 4)
    wait_for_rows(settings.database_url, 4, 60)
    first.stop()

    other = build_network("texture_net", embedding_dim=64).eval()
    meta = {
        "arch": "texture_net",
        "arch_kwargs": {"embedding_dim": 64},
        "input_size": 100,
        "threshold": 0.5,
        "embedding_dim": 64,
        "train_classes": ["inclusion"],
        "metrics": {"val_roc_auc": 0.5},
    }
    checkpoint = save_checkpoint(tmp_path / "other.pt", other, meta)
    switched = settings.model_copy(update={"model_checkpoint": checkpoint})
    start_worker(switched)
    submit(switched, 3)
    wait_for_rows(settings.database_url, 7, 60)

    with session_scope(settings.database_url) as session:
        versions = {m.version: m for m in session.scalars(select(ModelVersion))}
        used = set(session.scalars(select(Inspection.model_version).distinct()))
        embedded = {}
        for row in session.scalars(select(ReferenceEmbedding)):
            embedded.setdefault(row.model_version, set()).add(row.reference_id)
    assert len(versions) == 2 and used == set(versions)
    assert all(len(ids) == 6 for ids in embedded.values()) and set(embedded) == set(versions)
    new = next(m for m in versions.values() if m.meta["train_classes"] == ["inclusion"])
    assert new.meta["metrics"]["val_roc_auc"] == 0.5 and new.threshold == 0.5

    app = create_app(
        {
            "DATABASE_URL": settings.database_url,
            "REDIS_URL": settings.redis_url,
            "BLOB_DIR": str(settings.blob_dir),
            "SECRET_KEY": "test",
        }
    )
    with session_scope(settings.database_url) as session:
        create_user(session, "op", "operator-password", "supervisor")
    client = app.test_client()
    login(client, "op", "operator-password")
    page = client.get("/dashboard").get_data(as_text=True)
    for version in versions:
        assert version in page
