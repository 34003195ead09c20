"""Typed settings, read once from the environment, validated at start-up.

Nothing is read at import time: call ``get_settings()``. Defaults make the demo
run with no variables set; production (``INSPECTION_ENV=production``) requires
``SECRET_KEY``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path


class SettingsError(ValueError):
    """A configuration value is missing or malformed; the message says which and how."""


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///var/inspection.db"
    redis_url: str = "redis://localhost:6379/0"
    blob_dir: Path = Path("var/blobs")
    inbox_dir: Path = Path("var/inbox")
    model_checkpoint: Path | None = None  # None: the checkpoint shipped in model/weights/
    secret_key: str = field(default="", repr=False)
    environment: str = "demo"
    match_threshold: float | None = None  # None: the threshold stored in the checkpoint
    max_image_bytes: int = 8 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    model_device: str = "auto"
    log_level: str = "INFO"
    log_format: str = "text"  # or "json": one object per line, with job ids as fields
    worker_metrics_port: int = 9808  # Prometheus endpoint of each worker process; 0: none
    worker_metrics_host: str = "127.0.0.1"  # the address it listens on (0.0.0.0: every one)
    # Celery's remote control (ping, shutdown, pause...) over Redis: off, since
    # anyone who reaches Redis could stop the workers; workers report by heartbeat
    worker_remote_control: bool = False
    cookie_secure: bool = False  # send session cookies over HTTPS only
    inspect_batch_size: int = 32  # jobs embedded in one forward pass, at most
    inspect_batch_wait_ms: int = 50  # how long a partial batch waits for more jobs
    visibility_timeout_s: int = 600  # an unacknowledged job goes back to the queue after this
    model_threads: int = 0  # torch threads per worker process; 0: cores / processes
    spool_dir: Path = Path("var/spool")  # producers keep here what Redis did not take
    max_queue_length: int = 5000  # producers slow down above this many queued jobs

    @property
    def is_production(self) -> bool:
        return self.environment == "production"


def _parse_int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _parse_choice(env: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    value = (env.get(name) or default).strip().lower()
    if value not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _parse_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be 1/true/yes or 0/false/no, got {raw!r}")


def _parse_optional_float(env: Mapping[str, str], name: str) -> float | None:
    raw = env.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be positive, got {value}")
    return value


def settings_from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Build and validate settings from a mapping (``os.environ`` by default)."""
    env = os.environ if env is None else env
    environment = env.get("INSPECTION_ENV", "demo").strip().lower()
    if environment not in ("demo", "production"):
        raise SettingsError(f"INSPECTION_ENV must be 'demo' or 'production', got {environment!r}")
    secret_key = env.get("SECRET_KEY", "")
    if not secret_key:
        if environment == "production":
            raise SettingsError(
                "SECRET_KEY is required when INSPECTION_ENV=production; "
                "set it to a long random string shared by all admin processes"
            )
        secret_key = secrets.token_hex(32)  # demo: random per run
    database_url = env.get("DATABASE_URL") or Settings.database_url
    if "://" not in database_url:
        raise SettingsError(f"DATABASE_URL must be a SQLAlchemy URL, got {database_url!r}")
    redis_url = env.get("REDIS_URL") or Settings.redis_url
    if not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise SettingsError(f"REDIS_URL must start with redis://, got {redis_url!r}")
    checkpoint = env.get("MODEL_CHECKPOINT") or None
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        blob_dir=Path(env.get("BLOB_DIR") or Settings.blob_dir),
        inbox_dir=Path(env.get("INBOX_DIR") or Settings.inbox_dir),
        model_checkpoint=Path(checkpoint) if checkpoint else None,
        secret_key=secret_key,
        environment=environment,
        match_threshold=_parse_optional_float(env, "MATCH_THRESHOLD"),
        max_image_bytes=_parse_int(env, "MAX_IMAGE_BYTES", Settings.max_image_bytes),
        max_image_pixels=_parse_int(env, "MAX_IMAGE_PIXELS", Settings.max_image_pixels),
        model_device=env.get("MODEL_DEVICE") or Settings.model_device,
        log_level=(env.get("LOG_LEVEL") or Settings.log_level).upper(),
        log_format=_parse_choice(env, "LOG_FORMAT", ("text", "json"), "text"),
        worker_metrics_port=_parse_int(env, "WORKER_METRICS_PORT", 9808, minimum=0),
        worker_metrics_host=(env.get("WORKER_METRICS_HOST") or Settings.worker_metrics_host),
        worker_remote_control=_parse_bool(env, "WORKER_REMOTE_CONTROL", default=False),
        cookie_secure=_parse_bool(env, "COOKIE_SECURE", default=environment == "production"),
        inspect_batch_size=_parse_int(env, "INSPECT_BATCH_SIZE", Settings.inspect_batch_size),
        inspect_batch_wait_ms=_parse_int(
            env, "INSPECT_BATCH_WAIT_MS", Settings.inspect_batch_wait_ms, minimum=1
        ),
        visibility_timeout_s=_parse_int(
            env, "BROKER_VISIBILITY_TIMEOUT", Settings.visibility_timeout_s, minimum=5
        ),
        model_threads=_parse_int(env, "MODEL_THREADS", 0, minimum=0),
        spool_dir=Path(env.get("SPOOL_DIR") or Settings.spool_dir),
        max_queue_length=_parse_int(env, "MAX_QUEUE_LENGTH", Settings.max_queue_length),
    )


def settings_to_env(settings: Settings) -> dict[str, str]:
    """The environment variables that ``settings_from_env`` reads back as ``settings``.

    For starting another process (a worker, the admin) with these settings.
    """
    env = {
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "BLOB_DIR": str(settings.blob_dir),
        "INBOX_DIR": str(settings.inbox_dir),
        "SECRET_KEY": settings.secret_key,
        "INSPECTION_ENV": settings.environment,
        "MAX_IMAGE_BYTES": str(settings.max_image_bytes),
        "MAX_IMAGE_PIXELS": str(settings.max_image_pixels),
        "MODEL_DEVICE": settings.model_device,
        "LOG_LEVEL": settings.log_level,
        "LOG_FORMAT": settings.log_format,
        "WORKER_METRICS_PORT": str(settings.worker_metrics_port),
        "WORKER_METRICS_HOST": settings.worker_metrics_host,
        "WORKER_REMOTE_CONTROL": "1" if settings.worker_remote_control else "0",
        "COOKIE_SECURE": "1" if settings.cookie_secure else "0",
        "INSPECT_BATCH_SIZE": str(settings.inspect_batch_size),
        "INSPECT_BATCH_WAIT_MS": str(settings.inspect_batch_wait_ms),
        "BROKER_VISIBILITY_TIMEOUT": str(settings.visibility_timeout_s),
        "MODEL_THREADS": str(settings.model_threads),
        "SPOOL_DIR": str(settings.spool_dir),
        "MAX_QUEUE_LENGTH": str(settings.max_queue_length),
    }
    # Unset means "from the checkpoint": leave these out rather than write a value.
    if settings.model_checkpoint is not None:
        env["MODEL_CHECKPOINT"] = str(settings.model_checkpoint)
    if settings.match_threshold is not None:
        env["MATCH_THRESHOLD"] = repr(settings.match_threshold)
    return env


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once."""
    return settings_from_env()
