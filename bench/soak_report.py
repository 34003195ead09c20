"""The soak's verdicts and its *Overload* and *Soak* sections of docs/benchmarks.md.

Pure: everything is read from the result ``bench/soak.py`` saves as JSON, so a
saved run can be rendered again (``python -m bench.soak_report RESULT.json``).
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

from bench.soak_stats import MAX_GROWTH_PCT, RECOVERY_LIMIT_S, share_at_least

BEGIN = "<!-- bench.soak: begin (written by python -m bench.soak) -->"
END = "<!-- bench.soak: end -->"
ROOT = Path(__file__).resolve().parent.parent


def section_of(text: str) -> str | None:
    """The soak's sections of a report (markers included), or None."""
    begin = text.find(BEGIN)
    end = text.find(END, begin)
    if begin < 0 or end < 0:
        return None
    return text[begin : end + len(END)]


def splice(text: str, section: str) -> str:
    """``text`` with its soak sections replaced by ``section``, or ``section``
    appended; the rest unchanged."""
    section = section.strip("\n")
    old = section_of(text)
    if old is not None:
        return text.replace(old, section, 1)
    body = text.rstrip("\n")
    return f"{body}\n\n{section}\n" if body else f"{section}\n"


def verdicts(result: dict[str, Any]) -> dict[str, bool]:
    """Each criterion of the issue, met or not."""
    jobs, redis, latency = result["jobs"], result["redis"], result["latency"]
    supervisor, soak = result["supervisor"], result["soak"]
    recovery = latency["recovery_s"]
    dashboard_peak = supervisor.get("dashboard_queue_peak") or 0
    return {
        "the queue grew to MAX_QUEUE_LENGTH": redis["queue_peak"]
        >= 0.9 * result["rates"]["max_queue_length"],
        "Redis memory within the bound": max(redis["peak_sampled"], redis["peak_reported"])
        <= redis["bound"],
        "no job lost": jobs["lost"] == 0,
        "no job duplicated": jobs["duplicate_rows"] == 0 and jobs["sent_twice"] == 0,
        "no row of a job never sent": jobs["unexpected_rows"] == 0,
        f"latency normal within {RECOVERY_LIMIT_S:.0f} s of the burst's end": recovery is not None
        and recovery <= RECOVERY_LIMIT_S,
        "the dashboard showed the backlog": bool(supervisor.get("dashboard_shows_queue"))
        and dashboard_peak >= 0.5 * redis["queue_peak"],
        f"workers' and admin's memory grew < {MAX_GROWTH_PCT:g}%": all(
            m["ok"] for m in soak["memory"] if m["judged"]
        )
        and any(m["judged"] for m in soak["memory"]),
        "no open files or connections creeping up": all(
            c["ok"] for c in soak["counts"] if c["judged"]
        )
        and all(t["ok"] for t in soak["totals"]),
        "the admin answered every request": not supervisor["errors"],
    }


def passed(result: dict[str, Any]) -> bool:
    return all(verdicts(result).values())


def mb(value: float) -> str:
    return f"{value / 2**20:.1f} MB"


def ms(value: float | None) -> str:
    return "–" if value is None else f"{1000 * value:.0f}"


def latency_row(name: str, figures: dict[str, Any]) -> str:
    return (
        f"| {name} | {figures['jobs']} | {ms(figures['p50_s'])} | {ms(figures['p95_s'])} | "
        f"{ms(figures['p99_s'])} |"
    )


def phase_lengths(result: dict[str, Any]) -> dict[str, float]:
    return {name: end - start for name, start, end in result["phases"]}


