"""Coil and shift reports (issue #31 item 3) on PostgreSQL: made on demand (core, the
site, the CLI), made by the scheduler's tick at a coil's and a shift's end exactly
once, made by a real worker by itself after a coil's last frame, listed and served
by the site, and made and downloaded in a real Chromium.

The PDFs are checked as PDFs (header, pages, end of file); the text in them is read
from the same report rendered without compression in a core font, whose text
stands in the file as written.
"""

from __future__ import annotations

import csv
import io
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import redis
from sqlalchemy import func, select

from admin.auth import create_user
from core.blobs import BlobStore
from core.coil_verdicts import judge_ended_coils
from core.coils import record_frames
from core.db import session_scope
from core.jobs import Trace
from core.report_files import CSV_COLUMNS, render_pdf
from core.reports import coil_content, make_coil_report, make_shift_report, shift_content
from core.results import insert_inspections
from core.shifts import ShiftClock
from core.tables import Coil, CoilRule, Event, Finding, Report, utcnow
from producer.client import InspectionClient
from tests.conftest import csrf_token, sample_images, seed_references
from tests.integration.browser import admin_server
from tests.integration.conftest import logged_in
from worker.inspection import base_row
from worker.schedule import LOCK_KEY, LOCK_MS, Scheduler, tick

BERLIN = ZoneInfo("Europe/Berlin")


def frame(
    coil_id: str | None,
    processed_at: datetime,
    status: str = "passed",
    label: str | None = None,
    position_m: float | None = None,
    camera: str = "cam-top",
    review_state: str = "pending",
    review_label: str | None = None,
    coil_end: bool = False,
    findings: tuple[tuple[str, float], ...] = (),
) -> dict:
    """A row as a worker writes it, with its findings ((label, score), ...) and whether
    it ends its coil, under the keys ``_findings`` and ``_end``."""
    row = base_row(
        job_id=str(uuid.uuid4()),
        camera=camera,
        status=status,
        label=label or ("ok" if status == "passed" else None),
        dissimilarity=0.9 if status == "flagged" else 0.2,
        threshold=0.8,
        model_version="test",
        received_at=processed_at,
        processed_at=processed_at,
        coil_id=coil_id,
        position_m=position_m,
        across_m=0.4 if coil_id else None,
        review_state=review_state,
        review_label=review_label,
    )
    row["_findings"], row["_end"] = findings, coil_end
    return row


def store_frames(url: str, frames: list[dict]) -> dict[str, int]:
    """Insert the frames, their findings and their coils' counts, as a worker does."""
    rows = [{k: v for k, v in f.items() if not k.startswith("_")} for f in frames]
    with session_scope(url) as session:
        inserted = insert_inspections(session, rows)
        for f in frames:
            for rank, (label, score) in enumerate(f["_findings"]):
                session.add(
                    Finding(
                        inspection_id=inserted[f["job_id"]],
                        rank=rank,
                        x=10 * rank,
                        y=5,
                        width=8,
                        height=8,
                        area=64,
                        score=score,
                        label=label,
                    )
                )
        ending = {f["job_id"] for f in frames if f["_end"]}
        record_frames(session, rows, inserted, ending)
    return inserted


def coil_frames(coil_id: str, start: datetime, end_it: bool = True) -> list[dict]:
    """Ten frames 10 m apart: a frame with a crazing and a scratches finding at 20 m,
    one flagged whole as inclusion at 50 m, one whose scratches finding a supervisor
    called a false alarm at 70 m."""
    frames = []
    for i in range(10):
        at, pos = start + timedelta(seconds=i), 10.0 * i
        if i == 2:
            f = frame(
                coil_id,
                at,
                "flagged",
                "crazing",
                pos,
                findings=(("crazing", 0.93), ("scratches", 0.85)),
            )
        elif i == 5:
            f = frame(coil_id, at, "flagged", "inclusion", pos, camera="cam-bottom")
        elif i == 7:
            f = frame(
                coil_id,
                at,
                "flagged",
                "scratches",
                pos,
                review_state="false_alarm",
                findings=(("scratches", 0.81),),
            )
        else:
            f = frame(coil_id, at, "passed", position_m=pos)
        f["_end"] = end_it and i == 9
        frames.append(f)
    return frames


