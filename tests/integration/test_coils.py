"""Coil verdicts (#31, item 2) on PostgreSQL: the rules along the strip, reviews that
change what counts, coils that end when idle, verdicts made once with one event each
(two schedulers at once included), and the coil pages through Flask's test client.

Frames are stored as a worker stores them (tests/integration/coil_rows.py).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from core.coil_verdicts import (
    add_rule,
    coil_marks,
    end_idle_coils,
    judge_coil,
    judge_ended_coils,
)
from core.db import get_sessionmaker, session_scope
from core.tables import Coil, CoilRule, Event
from tests.conftest import csrf_token
from tests.integration.coil_rows import Frame, add_frames
from tests.integration.conftest import logged_in

SCRATCHES = "scratches"


def rule(settings, label: str, max_count: int, per_m: float | None = None) -> int:
    with session_scope(settings.database_url) as session:
        return add_rule(session, label, max_count, per_m, "ada").id


def judge(settings, coil_id: str):
    with session_scope(settings.database_url) as session:
        return judge_coil(session, coil_id)


def scratches_at(*positions: float | None) -> list[Frame]:
    return [Frame(p, findings=(SCRATCHES,)) for p in positions]


def test_a_rule_per_metres_holds_a_dense_stretch_and_ships_a_spread_one(settings):
    rule_id = rule(settings, SCRATCHES, 3, 100.0)
    passed = [Frame(float(p)) for p in range(0, 1000, 50)]
    add_frames(settings, "dense", [*passed, *scratches_at(410, 440, 470, 505)])
    add_frames(settings, "spread", [*passed, *scratches_at(0, 300, 600, 900)])
    add_frames(settings, "edge", scratches_at(0, 40, 70, 100.5))  # 100.5 m: two stretches

    dense = judge(settings, "dense")
    assert dense.verdict == "hold"
    assert dense.counts == {SCRATCHES: 4} and dense.length_m == 950.0
    (reason,) = dense.reasons
    assert reason | {"text": ""} == {
        "rule_id": rule_id,
        "label": SCRATCHES,
        "count": 4,
        "limit": 3,
        "per_m": 100.0,
        "text": "",
    }
    assert "4 'scratches' within 100 m (from 410.0 m)" in reason["text"]

    spread = judge(settings, "spread")
    assert (spread.verdict, spread.reasons, spread.counts) == ("ship", [], {SCRATCHES: 4})
    assert judge(settings, "edge").verdict == "ship"


def test_marks_without_a_position_count_for_whole_coil_rules_only(settings):
    add_frames(settings, "unplaced", scratches_at(None, None, None, None))
    per_stretch = rule(settings, SCRATCHES, 3, 100.0)
    assert judge(settings, "unplaced").verdict == "ship"
    with session_scope(settings.database_url) as session:
        session.get(CoilRule, per_stretch).active = False
    rule(settings, SCRATCHES, 3)
    held = judge(settings, "unplaced")
    assert held.verdict == "hold" and held.reasons[0]["count"] == 4
    assert held.reasons[0]["per_m"] is None


def test_any_label_and_any_crack_rules_with_findings_and_whole_image_frames(settings):
    crack = rule(settings, "crazing", 0)  # "any crack": one holds the coil
    anything = rule(settings, "*", 4, 50.0)
    frames = [
        Frame(0.0, findings=(SCRATCHES, "inclusion")),  # two marks on one frame
        Frame(10.0, label="unknown"),  # flagged by the whole-image rule: one mark
        Frame(20.0),  # passed: none
        Frame(30.0, findings=("inclusion",)),
    ]
    add_frames(settings, "mixed", frames)
    mixed = judge(settings, "mixed")
    assert mixed.counts == {"inclusion": 2, SCRATCHES: 1, "unknown": 1}
    assert mixed.verdict == "ship"  # 4 marks within 50 m: not more than 4

    add_frames(settings, "mixed", [Frame(45.0, findings=(SCRATCHES,))])
    assert [r["rule_id"] for r in judge(settings, "mixed").reasons] == [anything]

    add_frames(settings, "cracked", [Frame(900.0, findings=("crazing",))])
    cracked = judge(settings, "cracked")
    assert cracked.verdict == "hold" and [r["rule_id"] for r in cracked.reasons] == [crack]
    assert cracked.reasons[0]["count"] == 1 and cracked.reasons[0]["limit"] == 0

    # the marks: one per finding, one per flagged frame without; positions and places
    with session_scope(settings.database_url) as session:
        marks = coil_marks(session, "mixed")
    assert [(m.label, m.position_m) for m in marks] == [
        (SCRATCHES, 0.0),
        ("inclusion", 0.0),
        ("unknown", 10.0),
        ("inclusion", 30.0),
        (SCRATCHES, 45.0),
    ]
    assert marks[0].frame_x == pytest.approx(40 / 200) and marks[2].frame_x is None
    assert all(m.across_m == 0.6 for m in marks) and marks[0].score == pytest.approx(2.0)


def review(client, inspection_id: int, action: str, label: str = "") -> None:
    token = csrf_token(client, f"/inspections/{inspection_id}")
    response = client.post(
        f"/inspections/{inspection_id}/review",
        data={"csrf_token": token, "action": action, "label": label, "comment": ""},
    )
    assert response.status_code == 302, response.get_data(as_text=True)


def test_a_relabel_moves_the_marks_and_a_false_alarm_removes_them(app, settings):
    rule(settings, "crazing", 0)
    rule(settings, SCRATCHES, 1)
    first, second, third = add_frames(settings, "reviewed", scratches_at(10, 20, 30))
    assert judge(settings, "reviewed").counts == {SCRATCHES: 3}

    client = logged_in(app, "sam", "supervisor-password")
    review(client, first, "false_alarm")
    review(client, second, "relabel", "crazing")
    review(client, third, "confirm")
    after = judge(settings, "reviewed")
    assert after.counts == {"crazing": 1, SCRATCHES: 1}
    assert [r["label"] for r in after.reasons] == ["crazing"]  # 1 scratch: not more than 1


def test_idle_coils_end_at_their_last_frame_once(settings):
    now = datetime.now(UTC)
    add_frames(settings, "idle", scratches_at(1, 2), at=now - timedelta(minutes=10))
    add_frames(settings, "busy", scratches_at(1, 2), at=now - timedelta(seconds=30))
    add_frames(settings, "ended", scratches_at(1), at=now - timedelta(hours=1), end=True)
    with session_scope(settings.database_url) as session:
        assert end_idle_coils(session, now, 300) == ["idle"]
    with session_scope(settings.database_url) as session:
        assert end_idle_coils(session, now, 300) == []
        idle = session.get(Coil, "idle")
        assert idle.ended_at == idle.last_frame_at
        assert session.get(Coil, "busy").ended_at is None
        assert session.get(Coil, "ended").ended_at is not None


def verdict_events(settings) -> list[dict]:
    with session_scope(settings.database_url) as session:
        return [
            event.payload
            for event in session.scalars(
                select(Event).where(Event.kind == "coil.verdict").order_by(Event.id)
            )
        ]


def test_ended_coils_are_judged_once_with_one_event_each(settings):
    rule(settings, SCRATCHES, 1)
    add_frames(settings, "C-1", scratches_at(5, 15, 25), end=True)
    add_frames(settings, "C-2", [Frame(5.0), *scratches_at(15)], end=True)
    add_frames(settings, "C-3", scratches_at(5, 15))  # open: not judged
    with session_scope(settings.database_url) as session:
        assert judge_ended_coils(session, "line-7") == ["C-1", "C-2"]
    with session_scope(settings.database_url) as session:
        assert judge_ended_coils(session, "line-7") == []
        one, two, three = (session.get(Coil, c) for c in ("C-1", "C-2", "C-3"))
        assert (one.verdict, two.verdict, three.verdict) == ("hold", "ship", None)
        assert one.verdict_reasons[0]["count"] == 3 and two.verdict_reasons == []
        assert one.verdict_at is not None
        first_at, last_at = one.first_frame_at.isoformat(), one.last_frame_at.isoformat()

    events = verdict_events(settings)
    assert [e["coil_id"] for e in events] == ["C-1", "C-2"]
    held = events[0]
    assert held["event"] == "coil.verdict" and held["line"] == "line-7"
    assert held["verdict"] == "hold" and held["counts"] == {SCRATCHES: 3}
    assert held["reasons"][0]["limit"] == 1 and held["reasons"][0]["rule_id"] is not None
    assert (held["frames"], held["flagged"], held["length_m"]) == (3, 3, 25.0)
    assert (held["first_frame_at"], held["last_frame_at"]) == (first_at, last_at)
    assert events[1]["verdict"] == "ship" and events[1]["frames"] == 2


def test_two_schedulers_at_once_judge_each_coil_once(settings):
    add_frames(settings, "both", scratches_at(5), end=True)
    make_session = get_sessionmaker(settings.database_url)
    with make_session() as first, make_session() as second:
        assert judge_ended_coils(first, "line-1") == ["both"]  # holds the row's lock
        assert judge_ended_coils(second, "line-1") == []  # skips the locked row
        first.commit()
        second.commit()
    with make_session() as third:
        assert judge_ended_coils(third, "line-1") == []
        third.commit()
    assert len(verdict_events(settings)) == 1
    with session_scope(settings.database_url) as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 1


# -- the pages --------------------------------------------------------------------------


def test_a_coil_may_have_the_name_of_a_page(app, settings):
    # every name under /coils/ is a coil's: the rules page lives elsewhere
    add_frames(settings, "rules", [Frame(1.0, findings=("inclusion",))])
    client = logged_in(app, "sam", "supervisor-password")
    page = client.get("/coils/rules")
    assert page.status_code == 200 and 'id="coil-map-box"' in page.get_data(as_text=True)
    assert 'data-coil-id="rules"' in client.get("/coils").get_data(as_text=True)


def test_the_coil_pages_show_marks_counts_and_verdicts(app, settings):
    rule(settings, SCRATCHES, 2, 100.0)
    ids = add_frames(settings, "A/7", [*scratches_at(10, 20, 30), Frame(40.0)], end=True)
    add_frames(settings, "B-8", [Frame(5.0, findings=("inclusion",))])
    with session_scope(settings.database_url) as session:
        judge_ended_coils(session, "line-1")
    client = logged_in(app, "sam", "supervisor-password")

    listing = client.get("/coils").get_data(as_text=True)
    assert re.search(r'data-coil-id="A/7" data-state="hold"', listing)
    assert re.search(r'data-coil-id="B-8" data-state="open"', listing)
    assert "the rules would ship it now" in listing
    # by the rows' ids: a bare "B-8" may turn up in a page's random CSRF token
    held_only = client.get("/coils?verdict=hold").get_data(as_text=True)
    assert 'data-coil-id="A/7"' in held_only and 'data-coil-id="B-8"' not in held_only
    assert 'data-coil-id="B-8"' in client.get("/coils?verdict=open").get_data(as_text=True)

    page = client.get("/coils/A/7").get_data(as_text=True)
    assert page.count('class="mark"') == 3
    assert f'href="/inspections/{ids[0]}"' in page
    assert "3 &#39;scratches&#39; within 100 m" in page
    assert 'src="/static/coil_map.js"' in page and 'data-open="0"' in page

    marks = client.get("/coils/A/7/marks.json")
    assert marks.status_code == 200 and marks.headers["Cache-Control"] == "no-store"
    view = marks.get_json()
    assert (view["state"], view["open"], view["frames"], view["flagged"]) == ("hold", False, 4, 3)
    assert [c["label"] for c in view["counts"]] == [SCRATCHES] and view["counts"][0]["count"] == 3
    assert [m["inspection_id"] for m in view["map"]["marks"]] == ids[:3]
    assert {m["colour"] for m in view["map"]["marks"]} == {view["counts"][0]["colour"]}
    assert sum(b["count"] for b in view["map"]["bins"]) == 3
    assert client.get("/coils/no-such-coil").status_code == 404

    assert client.get("/coils/no-such-coil/marks.json").status_code == 404

    # the queue shows each row's coil verdict
    queue = client.get("/inspections?status=flagged&review=any").get_data(as_text=True)
    assert queue.count('data-coil-verdict="hold"') == 3
    assert queue.count('data-coil-verdict="open"') == 1


def test_only_admins_set_coil_rules_checked_and_confirmed(app, settings):
    supervisor = logged_in(app, "sam", "supervisor-password")
    assert supervisor.get("/coil-rules").status_code == 403
    token = csrf_token(supervisor, "/coils")
    refused = supervisor.post(
        "/coil-rules", data={"csrf_token": token, "label": SCRATCHES, "max_count": "3"}
    )
    assert refused.status_code == 403

    admin = logged_in(app, "ada", "admin-password")
    token = csrf_token(admin, "/coil-rules")
    form = {"csrf_token": token, "action": "add", "label": SCRATCHES, "max_count": "3"}
    assert admin.post("/coil-rules", data={**form, "per_m": "100"}).status_code == 200  # asks
    with session_scope(settings.database_url) as session:
        assert session.scalar(select(func.count()).select_from(CoilRule)) == 0
    for bad, message in [
        ({"label": "nonsense"}, "is not a label"),
        ({"max_count": "-1"}, "whole number"),
        ({"max_count": "three"}, "whole number"),
        ({"per_m": "0"}, "more than 0"),
        ({"per_m": "nan"}, "finite"),
        ({"per_m": "ten"}, "not a number of metres"),
    ]:
        answer = admin.post("/coil-rules", data={**form, **bad, "confirmed": "1"})
        assert answer.status_code == 400 and message in answer.get_data(as_text=True), bad
    assert admin.post("/coil-rules", data={**form, "confirmed": "1"}).status_code == 302
    added = admin.post(
        "/coil-rules", data={**form, "label": "*", "max_count": "0", "confirmed": "1"}
    )
    assert added.status_code == 302
    page = admin.get("/coil-rules").get_data(as_text=True)
    assert "more than 3 &#39;scratches&#39; on the coil: hold" in page
    assert "any mark: hold" in page
    with session_scope(settings.database_url) as session:
        first = session.scalars(select(CoilRule).order_by(CoilRule.id)).first()
        assert (first.label, first.max_count, first.per_m, first.created_by) == (
            SCRATCHES,
            3,
            None,
            "ada",
        )
    off = {"csrf_token": token, "action": "deactivate", "rule_id": str(first.id)}
    assert admin.post("/coil-rules", data=off).status_code == 200  # asks first
    assert admin.post("/coil-rules", data={**off, "confirmed": "1"}).status_code == 302
    with session_scope(settings.database_url) as session:
        assert session.get(CoilRule, first.id).active is False
    again = admin.post("/coil-rules", data={**off, "confirmed": "1"})
    assert again.status_code == 400
