"""``flask --app admin make-report coil ID`` and ``make-report shift "YYYY-MM-DD HH:MM"``:
a report made now, as the Reports page makes one (kept and listed there)."""

from __future__ import annotations

from collections.abc import Callable

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy.orm import Session

from admin.timezone import plant_zone
from core.blobs import BlobStore
from core.db import session_scope
from core.reports import make_coil_report, make_shift_report, report_path
from core.settings import get_settings
from core.shifts import ShiftClock
from core.tables import Report


@click.group("make-report")
def make_report_command() -> None:
    """Make a coil or shift report now (PDF and CSV, listed on the Reports page)."""


@make_report_command.command("coil")
@click.argument("coil_id")
@click.option("--by", "user", default="cli", show_default=True, help="recorded as who made it")
@with_appcontext
def coil_command(coil_id: str, user: str) -> None:
    """The report of coil COIL_ID."""
    settings = get_settings()
    make_and_say(
        lambda session, store: make_coil_report(
            session, store, coil_id.strip(), user, settings.line_name, zone=plant_zone()
        )
    )


@make_report_command.command("shift")
@click.argument("start")
@click.option("--by", "user", default="cli", show_default=True, help="recorded as who made it")
@with_appcontext
def shift_command(start: str, user: str) -> None:
    """The report of the shift that starts at START ("YYYY-MM-DD HH:MM", plant time:
    the date the shift starts on, and one of the SHIFTS start times)."""
    settings = get_settings()
    clock = ShiftClock(settings.shift_starts, plant_zone())
    make_and_say(
        lambda session, store: make_shift_report(
            session, store, start, user, settings.line_name, clock=clock
        )
    )


def make_and_say(make: Callable[[Session, BlobStore], Report]) -> None:
    try:
        with session_scope(current_app.config["DATABASE_URL"]) as session:
            report = make(session, BlobStore(current_app.config["BLOB_DIR"]))
            number, kind, subject = report.id, report.kind, report.subject
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"made report {number}: {kind} {subject}; on the site at {report_path(number)} "
        f"({report_path(number, 'pdf')}, {report_path(number, 'csv')})"
    )