def add_rule(url: str, label: str, max_count: int) -> None:
    with session_scope(url) as session:
        session.add(CoilRule(label=label, max_count=max_count, created_by="test"))


def is_pdf(data: bytes) -> bool:
    return (
        data.startswith(b"%PDF-1.")
        and data.rstrip().endswith(b"%%EOF")
        and b"/Type /Page" in data
        and b"xref" in data
    )


def read_csv(data: bytes) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(data.decode("utf-8")))
    assert reader.fieldnames == CSV_COLUMNS
    return list(reader)


def automatic_reports(url: str, kind: str, subject: str) -> int:
    with session_scope(url) as session:
        query = select(func.count(Report.id)).where(
            Report.kind == kind, Report.subject == subject, Report.made_by.is_(None)
        )
        return session.scalar(query) or 0


# -- made on demand ------------------------------------------------------------------


def test_a_coil_report_is_a_pdf_and_a_csv_of_its_flagged_frames(settings):
    url, store = settings.database_url, BlobStore(settings.blob_dir)
    coil_id = "C-1001 Łódź"  # not Latin-1: the PDF must still be made
    store_frames(url, coil_frames(coil_id, datetime(2026, 3, 2, 8, 0, tzinfo=UTC)))
    add_rule(url, "crazing", 0)  # any crazing holds the coil
    with session_scope(url) as session:
        assert judge_ended_coils(session, "line-7") == [coil_id]
    with session_scope(url) as session:
        report = make_coil_report(session, store, coil_id, "ada", "line-7", zone=BERLIN)
        report_id = report.id
        content = coil_content(session, coil_id, "ada", "line-7", utcnow())
    with session_scope(url) as session:
        report = session.get(Report, report_id)
        assert (report.kind, report.subject, report.made_by) == ("coil", coil_id, "ada")
        assert report.period_start == datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
        assert report.period_end == datetime(2026, 3, 2, 8, 0, 9, tzinfo=UTC)  # its end
        summary = report.summary
        assert (summary["verdict"], summary["provisional"], summary["state"]) == (
            "hold",
            False,
            "ended",
        )
        assert len(summary["reasons"]) == 1 and "crazing" in summary["reasons"][0]
        assert (summary["frames"], summary["flagged"], summary["findings"]) == (10, 3, 4)
        # as the rules count: the false alarm's scratches left out
        assert summary["by_label"] == {"crazing": 1, "inclusion": 1, "scratches": 1}
        assert summary["review"] == {
            "pending": 2,
            "confirmed": 0,
            "false_alarm": 1,
            "relabeled": 0,
        }
        pdf, rows = store.get(report.pdf_key), read_csv(store.get(report.csv_key))
        (event,) = session.scalars(select(Event).where(Event.kind == "report.ready")).all()
        assert event.payload["line"] == "line-7"
        assert event.payload["report_id"] == report_id
        assert event.payload["kind"] == "coil" and event.payload["subject"] == coil_id
        assert event.payload["pdf"] == f"/reports/{report_id}.pdf"
        assert event.payload["csv"] == f"/reports/{report_id}.csv"
        assert event.payload["summary"]["verdict"] == "hold"
        assert "by_label" not in event.payload["summary"]  # the headline only
        assert event.payload["period"]["start"] == "2026-03-02T08:00:00+00:00"
    assert is_pdf(pdf)
    # one line per finding, and one for the frame flagged whole, along the coil
    assert [(r["position_m"], r["finding"], r["label"], r["review_state"]) for r in rows] == [
        ("20.0", "0", "crazing", "pending"),
        ("20.0", "1", "scratches", "pending"),
        ("50.0", "", "inclusion", "pending"),
        ("70.0", "0", "scratches", "false_alarm"),
    ]
    assert {r["coil_id"] for r in rows} == {coil_id}
    assert rows[2]["camera"] == "cam-bottom" and rows[0]["score"] == "0.93"
    assert rows[0]["processed_at"] == "2026-03-02T08:00:02+00:00"
    # the text, in a core font without compression: the coil, its verdict and why, its
    # period on the plant's clock, its flagged frames
    text = render_pdf(content, BERLIN, compress=False, unicode_font=False)
    assert is_pdf(text)
    for expected in (
        b"Coil report: C-1001 ?\xf3d?",  # what Latin-1 lacks is "?"
        b"HOLD",
        b"2026-03-02 09:00:00 CET",
        b"crazing",
        b"inclusion",
        b"false alarm",
        b"whole frame",
        b"cam-bottom",
        b"by ada",
    ):
        assert expected in text, expected


