"""Traceability without services: coils counted on SQLite (the demo's database) as
workers count them, producers' traces made and refused, hot-folder sidecars read, and
cameras' places on the strip checked. tests/integration/test_traceability.py sends
traced jobs through PostgreSQL, Redis and a real worker."""

from __future__ import annotations

import argparse
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from core.camera_positions import (
    check_camera_across,
    check_frame_length,
    set_camera_position,
)
from core.coils import place_frames, record_frames
from core.db import session_scope
from core.jobs import JobInvalid, Trace
from core.migrate import upgrade_to_head
from core.results import insert_inspections
from core.tables import Camera, Coil
from producer.__main__ import main, replay_trace, submit_traces
from producer.hotfolder import SidecarInvalid, job_id_for_file, read_trace
from worker.inspection import base_row

T0 = datetime(2026, 12, 5, 10, tzinfo=UTC)


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'coils.db'}"
    upgrade_to_head(url)
    return url


def frame(coil: str | None, n: int, status: str = "passed", **trace) -> dict:
    """A row as a worker stores it, ``n`` seconds after T0."""
    return base_row(
        job_id=str(uuid.uuid4()),
        camera="strip-cam",
        status=status,
        coil_id=coil,
        frame_index=trace.pop("frame_index", n),
        received_at=T0 + timedelta(seconds=n),
        processed_at=T0 + timedelta(seconds=n),
        **trace,
    )


def store(url: str, rows: list[dict], ending: set[str] = frozenset()) -> set[str]:
    """What a worker does with a batch: place, insert, count (one transaction)."""
    with session_scope(url) as session:
        place_frames(session, rows)
        inserted = insert_inspections(session, rows)
        return record_frames(session, rows, inserted, ending)


def coil(url: str, coil_id: str) -> Coil:
    with session_scope(url) as session:
        row = session.get(Coil, coil_id)
        assert row is not None
        session.expunge(row)
        return row


def test_coils_are_counted_placed_and_ended_on_sqlite(sqlite_url):
    with session_scope(sqlite_url) as session:
        set_camera_position(session, "strip-cam", 0.5, 0.4, "test")
    first = [frame("C-1", 2), frame("C-1", 1, "flagged"), frame("C-2", 3), frame(None, 4)]
    assert store(sqlite_url, first) == {"C-1", "C-2"}
    # positions from frame_index x the camera's frame length, across from the camera
    assert [(r["position_m"], r["across_m"]) for r in first[:3]] == [
        (1.0, 0.4),
        (0.5, 0.4),
        (1.5, 0.4),
    ]
    one = coil(sqlite_url, "C-1")
    assert (one.frames, one.flagged, one.length_m, one.ended_at) == (2, 1, 1.0, None)
    seconds = [(one.first_frame_at - T0).seconds, (one.last_frame_at - T0).seconds]
    assert seconds == [1, 2]

    # a second batch adds to the counts; a sent position wins over the index
    last = frame("C-1", 9, "flagged", position_m=30.0, across_m=-0.2)
    earlier = frame("C-1", 0, frame_index=None)  # no index, no position: not placed
    again = first[0]  # a redelivered job: not inserted, not counted
    store(sqlite_url, [last, earlier, again], ending={last["job_id"]})
    assert (last["position_m"], last["across_m"], earlier["position_m"]) == (30.0, -0.2, None)
    one = coil(sqlite_url, "C-1")
    assert (one.frames, one.flagged, one.length_m) == (4, 2, 30.0)
    assert one.first_frame_at == T0 and one.ended_at == T0 + timedelta(seconds=9)

    # a frame after the end is counted; the coil stays ended when it ended
    late = frame("C-1", 20, position_m=5.0)
    store(sqlite_url, [late], ending={late["job_id"]})
    one = coil(sqlite_url, "C-1")
    assert (one.frames, one.length_m, one.ended_at) == (5, 30.0, T0 + timedelta(seconds=9))
    assert one.last_frame_at == T0 + timedelta(seconds=20)
    assert coil(sqlite_url, "C-2").frames == 1


