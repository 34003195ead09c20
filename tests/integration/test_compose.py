"""docker-compose.yml, validated by a real Compose implementation (no engine needed)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import yaml

from tests.conftest import ROOT


@pytest.fixture(scope="module")
def compose_config() -> dict:
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose is missing: `make test` installs it"
    env = {**os.environ, "SECRET_KEY": "compose-test-secret"}
    result = subprocess.run(
        [binary, "-f", str(ROOT / "docker-compose.yml"), "config"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_services_and_volumes(compose_config):
    services = compose_config["services"]
    assert {"redis", "postgres", "migrate", "worker", "admin", "camera"} <= set(services)
    assert {"redis-data", "pg-data", "blobs"} <= set(compose_config["volumes"])


def test_redis_keeps_its_queue_across_restarts(compose_config):
    command = compose_config["services"]["redis"]["command"]
    assert "--appendonly" in command and command[command.index("--appendonly") + 1] == "yes"


def test_start_order_waits_for_health_and_migrations(compose_config):
    services = compose_config["services"]
    for name in ("redis", "postgres", "admin"):
        assert "healthcheck" in services[name], name
    worker_deps = services["worker"]["depends_on"]
    assert worker_deps["redis"]["condition"] == "service_healthy"
    assert worker_deps["postgres"]["condition"] == "service_healthy"
    assert worker_deps["migrate"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "alembic upgrade head" in " ".join(services["migrate"]["command"])
    assert "gunicorn" in services["admin"]["command"]


def test_worker_scales(compose_config):
    # --scale needs no fixed container name and no published port on the worker.
    worker = compose_config["services"]["worker"]
    assert "container_name" not in worker and "ports" not in worker
    assert worker["command"][:3] == ["celery", "-A", "worker"]


def test_secret_key_is_required():
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    result = subprocess.run(
        ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_gpu_profile_reserves_an_nvidia_device(compose_config):
    gpu = compose_config["services"]["worker-gpu"]
    assert gpu["profiles"] == ["gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert gpu["environment"]["MODEL_DEVICE"] == "cuda"
    assert "solo" in gpu["command"]  # no CUDA before a fork


def mounts(service: dict) -> set[tuple[str, str]]:
    """(source, target) of a service's volumes, in short or long syntax."""
    found = set()
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume["source"], volume["target"]
        found.add((source, target))
    return found


def test_images_and_database_live_on_named_volumes(compose_config):
    services = compose_config["services"]
    assert ("pg-data", "/var/lib/postgresql/data") in mounts(services["postgres"])
    assert ("redis-data", "/data") in mounts(services["redis"])
    for name in ("worker", "admin"):
        assert ("blobs", "/data/blobs") in mounts(services[name]), name


def test_metrics_and_monitoring(compose_config):
    services = compose_config["services"]
    assert "9808" in [str(p) for p in services["worker"]["expose"]]
    assert services["admin"]["environment"]["PROMETHEUS_MULTIPROC_DIR"] == "/tmp/prometheus"
    assert services["flower"]["profiles"] == ["monitoring"]
    # worker metrics reach the compose network (for a Prometheus there), not the host
    assert services["worker"]["environment"]["WORKER_METRICS_HOST"] == "0.0.0.0"


def test_flower_needs_a_login_and_workers_report_by_heartbeat(compose_config):
    services = compose_config["services"]
    flower = " ".join(services["flower"]["command"])
    assert "--basic-auth" in flower and "exit 1" in flower  # it will not start without one
    # remote control is off, so `celery inspect ping` cannot be the health check
    health = " ".join(services["worker"]["healthcheck"]["test"])
    assert "worker.heartbeat" in health and "inspect ping" not in health
    for name in ("worker", "admin", "migrate"):
        assert "WORKER_REMOTE_CONTROL" not in services[name].get("environment", {}), name