def test_an_open_coil_is_reported_with_a_provisional_verdict(settings):
    url, store = settings.database_url, BlobStore(settings.blob_dir)
    store_frames(url, coil_frames("C-1002", utcnow() - timedelta(seconds=20), end_it=False))
    with session_scope(url) as session:
        report = make_coil_report(session, store, "C-1002", "sam", "line-1", zone=UTC)
        summary = report.summary
    assert (summary["state"], summary["verdict"], summary["provisional"]) == ("open", "ship", True)
    with session_scope(url) as session:
        assert session.get(Coil, "C-1002").verdict is None  # a report judges nothing
        with pytest.raises(ValueError, match="no coil 'C-404'"):
            make_coil_report(session, store, "C-404", "sam", "line-1", zone=UTC)


def test_a_shift_report_counts_the_frames_of_its_shift_only(settings):
    """The night shift into the day the clocks go forward: 22:00 CET to 06:00 CEST."""
    url, store = settings.database_url, BlobStore(settings.blob_dir)
    clock = ShiftClock(settings.shift_starts, BERLIN)
    night = clock.named("2026-03-28 22:00")
    assert night.end - night.start == timedelta(hours=7)
    inside = night.start + timedelta(hours=1)
    frames = [
        # before and after the shift: not in it
        frame(None, night.start - timedelta(seconds=1), "flagged", "crazing"),
        frame(None, night.end, "flagged", "crazing"),
        # in it: a coil of ten frames (ended), two frames of another (open), frames of
        # no coil, passed, flagged and rejected, on two cameras
        *coil_frames("C-2001", inside),
        frame(
            "C-2002",
            night.end - timedelta(minutes=1),
            "flagged",
            "rolled-in_scale",
            5.0,
            review_state="relabeled",
            review_label="pitted_surface",
            findings=(("rolled-in_scale", 0.88),),
        ),
        frame("C-2002", night.end - timedelta(seconds=30), "passed", position_m=10.0),
        frame(
            None, night.start, "flagged", "patches", camera="cam-bottom", review_state="confirmed"
        ),
        frame(None, inside, "rejected", camera="cam-bottom"),
    ]
    store_frames(url, frames)
    with session_scope(url) as session:
        judge_ended_coils(session, "line-1")
    now = night.end + timedelta(hours=2)
    with session_scope(url) as session:
        report = make_shift_report(
            session, store, "2026-03-28 22:00", "sam", "line-1", clock=clock, now=now
        )
        content = shift_content(session, night.subject, night.start, night.end, "sam", "l", now)
        summary, pdf_key, csv_key = report.summary, report.pdf_key, report.csv_key
        assert (report.period_start, report.period_end) == (night.start, night.end)
        assert report.subject == "2026-03-28 22:00"
    assert summary["complete"] is True
    assert (summary["frames"], summary["passed"], summary["flagged"], summary["rejected"]) == (
        14,
        8,
        5,
        1,
    )
    assert summary["by_label"] == {
        "crazing": 1,
        "inclusion": 1,
        "patches": 1,
        "rolled-in_scale": 1,
        "scratches": 1,
    }
    assert summary["by_camera"] == [
        {"camera": "cam-bottom", "frames": 3, "passed": 0, "flagged": 2, "rejected": 1},
        {"camera": "cam-top", "frames": 11, "passed": 8, "flagged": 3, "rejected": 0},
    ]
    assert summary["coils"] == [
        {"coil_id": "C-2001", "frames": 10, "flagged": 3, "verdict": "ship", "ended": True},
        {"coil_id": "C-2002", "frames": 2, "flagged": 1, "verdict": None, "ended": False},
    ]
    assert summary["review"] == {"pending": 2, "confirmed": 1, "false_alarm": 1, "relabeled": 1}
    rows = read_csv(store.get(csv_key))
    assert [(r["label"], r["coil_id"]) for r in rows] == [
        ("patches", ""),
        ("crazing", "C-2001"),
        ("scratches", "C-2001"),
        ("inclusion", "C-2001"),
        ("scratches", "C-2001"),
        ("rolled-in_scale", "C-2002"),
    ]
    assert rows[-1]["review_label"] == "pitted_surface"
    assert is_pdf(store.get(pdf_key))
    text = render_pdf(content, BERLIN, compress=False, unicode_font=False)
    for expected in (
        b"Shift report: 2026-03-28 22:00",
        b"2026-03-28 22:00:00 CET",
        b"2026-03-29 06:00:00 CEST",
        b"C-2002",
        b"pitted_surface",
        b"cam-bottom",
    ):
        assert expected in text, expected
    # a shift not started yet has nothing to report; a time that starts no shift is named
    with session_scope(url) as session:
        with pytest.raises(ValueError, match="has not started"):
            make_shift_report(session, store, "2026-03-30 06:00", None, "l", clock=clock, now=now)
        with pytest.raises(ValueError, match="06:00, 14:00, 22:00"):
            make_shift_report(session, store, "2026-03-28 23:00", None, "l", clock=clock, now=now)


