"""The plant's time zone on the site: times are stored, exported (CSV) and served
(API) in UTC; pages show them, and read the times people type, in the plant's local
time (``PLANT_TIMEZONE``), since shifts run on it.

Templates write ``{{ row.processed_at|localtime }}``: ``2026-03-01 11:00:00 CET``.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Flask, current_app, has_app_context

from core.settings import get_settings

#: what ``localtime`` writes for each precision; the zone's abbreviation says which
#: clock it is, and changes with daylight saving time (CET, CEST)
FORMATS = {
    "seconds": "%Y-%m-%d %H:%M:%S %Z",
    "minutes": "%Y-%m-%d %H:%M %Z",
    "date": "%Y-%m-%d",
}


def plant_zone() -> tzinfo:
    """The running app's plant time zone."""
    zone: tzinfo = current_app.extensions["plant_zone"]
    return zone


def site_zone() -> tzinfo:
    """The plant time zone within the site's app; UTC outside it (a CLI, a script)."""
    if has_app_context() and "plant_zone" in current_app.extensions:
        return plant_zone()
    return UTC


def to_plant(value: datetime) -> datetime:
    """``value`` on the plant's clock; a naive value is taken as UTC, as stored."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(plant_zone())


def localtime(value: datetime | float | None, precision: str = "seconds") -> str:
    """The template filter: ``value`` (a datetime, or a Unix time as Redis keeps
    them) in plant time, with the zone's abbreviation."""
    if value is None:
        return "–"
    if isinstance(value, int | float):
        value = datetime.fromtimestamp(value, UTC)
    return to_plant(value).strftime(FORMATS[precision])


def load_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"PLANT_TIMEZONE must be an IANA time zone name, such as Europe/Berlin; got {name!r}"
        ) from None


def init_app(app: Flask) -> None:
    # PLANT_TIMEZONE from the app's config (tests set it there), else the setting
    if "PLANT_TIMEZONE" not in app.config:
        app.config["PLANT_TIMEZONE"] = get_settings().plant_timezone
    name = app.config["PLANT_TIMEZONE"]
    app.extensions["plant_zone"] = load_zone(name)
    app.add_template_filter(localtime, "localtime")
    app.add_template_global(name, "plant_timezone")