def test_cameras_places_are_checked_and_kept(sqlite_url):
    with session_scope(sqlite_url) as session:
        assert set_camera_position(session, "cam", 0.25, None, "ada").frame_length_m is None
        before = set_camera_position(session, "cam", 0.5, 1.5, "ada")
        assert (before.frame_length_m, before.across_m) == (0.25, None)
        row = session.scalar(select(Camera).where(Camera.name == "cam"))
        assert (row.frame_length_m, row.across_m, row.scale) == (0.5, 1.5, 1.0)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="frame length"):
            check_frame_length(bad)
    for bad in (float("nan"), float("-inf"), 2e6):
        with pytest.raises(ValueError, match="across"):
            check_camera_across(bad)
    with session_scope(sqlite_url) as session, pytest.raises(ValueError, match="camera"):
        set_camera_position(session, "", 1.0, None, "ada")


def submit_args(files: int, **given) -> argparse.Namespace:
    values = dict(coil=None, frame_index=None, position_m=None, across_m=None, end_coil=False)
    return argparse.Namespace(files=[f"f{i}.png" for i in range(files)], **{**values, **given})


def test_submit_numbers_its_files_and_ends_the_coil_on_the_last():
    assert submit_traces(submit_args(2)) == [None, None]
    traces = submit_traces(submit_args(3, coil="C", frame_index=7, across_m=0.2, end_coil=True))
    assert traces == [
        Trace("C", 7, None, 0.2, False),
        Trace("C", 8, None, 0.2, False),
        Trace("C", 9, None, 0.2, True),
    ]
    assert submit_traces(submit_args(1, coil="C", position_m=12.5)) == [Trace("C", None, 12.5)]
    with pytest.raises(JobInvalid, match="--position-m"):
        submit_traces(submit_args(2, coil="C", position_m=1.0))
    with pytest.raises(JobInvalid, match="coil_id"):
        submit_traces(submit_args(1, frame_index=3))


def test_a_replay_fills_coils_of_n_frames_each_ended_by_its_last():
    args = argparse.Namespace(coil="R", coil_frames=3, count=7)
    traces = [replay_trace(args, n) for n in range(7)]
    assert [(t.coil_id, t.frame_index, t.coil_end) for t in traces] == [
        ("R-0001", 0, False),
        ("R-0001", 1, False),
        ("R-0001", 2, True),
        ("R-0002", 0, False),
        ("R-0002", 1, False),
        ("R-0002", 2, True),
        ("R-0003", 0, True),  # the replay's last frame ends its coil too
    ]
    endless = argparse.Namespace(coil="R", coil_frames=None, count=0)
    assert replay_trace(endless, 500) == Trace("R", 500)
    assert replay_trace(argparse.Namespace(coil=None, coil_frames=None, count=0), 3) is None


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--coil", "C", "--position-m", "nan"], "position_m"),
        (["--coil", "C", "--frame-index", "-1"], "frame_index"),
        (["--frame-index", "2"], "coil_id"),
        (["--coil", "x" * 81], "coil_id"),
        (["--coil", "C", "--across-m", "inf"], "across_m"),
    ],
)
def test_the_producer_cli_refuses_a_bad_trace_before_sending(argv, words, capsys, tmp_path):
    # refused before any connection: this runs without Redis
    image = tmp_path / "a.png"
    image.write_bytes(b"x")
    assert main(["submit", str(image), "--camera", "c", *argv]) == 2
    assert words in capsys.readouterr().err


def test_replay_coil_frames_need_a_coil(capsys, tmp_path):
    with pytest.raises(SystemExit) as exited:
        main(["replay", str(tmp_path), "--camera", "c", "--coil-frames", "5"])
    assert exited.value.code == 2 and "--coil" in capsys.readouterr().err


def test_sidecars_are_read_as_traces_or_refused_with_a_reason():
    good = b'{"coil_id": "C-9", "frame_index": 4, "across_m": 0.3, "coil_end": true}'
    assert read_trace(good, "a.png.json") == Trace("C-9", 4, None, 0.3, True)
    for text, words in (
        (b"{", "not JSON"),
        (b"[1]", "JSON object"),
        (b'{"coil": "C"}', "unknown fields coil"),
        (b'{"coil_id": "C", "position_m": -1}', "position_m"),
        (b'{"frame_index": 1}', "coil_id"),
        (b'{"coil_id": "C", "coil_end": "yes"}', "coil_end"),
        (b" " * 70_000, "over"),
    ):
        with pytest.raises(SidecarInvalid, match=words) as refused:
            read_trace(text, "a.png.json")
        assert "a.png.json" in str(refused.value)
    # the same file with another trace is another job; without one its id is as before
    plain = job_id_for_file("cam", "a.png", b"img")
    assert plain == job_id_for_file("cam", "a.png", b"img", b"")
    assert plain != job_id_for_file("cam", "a.png", b"img", good)