# -- made by the scheduler -------------------------------------------------------------


def mid_shift(settings) -> datetime:
    """Four hours into yesterday's 06:00 shift: a clock time whose last ten minutes
    end no shift (the tick would report that shift too, just after 14:00 or 22:00)."""
    yesterday = utcnow() - timedelta(days=1)
    return ShiftClock.from_settings(settings).named(f"{yesterday:%Y-%m-%d} 06:00").start + (
        timedelta(hours=4)
    )


def test_the_tick_ends_an_idle_coil_judges_it_and_reports_it_once(settings):
    url, store = settings.database_url, BlobStore(settings.blob_dir)
    settings = settings.model_copy(update={"coil_end_after_s": 300.0})
    now = mid_shift(settings)
    store_frames(url, coil_frames("C-3001", now - timedelta(minutes=10), end_it=False))
    store_frames(url, coil_frames("C-3002", now - timedelta(seconds=30), end_it=False))
    add_rule(url, "crazing", 0)
    with session_scope(url) as session:
        first = tick(session, store, settings, now)
    assert (first.ended, first.judged, first.failed) == (["C-3001"], ["C-3001"], [])
    assert len(first.reports) == 1
    with session_scope(url) as session:
        coil = session.get(Coil, "C-3001")
        assert (coil.verdict, coil.ended_at) == ("hold", coil.last_frame_at)
        assert session.get(Coil, "C-3002").ended_at is None  # still running
        report = session.get(Report, first.reports[0])
        assert (report.kind, report.subject, report.made_by) == ("coil", "C-3001", None)
        assert report.summary["verdict"] == "hold" and report.summary["provisional"] is False
        kinds = session.scalars(select(Event.kind).order_by(Event.id)).all()
        assert kinds == ["coil.verdict", "report.ready"]
    # a person's report of it does not stand in for the automatic one, nor the reverse
    with session_scope(url) as session:
        make_coil_report(session, store, "C-3001", "sam", "line-1", zone=UTC)
    for _ in range(2):
        with session_scope(url) as session:
            again = tick(session, store, settings, now + timedelta(seconds=5))
        assert (again.ended, again.judged, again.reports, again.failed) == ([], [], [], [])
    assert automatic_reports(url, "coil", "C-3001") == 1
    # the other coil, once idle long enough
    with session_scope(url) as session:
        later = tick(session, store, settings, now + timedelta(minutes=6))
    assert (later.ended, later.judged, len(later.reports)) == (["C-3002"], ["C-3002"], 1)
    assert automatic_reports(url, "coil", "C-3002") == 1


