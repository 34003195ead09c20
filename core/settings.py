"""Typed settings, read once from the environment, validated at start-up.

Each variable is declared once, below: its type, default, environment name and
what it means (pydantic-settings). The README's table of variables is printed
from these declarations (``python -m core.settings``) and a test checks that
the README holds exactly that table.

Nothing is read at import time: call ``get_settings()``. Defaults make the demo
run with no variables set; production (``INSPECTION_ENV=production``) requires
``SECRET_KEY``. An empty variable counts as unset.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from datetime import time as dt_time
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, JsonValue, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SettingsError(ValueError):
    """A configuration value is missing or malformed; the message says which and how."""


def setting(default: Any, env: str, description: str, shown: str | None = None, **kw: Any) -> Any:
    """A field read from the environment variable ``env``; ``shown`` is the default
    as the README's table says it, where the value itself would not help."""
    extra: dict[str, JsonValue] | None = {"shown_default": shown} if shown else None
    return Field(default, alias=env, description=description, json_schema_extra=extra, **kw)


Positive = Annotated[int, Field(ge=1)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        frozen=True,
        extra="ignore",
        case_sensitive=True,
        env_ignore_empty=True,
        validate_by_name=True,  # Settings(database_url=...) in code, DATABASE_URL outside
        validate_default=True,
    )

    database_url: str = setting(
        "sqlite:///var/inspection.db",
        "DATABASE_URL",
        "SQLAlchemy URL; PostgreSQL: `postgresql+psycopg://user:pass@host/db`",
    )
    redis_url: str = setting("redis://localhost:6379/0", "REDIS_URL", "Celery broker")
    blob_dir: Path = setting(
        Path("var/blobs"),
        "BLOB_DIR",
        "image store (a shared volume when workers run on several hosts)",
    )
    inbox_dir: Path = setting(
        Path("var/inbox"), "INBOX_DIR", "the only folder `image_path` jobs may point into"
    )
    model_checkpoint: Path | None = setting(
        None,
        "MODEL_CHECKPOINT",
        "checkpoint workers and admin load; `model/weights/five-view.pt` for lines that need "
        "the accuracy on fine textures more than the throughput",
        shown="`model/weights/default.pt`",
    )
    frame_checkpoint: Path | None = setting(
        None,
        "FRAME_CHECKPOINT",
        "checkpoint whose local features build cameras' good-surface memories (frames and "
        "findings); findings are named by `MODEL_CHECKPOINT`",
        shown="`model/weights/frames.pt` where shipped, else `MODEL_CHECKPOINT`",
    )
    model_device: str = setting(
        "auto", "MODEL_DEVICE", "`auto` (CUDA when present), `cpu`, `cuda`, `cuda:1`"
    )
    match_threshold: Annotated[float, Field(gt=0)] | None = setting(
        None,
        "MATCH_THRESHOLD",
        "overrides the calibrated match threshold",
        shown="from the checkpoint",
    )
    max_image_bytes: Positive = setting(
        8 * 1024 * 1024, "MAX_IMAGE_BYTES", "larger images are rejected"
    )
    max_image_pixels: Positive = setting(
        40_000_000, "MAX_IMAGE_PIXELS", "images with more pixels are rejected"
    )
    environment: Literal["demo", "production"] = setting(
        "demo",
        "INSPECTION_ENV",
        "`production` requires `SECRET_KEY` and turns on secure cookies",
    )
    secret_key: str = setting(
        "",
        "SECRET_KEY",
        "Flask sessions and CSRF; required in production",
        shown="random per run in demo",
        repr=False,
    )
    cookie_secure: bool | None = setting(
        None, "COOKIE_SECURE", "session cookies over HTTPS only", shown="on in production"
    )
    plant_timezone: str = setting(
        "UTC",
        "PLANT_TIMEZONE",
        "IANA time zone the site shows times in and reads typed times as, such as "
        "`Europe/Berlin`; the database, the CSV export and the API keep UTC",
    )
    log_level: str = setting("INFO", "LOG_LEVEL", "logging level")
    log_format: Literal["text", "json"] = setting(
        "text", "LOG_FORMAT", "`json`: one JSON object per line, job ids as fields"
    )
    worker_metrics_port: Annotated[int, Field(ge=0)] = setting(
        9808,
        "WORKER_METRICS_PORT",
        "each worker's Prometheus endpoint (next free port if taken; `0`: none)",
    )
    worker_metrics_host: str = setting(
        "127.0.0.1",
        "WORKER_METRICS_HOST",
        "the address it listens on; it has no login, so only this machine by default "
        "(compose: `0.0.0.0` on its private network)",
    )
    worker_remote_control: bool = setting(
        False,
        "WORKER_REMOTE_CONTROL",
        "`1` turns on Celery's remote control (`celery inspect`, Flower's controls); off, "
        "since anyone who reaches Redis could stop the workers with it",
        shown="`0`",
    )
    inspect_batch_size: Positive = setting(
        32, "INSPECT_BATCH_SIZE", "a worker embeds up to this many jobs in one forward pass"
    )
    inspect_batch_wait_ms: Positive = setting(
        50, "INSPECT_BATCH_WAIT_MS", "... or what has arrived after this many milliseconds"
    )
    model_threads: Annotated[int, Field(ge=0)] = setting(
        0, "MODEL_THREADS", "torch threads per worker process", shown="cores / processes"
    )
    visibility_timeout_s: Annotated[int, Field(ge=5)] = setting(
        600,
        "BROKER_VISIBILITY_TIMEOUT",
        "the last resort: seconds before any job held unacknowledged goes back to the queue",
    )
    worker_lost_after_s: Annotated[float, Field(ge=1, le=300)] = setting(
        10.0,
        "WORKER_LOST_AFTER_S",
        "a worker silent this long is lost: another worker puts its jobs back on the queue "
        "(its heartbeat thread beats every fifth of it, even during a long batch)",
    )
    spool_dir: Path = setting(
        Path("var/spool"),
        "SPOOL_DIR",
        "producers keep here what Redis could not take, and send it when it answers",
    )
    max_queue_length: Positive = setting(
        5000, "MAX_QUEUE_LENGTH", "producers wait while the queue is this long (backpressure)"
    )
    spool_max_bytes: Positive = setting(
        1024**3,
        "SPOOL_MAX_BYTES",
        "a producer whose spool holds this much waits for Redis instead of spooling more "
        "(nothing is dropped; README, *Overload*)",
    )
    line_name: str = setting(
        "line-1",
        "LINE_NAME",
        "the line this installation watches: in MQTT topics, reports and webhook payloads",
    )
    coil_end_after_s: Annotated[float, Field(ge=1)] = setting(
        300.0,
        "COIL_END_AFTER_S",
        "a coil with no new frame for this long has ended (its verdict and report are made); "
        "a producer may also end it at once (README, *Coils*)",
    )
    shifts: str = setting(
        "06:00,14:00,22:00",
        "SHIFTS",
        "shift start times in `PLANT_TIMEZONE`, comma-separated; a shift ends when the next "
        "starts, and its report is made then",
    )
    mqtt_url: str | None = setting(
        None,
        "MQTT_URL",
        "MQTT broker results are published to (`mqtt://user:pass@host:1883`); unset: no MQTT",
        shown="none",
        repr=False,
    )
    mqtt_topic_prefix: str = setting(
        "inspection",
        "MQTT_TOPIC_PREFIX",
        "topics are `<prefix>/<LINE_NAME>/<camera>/<event>` (README, *Plant systems*)",
    )
    delivery_max_attempts: Positive = setting(
        12,
        "DELIVERY_MAX_ATTEMPTS",
        "a webhook or MQTT delivery is tried this often (backoff doubling from 2 s up to "
        "10 min) before it is logged as failed",
    )
    event_retention_days: Positive = setting(
        30,
        "EVENT_RETENTION_DAYS",
        "events for plant systems and their delivery log are deleted this many days after "
        "the event, once every delivery of it is done (delivered or failed)",
    )
    webhook_timeout_s: Annotated[float, Field(gt=0)] = setting(
        5.0, "WEBHOOK_TIMEOUT_S", "seconds a plant system's endpoint has to answer"
    )
    worker_dispatch: bool = setting(
        True,
        "WORKER_DISPATCH",
        "`0`: workers do not deliver webhooks and MQTT messages themselves (run "
        "`python -m worker.dispatch` instead; README, *Plant systems*)",
        shown="`1`",
    )

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    @field_validator("environment", "log_format", mode="before")
    @classmethod
    def lower_case(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def upper_case(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def sqlalchemy_url(cls, value: str) -> str:
        if "://" not in value:
            raise ValueError("must be a SQLAlchemy URL, such as postgresql+psycopg://host/db")
        return value

    @field_validator("redis_url")
    @classmethod
    def redis_scheme(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("secret_key")
    @classmethod
    def secret_key_in_production(cls, value: str, info: ValidationInfo) -> str:
        if value:
            return value
        if info.data.get("environment") == "production":
            raise ValueError(
                "is required when INSPECTION_ENV=production; set it to a long random "
                "string shared by all admin processes"
            )
        return secrets.token_hex(32)  # demo: random per run

    @field_validator("plant_timezone")
    @classmethod
    def known_time_zone(cls, value: str) -> str:
        value = value.strip()
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(
                "must be an IANA time zone name, such as Europe/Berlin or UTC"
            ) from None
        return value

    @field_validator("shifts")
    @classmethod
    def shift_times(cls, value: str) -> str:
        starts = [part.strip() for part in value.split(",") if part.strip()]
        try:
            parsed = [dt_time.fromisoformat(part.zfill(5)) for part in starts]
        except (ValueError, TypeError):
            raise ValueError("must be times of day such as 06:00,14:00,22:00") from None
        if not parsed or len(set(parsed)) != len(parsed):
            raise ValueError("must name at least one shift start, each once")
        return ",".join(part.strftime("%H:%M") for part in sorted(parsed))

    @property
    def shift_starts(self) -> list[dt_time]:
        """The shift start times, earliest first (plant time)."""
        return [dt_time.fromisoformat(part) for part in self.shifts.split(",")]

    @field_validator("mqtt_url")
    @classmethod
    def mqtt_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("mqtt://", "mqtts://")):
            raise ValueError("must start with mqtt:// or mqtts://")
        return value

    @field_validator("cookie_secure")
    @classmethod
    def secure_in_production(cls, value: bool | None, info: ValidationInfo) -> bool:
        return value if value is not None else info.data.get("environment") == "production"


# What pydantic says, as this project says it to whoever set the variable.
MESSAGES = {
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "bool_parsing": "must be 1/true/yes or 0/false/no",
}


def explain(error: ValidationError) -> str:
    """The first fault of ``error``, naming the variable, what it must be and what it was."""
    fault = error.errors()[0]
    name = str(fault["loc"][0]) if fault["loc"] else "a setting"
    field = Settings.model_fields.get(name)
    variable = field.alias if field is not None and field.alias else name
    kind, context = fault["type"], fault.get("ctx") or {}
    if kind in MESSAGES:
        what = MESSAGES[kind]
    elif kind in ("greater_than_equal", "greater_than"):
        what = f"must be at least {context.get('ge', context.get('gt'))}"
    elif kind == "literal_error":
        what = f"must be one of {context.get('expected', '')}"
    else:
        what = str(fault["msg"]).removeprefix("Value error, ")
    return f"{variable} {what}, got {fault.get('input')!r}"


def settings_from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Build and validate settings from a mapping of variables (``os.environ`` by default)."""
    values = {key: value for key, value in (os.environ if env is None else env).items() if value}
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        raise SettingsError(explain(exc)) from None


def settings_to_env(settings: Settings) -> dict[str, str]:
    """The environment variables that ``settings_from_env`` reads back as ``settings``.

    For starting another process (a worker, the admin) with these settings. Unset
    values ("from the checkpoint") are left out rather than written.
    """
    env = {}
    for name, field in Settings.model_fields.items():
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, bool):
            value = "1" if value else "0"
        env[field.alias or name] = repr(value) if isinstance(value, float) else str(value)
    return env


def markdown_table() -> str:
    """The README's table of variables, from the declarations above."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for field in Settings.model_fields.values():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        shown = extra.get("shown_default") or f"`{field.default}`"
        lines.append(f"| `{field.alias}` | {shown} | {field.description} |")
    return "\n".join(lines)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once."""
    return settings_from_env()


if __name__ == "__main__":
    print(markdown_table())  # noqa: T201 (the command prints the table)
