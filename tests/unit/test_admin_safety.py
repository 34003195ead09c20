"""Near-duplicate labels, the plant time zone setting and the ``localtime`` filter."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from flask import Flask

from admin import timezone
from admin.labels import near_duplicates, normal_form
from admin.review_queue import parse_time
from core.settings import SettingsError, settings_from_env

SAMPLE_LABELS = [
    "crazing",
    "inclusion",
    "patches",
    "pitted_surface",
    "rolled-in_scale",
    "scratches",
]


@pytest.mark.parametrize(
    ("name", "similar"),
    [
        ("Scratch", ["scratches"]),  # case and plural
        ("scratch", ["scratches"]),
        ("SCRATCHES", ["scratches"]),
        ("Pitted Surface", ["pitted_surface"]),  # separators
        ("pitted-surfaces", ["pitted_surface"]),
        ("rolled in scale", ["rolled-in_scale"]),
        ("crazng", ["crazing"]),  # a typing slip
        ("inclusions", ["inclusion"]),
        ("patch", ["patches"]),
        ("dents", []),
        ("scale", []),
        ("scratches", []),  # itself is not a near-duplicate
    ],
)
def test_near_duplicates(name, similar):
    assert near_duplicates(name, SAMPLE_LABELS) == similar


def test_the_normal_form_drops_case_separators_and_plurals():
    assert normal_form("Rolled-In_Scale ") == "rolled in scale"
    assert normal_form("boxes") == normal_form("box") == "box"
    assert normal_form("cavities") == "cavity"
    assert normal_form("glass") == "glass"


def test_the_most_alike_comes_first():
    assert near_duplicates("scratch", ["scratched", "scratches"]) == ["scratches", "scratched"]


def test_plant_timezone_is_an_iana_name():
    assert settings_from_env({}).plant_timezone == "UTC"
    assert settings_from_env({"PLANT_TIMEZONE": " Europe/Berlin "}).plant_timezone == (
        "Europe/Berlin"
    )
    for bad in ("Mars/Base", "Europe", "../../etc/passwd", "CET+1"):
        with pytest.raises(SettingsError, match="PLANT_TIMEZONE must be an IANA time zone"):
            settings_from_env({"PLANT_TIMEZONE": bad})


def test_localtime_shows_utc_on_the_plant_clock():
    app = Flask(__name__)
    app.config["PLANT_TIMEZONE"] = "Europe/Berlin"
    timezone.init_app(app)
    winter = datetime(2026, 1, 15, 23, 30, 5, tzinfo=UTC)
    with app.app_context():
        assert timezone.localtime(winter) == "2026-01-16 00:30:05 CET"
        assert timezone.localtime(winter, "date") == "2026-01-16"
        assert timezone.localtime(datetime(2026, 7, 1, 12, 0), "minutes") == (
            "2026-07-01 14:00 CEST"  # naive: stored UTC
        )
        assert timezone.localtime(None) == "–"
        render = app.jinja_env.from_string("{{ t|localtime }} {{ plant_timezone }}")
        assert render.render(t=winter) == "2026-01-16 00:30:05 CET Europe/Berlin"
    with pytest.raises(ValueError, match="PLANT_TIMEZONE"):
        bad = Flask(__name__)
        bad.config["PLANT_TIMEZONE"] = "Nowhere/Town"
        timezone.init_app(bad)


def test_typed_times_are_read_on_the_plant_clock():
    berlin = timezone.load_zone("Europe/Berlin")
    assert parse_time("2026-01-15T10:30", berlin) == datetime(2026, 1, 15, 9, 30, tzinfo=UTC)
    assert parse_time("2026-01-15T10:30") == datetime(2026, 1, 15, 10, 30, tzinfo=UTC)
    # an offset written with the time wins
    assert parse_time("2026-01-15T10:30+00:00", berlin) == datetime(2026, 1, 15, 10, 30, tzinfo=UTC)
    assert parse_time("0001-01-01T00:30", berlin) is None  # before year 1 in UTC
    assert parse_time("yesterday", berlin) is None