def test_the_tick_reports_each_ended_shift_with_frames_once(settings):
    url, store = settings.database_url, BlobStore(settings.blob_dir)
    settings = settings.model_copy(update={"plant_timezone": "Europe/Berlin"})
    clock = ShiftClock.from_settings(settings)
    shift = clock.named("2026-06-10 14:00")  # the shifts before it had no frame
    store_frames(
        url,
        [frame(None, shift.start + timedelta(hours=h), "flagged", "crazing") for h in (0, 3, 7)],
    )
    with session_scope(url) as session:  # a person's report, while the shift ran
        make_shift_report(
            session,
            store,
            shift.subject,
            "sam",
            "l",
            clock=clock,
            now=shift.start + timedelta(hours=4),
        )
    with session_scope(url) as session:  # at its end: frames may still be being stored
        assert tick(session, store, settings, shift.end + timedelta(seconds=10)).reports == []
    with session_scope(url) as session:
        made = tick(session, store, settings, shift.end + timedelta(minutes=5))
    assert len(made.reports) == 1 and made.failed == []
    with session_scope(url) as session:
        report = session.get(Report, made.reports[0])
        assert (report.kind, report.subject, report.made_by) == ("shift", shift.subject, None)
        assert report.summary["frames"] == 3 and report.summary["complete"] is True
        assert (report.period_start, report.period_end) == (shift.start, shift.end)
    for minutes in (6, 60, 600):  # later ticks, the next shifts without frames: nothing
        with session_scope(url) as session:
            assert (
                tick(session, store, settings, shift.end + timedelta(minutes=minutes)).reports == []
            )
    assert automatic_reports(url, "shift", shift.subject) == 1
    # more than a day later, a shift is no longer looked for
    with session_scope(url) as session:
        session.execute(Report.__table__.delete().where(Report.made_by.is_(None)))
    with session_scope(url) as session:
        assert tick(session, store, settings, shift.end + timedelta(hours=25)).reports == []


def test_a_tick_that_fails_is_finished_by_the_next(settings, tmp_path):
    url, now = settings.database_url, mid_shift(settings)
    store_frames(url, coil_frames("C-3101", now - timedelta(minutes=10)))
    broken = tmp_path / "not-a-folder"
    broken.write_text("the image store cannot be made here")
    with session_scope(url) as session:
        failed = tick(session, BlobStore(broken), settings, now)
    # the coil's verdict stands; its report failed, and is not half made
    assert (failed.judged, failed.reports, failed.failed) == (
        ["C-3101"],
        [],
        ["report coil C-3101"],
    )
    with session_scope(url) as session:
        assert session.get(Coil, "C-3101").verdict == "ship"
        assert session.scalar(select(func.count(Report.id))) == 0
        assert session.scalar(select(func.count(Event.id)).where(Event.kind == "report.ready")) == 0
    with session_scope(url) as session:
        again = tick(session, BlobStore(settings.blob_dir), settings, now + timedelta(seconds=5))
    assert (again.judged, len(again.reports), again.failed) == ([], 1, [])


def test_only_the_worker_holding_the_lock_ticks(settings):
    client = redis.Redis.from_url(settings.redis_url)
    ours, theirs = Scheduler(settings), Scheduler(settings)
    try:
        client.set(LOCK_KEY, "another worker", px=LOCK_MS)
        assert ours.round() is None  # another worker ticks
        assert client.get(LOCK_KEY) == b"another worker"  # and keeps its lock
        client.delete(LOCK_KEY)
        assert ours.round() is not None
        assert client.get(LOCK_KEY) is None  # released after the tick
        assert ours.interval_s <= 5.0
    finally:
        ours.client.close()
        theirs.client.close()
        client.close()