def render(result: dict[str, Any], json_path: Path | None = None) -> str:
    plan, rates, jobs = result["plan"], result["rates"], result["jobs"]
    redis, latency, spool = result["redis"], result["latency"], result["spool"]
    capacity, supervisor = result["capacity"], result["supervisor"]
    checks = verdicts(result)
    lengths = phase_lengths(result)
    sent = {
        phase: sum(s.get("submitted", 0) for s in result["producers"] if s["phase"] == phase)
        for phase in ("capacity", "main")
    }
    held_back = sum(s.get("held_back", 0) for s in result["producers"])
    waited = sum(s.get("waited_for_room_s", 0.0) for s in result["producers"])
    day = result["started"][:10]
    kind = (
        "a smoke run (`--quick`: minutes instead of an hour, not the soak itself)"
        if plan["quick"]
        else "the full run"
    )
    phases = {name: (start, end) for name, start, end in result["phases"]}
    fast = result.get("fast", {})
    full_share = (
        share_at_least(
            fast["t"], fast["queue"], *phases["overload"], 0.9 * rates["max_queue_length"]
        )
        if fast and "overload" in phases
        else None
    )
    where = ""
    if json_path is not None:
        try:
            where = f"; every sample in `{json_path.resolve().relative_to(ROOT)}`"
        except ValueError:
            where = f"; every sample in `{json_path}`"
    lines = [
        BEGIN,
        "## Overload",
        "",
        f"Measured {day} on {result['machine']} with `{result['command']}` (`make soak` "
        f"runs it), {kind}, {result['wall_minutes']:.0f} minutes in all (the machine's load "
        "average "
        f"{result['load_average_start']:.1f} at the start, {result['load_average_end']:.1f} at "
        f"the end: other work shared its cores){where}. The line: its own redis-server, a fresh "
        f"PostgreSQL database, {plan['workers']} worker processes as the README starts them "
        f"(`celery -A worker worker --pool solo`, `MODEL_THREADS=1`, batches of "
        f"{plan['batch_size']}), the admin site under gunicorn (2 workers) with a supervisor "
        f"client on it at {plan['supervisor_rate']:g} requests/s, and {plan['producers']} "
        f"producer processes (the producer client, `producer/client.py`) sending the NEU "
        f"sample images ({result['image_bytes'] / 1024:.0f} KB of PNG on average; "
        f"{redis['message_bytes'] / 1024:.0f} KB a message as Redis holds it, "
        f"{redis['message_bytes_max'] / 1024:.0f} KB the largest).",
        "",
        f"Capacity: the producers sent as fast as they could for {plan['capacity_seconds']:g} s "
        f"(the queue held up to {capacity['queue_limit']} jobs); the workers committed "
        f"**{capacity['jobs_per_s']:.0f} jobs/s** over the last two thirds "
        + (
            "(the queue never ran empty)."
            if capacity["saturated"]
            else "(**the queue ran empty at times**: the producers could not keep the workers "
            "busy, so this is a lower bound)."
        )
        + f" Then {lengths.get('baseline', 0) / 60:.1f} min at half that "
        f"({rates['half']:.0f}/s), {lengths.get('overload', 0) / 60:.1f} min offered at "
        f"{plan['overload_factor']:g}x ({rates['overload']:.0f}/s), and "
        f"{lengths.get('soak', 0) / 60:.1f} min at half again (the soak below), with "
        f"`MAX_QUEUE_LENGTH={rates['max_queue_length']}` "
        + (
            f"({rates['auto_seconds']:g} s of the capacity, the configured "
            f"{rates['configured_max_queue_length']} at "
            "most: the queue a burst leaves takes MAX_QUEUE_LENGTH / (C - rate after) to empty)."
            if rates["auto"]
            else "(as given)."
        ),
        "",
        "| | |",
        "|---|---|",
        f"| queue peak (Redis, sampled every second) | {redis['queue_peak']:.0f} jobs "
        f"(MAX_QUEUE_LENGTH {rates['max_queue_length']}) |",
        "| the burst's samples with the queue at 90% of MAX_QUEUE_LENGTH or more (the "
        "producers held back) | " + ("– |" if full_share is None else f"{full_share:.0%} |"),
        f"| the dashboard's queue peak (`/dashboard/line`, polled) | "
        f"{supervisor.get('dashboard_queue_peak')} jobs |",
        f"| Redis `used_memory`: idle / peak sampled / peak by Redis | {mb(redis['baseline'])} / "
        f"{mb(redis['peak_sampled'])} / {mb(redis['peak_reported'])} |",
        f"| the bound: idle + (MAX_QUEUE_LENGTH + {redis['held']} held + {redis['overshoot']} "
        f"producers' overshoot) x the largest message x 1.25 | {mb(redis['bound'])} |",
        "| Redis memory per queued job (at the peak) | "
        + (
            f"{redis['bytes_per_queued_job'] / 1024:.1f} KB |"
            if redis["bytes_per_queued_job"]
            else "– |"
        ),
        f"| producers' spool peak | {spool['peak_bytes']:.0f} bytes in {spool['peak_files']:.0f} "
        "files (the client waits at MAX_QUEUE_LENGTH; it spools only when Redis does not "
        "answer) |",
        f"| jobs sent: capacity / baseline, overload and soak | {sent['capacity']} / "
        f"{sent['main']} |",
        f"| during the burst: jobs taken by the producers / committed by the workers | "
        f"{rates['taken_during_burst']:.0f}/s "
        f"({rates['taken_during_burst'] / capacity['jobs_per_s']:.1f}x the capacity) / "
        f"{rates['committed_during_burst']:.0f}/s |",
        f"| frames due but not taken: the producers waited for room ({waited:.0f} s in all) "
        f"or could not keep up | {held_back} |",
        f"| rows / lost / duplicated / rows of no job sent | {jobs['rows']} / {jobs['lost']} / "
        f"{jobs['duplicate_rows'] + jobs['sent_twice']} / {jobs['unexpected_rows']} |",
        f"| statuses | {', '.join(f'{k} {v}' for k, v in sorted(jobs['by_status'].items()))} |",
        "",
        "Latency, captured (by the producer, before any wait for room) to committed, ms:",
        "",
        "| jobs captured | jobs | p50 | p95 | p99 |",
        "|---|---:|---:|---:|---:|",
        latency_row("before the burst (baseline)", latency["before"]),
        latency_row("during the burst", latency["during"]),
        latency_row("the first minute after", latency["first_minute_after"]),
        latency_row("the rest of the soak", latency["rest_of_soak"]),
        "",
        "Back to normal "
        + (
            f"**{latency['recovery_s']:.0f} s** after the burst's end"
            if latency["recovery_s"] is not None
            else "**not within the run**"
        )
        + f": from then on, every {plan['window_seconds']:g}-second window of captured jobs for "
        f"{plan['hold_seconds']:g} s had a p95 within {1000 * latency['normal_limit_s']:.0f} ms "
        "(twice the baseline's p95, at least half a second above it).",
    ]
    lines += render_soak(result)
    if plan["quick"]:
        lines += [
            "",
            "The hour-long run, `make soak` (about 77 minutes), replaces these sections.",
        ]
    lines += ["", "| criterion | |", "|---|---|"]
    lines += [f"| {name} | {'met' if ok else '**missed**'} |" for name, ok in checks.items()]
    lines.append(END)
    return "\n".join(lines) + "\n"