def test_a_worker_reports_a_coil_by_itself_after_its_last_frame(settings, start_worker):
    settings = settings.model_copy(update={"coil_end_after_s": 2.0})
    seed_references(settings)
    worker = start_worker(settings)
    with InspectionClient(settings) as client:
        for i, path in enumerate(sample_images()[:4]):
            client.submit_file(path, "cam-top", trace=Trace(coil_id="C-4001", position_m=5.0 * i))
    deadline = time.monotonic() + 120
    while automatic_reports(settings.database_url, "coil", "C-4001") == 0:
        assert time.monotonic() < deadline, worker.output()[-3000:]
        time.sleep(0.5)
    time.sleep(3)  # more ticks: still one
    assert automatic_reports(settings.database_url, "coil", "C-4001") == 1
    with session_scope(settings.database_url) as session:
        coil = session.get(Coil, "C-4001")
        assert coil.frames == 4 and coil.ended_at is not None and coil.verdict is not None
        report = session.scalars(select(Report).where(Report.subject == "C-4001")).one()
        assert report.summary["frames"] == 4
        assert is_pdf(BlobStore(settings.blob_dir).get(report.pdf_key))
        ready = session.scalars(select(Event).where(Event.kind == "report.ready")).one()
        assert ready.payload["report_id"] == report.id
    assert "Traceback" not in worker.output()


# -- the site and the CLI --------------------------------------------------------------


def test_the_site_makes_lists_and_serves_reports(app, settings):
    url = settings.database_url
    store_frames(url, coil_frames("C-5001", datetime(2026, 3, 2, 8, 0, tzinfo=UTC)))
    client = logged_in(app, "sam", "supervisor-password")
    token = csrf_token(client, "/reports")
    page = client.get("/reports").get_data(as_text=True)
    assert 'href="/reports"' in page  # in the menu
    assert 'name="coil_id"' in page and "<option selected>" in page

    made = client.post("/reports/coil", data={"csrf_token": token, "coil_id": "C-5001"})
    assert made.status_code == 302
    shift = client.post(
        "/reports/shift", data={"csrf_token": token, "day": "2026-03-02", "start": "06:00"}
    )
    assert shift.status_code == 302
    with session_scope(url) as session:
        coil_report, shift_report = session.scalars(select(Report).order_by(Report.id)).all()
        assert (coil_report.kind, coil_report.made_by) == ("coil", "sam")
        assert (shift_report.kind, shift_report.subject) == ("shift", "2026-03-02 06:00")
        assert shift_report.summary["frames"] == 10
    listing = client.get("/reports").get_data(as_text=True)
    for report in (coil_report, shift_report):
        assert f'id="report-{report.id}"' in listing
        assert f'href="/reports/{report.id}.pdf"' in listing
        assert f'href="/reports/{report.id}.csv"' in listing
        assert f'href="/reports/{report.id}"' in listing
    assert "2026-03-02 08:00 UTC – 2026-03-02 08:00 UTC" in listing  # the coil's period

    pdf = client.get(f"/reports/{coil_report.id}.pdf")
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    assert pdf.headers["Content-Disposition"] == (
        f"attachment; filename=coil-C-5001-report-{coil_report.id}.pdf"
    )
    assert is_pdf(pdf.data)
    got_csv = client.get(f"/reports/{shift_report.id}.csv")
    assert got_csv.mimetype == "text/csv"
    assert "filename=shift-2026-03-02-06-00-report-" in got_csv.headers["Content-Disposition"]
    assert len(read_csv(got_csv.data)) == 4
    printable = client.get(f"/reports/{coil_report.id}").get_data(as_text=True)
    assert "Coil report: C-5001" in printable and "reports.js" in printable
    assert printable.count("<tr>") >= 4 and "whole frame" in printable
    assert client.get("/reports/999.pdf").status_code == 404

    # what cannot be made says why
    refused = client.post(
        "/reports/coil", data={"csrf_token": token, "coil_id": "C-404"}, follow_redirects=True
    )
    assert "no coil &#39;C-404&#39;" in refused.get_data(as_text=True)
    refused = client.post(
        "/reports/shift",
        data={"csrf_token": token, "day": "2026-03-02", "start": "07:00"},
        follow_redirects=True,
    )
    assert "no shift starts at 07:00" in refused.get_data(as_text=True)
    refused = client.post(
        "/reports/shift",
        data={"csrf_token": token, "day": "soon", "start": "06:00"},
        follow_redirects=True,
    )
    assert "YYYY-MM-DD" in refused.get_data(as_text=True)
    # no token: refused; no session: sent to log in
    assert client.post("/reports/coil", data={"coil_id": "C-5001"}).status_code in (302, 400)
    anonymous = app.test_client()
    assert "/login" in anonymous.get(f"/reports/{coil_report.id}.pdf").headers["Location"]
    with session_scope(url) as session:
        assert session.scalar(select(func.count(Report.id))) == 2


def test_reports_from_the_command_line(app, settings):
    store_frames(settings.database_url, coil_frames("C-6001", datetime(2026, 3, 2, 8, tzinfo=UTC)))
    runner = app.test_cli_runner()
    result = runner.invoke(args=["make-report", "coil", "C-6001"])
    assert result.exit_code == 0, result.output
    assert re.match(r"made report \d+: coil C-6001; on the site at /reports/\d+", result.output)
    result = runner.invoke(args=["make-report", "shift", "2026-03-02 06:00", "--by", "ops"])
    assert result.exit_code == 0, result.output
    with session_scope(settings.database_url) as session:
        made = session.scalars(select(Report).order_by(Report.id)).all()
        assert [(r.kind, r.subject, r.made_by) for r in made] == [
            ("coil", "C-6001", "cli"),
            ("shift", "2026-03-02 06:00", "ops"),
        ]
    result = runner.invoke(args=["make-report", "shift", "2026-03-02"])
    assert result.exit_code == 1 and "YYYY-MM-DD HH:MM" in result.output
    result = runner.invoke(args=["make-report", "coil", "C-404"])
    assert result.exit_code == 1 and "no coil 'C-404'" in result.output


# -- in the browser ------------------------------------------------------------------


def test_a_shift_report_made_in_the_browser_downloads_as_a_pdf(
    settings, page, tmp_path, screenshots
):
    settings = settings.model_copy(update={"plant_timezone": "Europe/Berlin"})
    clock = ShiftClock.from_settings(settings)
    shift = clock.named("2026-03-28 22:00")
    store_frames(settings.database_url, coil_frames("C-7001", shift.start + timedelta(hours=2)))
    with session_scope(settings.database_url) as session:
        create_user(session, "rita", "rita-password", "supervisor")
    with admin_server(settings, tmp_path / "admin.log") as site:
        page.goto(f"{site}/login")
        page.fill("input[name=username]", "rita")
        page.fill("input[name=password]", "rita-password")
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r"/inspections"))
        page.click("nav >> text=Reports")
        page.wait_for_url(re.compile(r"/reports$"))
        page.fill("#report-shift-day", "2026-03-28")
        page.select_option("#report-shift-start", "22:00")
        page.click("#shift-report-form button[type=submit]")
        row = page.locator("tr[data-kind=shift][data-subject='2026-03-28 22:00']")
        row.wait_for()
        page.screenshot(path=str(screenshots / "reports.png"), full_page=True)
        assert "rita" in row.inner_text()
        assert "2026-03-28 22:00 CET – 2026-03-29 06:00 CEST" in row.inner_text()
        with page.expect_download() as download_info:
            row.locator("a.pdf").click()
        download = download_info.value
        assert re.fullmatch(r"shift-2026-03-28-22-00-report-\d+\.pdf", download.suggested_filename)
        data = open(download.path(), "rb").read()
        assert is_pdf(data)
        # the printable page, as printed: no menu
        row.locator("a.page").click()
        page.wait_for_url(re.compile(r"/reports/\d+$"))
        page.screenshot(path=str(screenshots / "report-page.png"), full_page=True)
        page.emulate_media(media="print")
        assert page.locator("nav#site-nav").is_hidden()
        assert page.locator("h1").inner_text() == "Shift report: 2026-03-28 22:00"
        page.screenshot(path=str(screenshots / "report-print.png"), full_page=True)