def render_soak(result: dict[str, Any]) -> list[str]:
    plan, soak, supervisor = result["plan"], result["soak"], result["supervisor"]
    grace = plan["grace_minutes"]
    lines = [
        "",
        "## Soak",
        "",
        f"{plan['minutes']:g} minutes at half the capacity ({result['rates']['half']:.0f} jobs/s) "
        f"after the burst. Each process sampled every {plan['sample_seconds']:g} s: resident "
        "memory (`VmRSS`), open file descriptors (`/proc/<pid>/fd`), and its connections as "
        "PostgreSQL (`pg_stat_activity`) and Redis (`CLIENT LIST`) list them (matched to the "
        "process by the client's port). Memory at "
        f"{grace:g} min is the median of the first {3} samples from then, at the end the median "
        "of the last 3; the trend is the least-squares slope after "
        f"{grace:g} min. A count creeps up when its last value exceeds the most seen in the first "
        f"{grace:g} min (open files: by more than 4).",
        "",
        f"| process | RSS at {grace:g} min | at the end | growth | trend | open files | "
        "PostgreSQL conns | Redis conns |",
        "|---|---:|---:|---:|---:|---|---|---|",
    ]
    counts = {(c["process"], c["what"]): c for c in soak["counts"]}

    def count(name: str, what: str) -> str:
        c = counts.get((name, what))
        return "–" if c is None else f"{c['start']} → {c['end']}" + ("" if c["ok"] else " **up**")

    for m in soak["memory"]:
        name = m["process"] + ("" if m["judged"] else " (not judged)")
        lines.append(
            f"| {name} | {m['at_grace_mb']:.0f} MB | {m['end_mb']:.0f} MB | "
            f"{m['growth_pct']:+.1f}% | {m['trend_mb_per_h']:+.1f} MB/h | "
            f"{count(m['process'], 'fds')} | {count(m['process'], 'pg')} | "
            f"{count(m['process'], 'redis')} |"
        )
    totals = {t["what"]: t for t in soak["totals"]}
    pg, rd = totals.get("pg_total"), totals.get("redis_total")
    if pg and rd:
        lines += [
            "",
            f"All connections to the soak's database: {pg['start']} → {pg['end']} (peak "
            f"{pg['peak']}); all Redis clients: {rd['start']} → {rd['end']} (peak {rd['peak']}).",
        ]
    answered = sum(supervisor["requests"].values())
    lines += [
        "",
        f"The supervisor client made {answered} requests over the run "
        f"({', '.join(f'{k} {v}' for k, v in sorted(supervisor['requests'].items()))}); "
        f"errors: {sum(supervisor['errors'].values())}; p95 ms by kind: "
        f"{', '.join(f'{k} {v:.0f}' for k, v in sorted(supervisor['p95_ms'].items()))}.",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    """Render a saved result again, into docs/benchmarks.md (or print it with --print)."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m bench.soak_report RESULT.json [--print]", file=sys.stderr)
        return 2
    path = Path(args[0])
    section = render(json.loads(path.read_text()), path)
    if "--print" in args:
        print(section)
        return 0
    report = ROOT / "docs" / "benchmarks.md"
    report.write_text(splice(report.read_text(), section))
    print(f"wrote the Overload and Soak sections of {report} ({dt.date.today()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
