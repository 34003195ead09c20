"""``python -m bench.soak`` (``make soak``): the line under overload, then for an hour.

On its own redis-server and a fresh PostgreSQL database, with two worker processes
as the README starts them, the admin site under gunicorn (a supervisor client
polling it a few times a second) and producer processes sending the sample
images through the producer client (``bench/soak_camera.py``):

1. *capacity*: the producers send as fast as they can; the workers' rate with a
   full queue is the line's capacity C;
2. *baseline*: C/2 for ``--baseline-minutes`` (the latency before);
3. *overload*: 5 C for ``--overload-minutes``: the queue fills to MAX_QUEUE_LENGTH,
   the producers wait, Redis's memory must stay within the bound that implies;
4. *soak*: C/2 for ``--minutes``: latency must be back to normal within a minute
   of the burst's end, and after the first ``--grace-minutes`` every worker's and
   the admin's resident memory must grow by less than 5%, with no open files or
   connections creeping up.

Then every job id a producer was given must be in exactly one row. Samples go to a
JSON file; the summary to the *Overload* and *Soak* sections of docs/benchmarks.md.
About 77 minutes with the defaults; ``--quick`` is a 3-minute smoke run of the same.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psycopg
import redis

from bench import soak_report
from bench.line import sample_payloads
from bench.soak_line import SUPERVISOR, SoakLine, wait_until
from bench.soak_stats import (
    RECOVERY_LIMIT_S,
    count_drift,
    memory_growth,
    normal_latency_limit,
    producer_overshoot,
    recovery_seconds,
    redis_bound_bytes,
)
from bench.soak_supervisor import Supervisor
from bench.soak_watch import Phases, Sampler, Watcher
from core.queue import jobs_held, queue_length
from core.settings import Settings, settings_from_env
from producer.client import QUEUE_CHECK_INTERVAL_S, InspectionClient

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "docs" / "benchmarks.md"
RESULTS = ROOT / "docs" / "results" / "soak"
QUICK_RESULTS = ROOT / "var" / "soak"
#: MAX_QUEUE_LENGTH for the run when not given: this many seconds of the measured
#: capacity C, at most the configured value. After a burst the line needs
#: MAX_QUEUE_LENGTH / (C - rate after) to empty the queue: 20 s at C/2, which
#: leaves room for a machine whose other work slows the workers after the burst.
AUTO_QUEUE_SECONDS = 10.0
#: during the capacity phase the queue only has to stay non-empty; no more than
#: the run's MAX_QUEUE_LENGTH, so that Redis's own memory peak is the burst's
CAPACITY_QUEUE_LIMIT = 250
#: processes whose memory and connections the soak's verdicts are about
JUDGED = ("worker-", "admin")
#: open files that come and go with a single request or batch
FD_TOLERANCE = 4

FULL = {
    "minutes": 60.0,
    "overload_minutes": 10.0,
    "grace_minutes": 10.0,
    "baseline_minutes": 2.0,
    "capacity_seconds": 60.0,
    "sample_seconds": 30.0,
    "hold_seconds": 60.0,
}
QUICK = {
    "minutes": 1.25,
    "overload_minutes": 0.5,
    "grace_minutes": 0.4,
    "baseline_minutes": 0.25,
    "capacity_seconds": 15.0,
    "sample_seconds": 5.0,
    "hold_seconds": 20.0,
}


@dataclass
class Plan:
    minutes: float
    overload_minutes: float
    grace_minutes: float
    baseline_minutes: float
    capacity_seconds: float
    sample_seconds: float
    hold_seconds: float
    workers: int
    producers: int
    overload_factor: float
    soak_share: float
    max_queue_length: int | None  # None: AUTO_QUEUE_SECONDS of the capacity
    supervisor_rate: float
    batch_size: int
    window_seconds: float = 5.0
    quick: bool = False


def log(text: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {text}", flush=True)


def machine() -> str:
    cpu = platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def sql_dsn(database_url: str) -> str:
    return database_url.replace("postgresql+psycopg://", "postgresql://", 1)


class Producers:
    """The producer processes of one phase, each a camera with its own spool."""

    def __init__(self, line: SoakLine, settings: Settings, workdir: Path, count: int) -> None:
        self.line, self.settings, self.workdir, self.count = line, settings, workdir, count
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        self.ids_files: list[Path] = []
        self.statuses: list[dict[str, Any]] = []

    def spool_dir(self, i: int) -> Path:
        return self.workdir / f"spool-{i}"

    def run(self, phase: str, schedule: list[list[float]], start_at: float, limit: int) -> None:
        """Run one camera per producer through ``schedule``; return when all have exited."""
        for i in range(self.count):
            settings = self.settings.model_copy(
                update={"spool_dir": self.spool_dir(i), "max_queue_length": limit}
            )
            ids = self.workdir / f"ids-{phase}-{i}.txt"
            status = self.workdir / f"status-{phase}-{i}.json"
            self.ids_files.append(ids)
            argv = [
                sys.executable,
                "-m",
                "bench.soak_camera",
                "--camera",
                f"soak-{i}",
                "--schedule",
                json.dumps(schedule),
                "--start-at",
                str(start_at),
                "--ids",
                str(ids),
                "--status",
                str(status),
            ]
            log_file = open(self.workdir / f"camera-{phase}-{i}.log", "ab")
            self.running[f"camera-{i}"] = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=self.line.env(settings),
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
            log_file.close()
        length = sum(s for s, _ in schedule)
        wait_until(
            lambda: all(p.poll() is not None for p in self.running.values()),
            start_at - time.time() + length + 900,
            f"the producers of the {phase} phase to finish",
            poll=1.0,
        )
        for i in range(self.count):
            path = self.workdir / f"status-{phase}-{i}.json"
            status = json.loads(path.read_text()) if path.exists() else {}
            self.statuses.append({"phase": phase, **status})
        failed = {n: p.returncode for n, p in self.running.items() if p.returncode}
        self.running.clear()
        if failed:
            raise RuntimeError(f"producers failed: {failed}; see {self.workdir}/camera-*.log")

    def pids(self) -> dict[str, int]:
        return {n: p.pid for n, p in self.running.items() if p.poll() is None}

    def stop(self) -> None:
        """End producers still running (a run cut short); they flush their ids first."""
        for process in self.running.values():
            if process.poll() is None:
                process.terminate()
        for process in self.running.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


def warm_up(settings: Settings, workdir: Path, count: int) -> Path:
    """Every worker loads its model and the references before anything is timed."""
    ids = workdir / "ids-warmup.txt"
    payloads = sample_payloads()
    with InspectionClient(settings.model_copy(update={"spool_dir": workdir / "spool-warmup"})) as c:
        sent = [c.submit_bytes(payloads[i % len(payloads)][1], "soak-warmup") for i in range(count)]
    ids.write_text("".join(f"{job_id}\n" for job_id in sent))
    with psycopg.connect(sql_dsn(settings.database_url), autocommit=True) as pg:

        def all_rows() -> bool:
            row = pg.execute("SELECT count(*) FROM inspections").fetchone()
            return bool(row and row[0] >= count)

        wait_until(all_rows, 300, "the warm-up's rows", poll=0.5)
    return ids


def wait_for_empty_line(redis_url: str, timeout: float) -> None:
    with redis.Redis.from_url(redis_url) as client:
        wait_until(
            lambda: queue_length(client) == 0 and jobs_held(client) == 0,
            timeout,
            "the queue to empty",
            poll=0.5,
        )


def measure_capacity(dsn: str, start: float, end: float) -> float:
    with psycopg.connect(dsn) as pg:
        row = pg.execute(
            "SELECT count(*) FROM inspections WHERE processed_at >= to_timestamp(%s) "
            "AND processed_at < to_timestamp(%s)",
            (start, end),
        ).fetchone()
    return (row[0] if row else 0) / (end - start)


def check_jobs(dsn: str, ids_files: list[Path]) -> dict[str, Any]:
    """Every job id a producer was given against the rows: each in exactly one."""
    with psycopg.connect(dsn) as pg:
        pg.execute("CREATE TEMP TABLE sent (job_id text)")
        with pg.cursor().copy("COPY sent (job_id) FROM STDIN") as copy:
            for path in ids_files:
                if path.exists():
                    for line in path.read_text().split():
                        copy.write_row((line,))
        pg.execute("ANALYZE sent")

        def one(query: str) -> int:
            row = pg.execute(query).fetchone()
            return int(row[0]) if row and row[0] is not None else 0

        result: dict[str, Any] = {
            "sent": one("SELECT count(*) FROM sent"),
            "sent_twice": one("SELECT count(*) - count(DISTINCT job_id) FROM sent"),
            "rows": one("SELECT count(*) FROM inspections"),
            "lost": one(
                "SELECT count(*) FROM (SELECT DISTINCT job_id FROM sent) s "
                "WHERE NOT EXISTS (SELECT 1 FROM inspections i WHERE i.job_id = s.job_id)"
            ),
            "duplicate_rows": one("SELECT count(*) - count(DISTINCT job_id) FROM inspections"),
            "unexpected_rows": one(
                "SELECT count(*) FROM inspections i "
                "WHERE NOT EXISTS (SELECT 1 FROM sent s WHERE s.job_id = i.job_id)"
            ),
        }
        result["by_status"] = dict(
            pg.execute("SELECT status, count(*) FROM inspections GROUP BY status").fetchall()
        )
    return result


def latency_between(pg: psycopg.Connection[Any], start: float, end: float) -> dict[str, Any]:
    """Percentiles of processed minus captured, for jobs captured in [start, end)."""
    row = pg.execute(
        "SELECT count(*), percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP "
        "(ORDER BY extract(epoch FROM processed_at - captured_at)) FROM inspections "
        "WHERE camera LIKE 'soak-%%' AND camera <> 'soak-warmup' "
        "AND captured_at >= to_timestamp(%s) AND captured_at < to_timestamp(%s)",
        (start, end),
    ).fetchone()
    count, percentiles = (row or (0, None))[0], (row or (0, None))[1]
    p50, p95, p99 = percentiles or (None, None, None)
    return {"jobs": count, "p50_s": p50, "p95_s": p95, "p99_s": p99}


def latency_windows(dsn: str, start: float, end: float, width: float) -> list[list[float]]:
    """(window start, p95 latency, jobs) of consecutive windows by capture time."""
    with psycopg.connect(dsn) as pg:
        rows = pg.execute(
            "SELECT floor(extract(epoch FROM captured_at) / %s) * %s AS w, "
            "percentile_cont(0.95) WITHIN GROUP "
            "(ORDER BY extract(epoch FROM processed_at - captured_at)), count(*) "
            "FROM inspections WHERE camera LIKE 'soak-%%' AND camera <> 'soak-warmup' "
            "AND captured_at >= to_timestamp(%s) AND captured_at < to_timestamp(%s) "
            "GROUP BY w ORDER BY w",
            (width, width, start, end),
        ).fetchall()
    return [[float(w), float(p95), int(n)] for w, p95, n in rows]


def resolve_plan(args: argparse.Namespace) -> Plan:
    preset = QUICK if args.quick else FULL
    values = {
        key: getattr(args, key) if getattr(args, key) is not None else v
        for key, v in preset.items()
    }
    return Plan(
        **values,
        workers=args.workers,
        producers=args.producers,
        overload_factor=args.overload_factor,
        soak_share=args.soak_share,
        max_queue_length=args.max_queue_length,
        supervisor_rate=args.supervisor_rate,
        batch_size=args.batch_size,
        quick=args.quick,
    )


def run(plan: Plan, workdir: Path) -> dict[str, Any]:
    line = SoakLine(workdir, plan.workers)
    phases: Phases = []
    started = time.time()
    result: dict[str, Any] = {
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "load_average_start": os.getloadavg()[0],
        "plan": asdict(plan),
    }
    producers: Producers | None = None
    threads: list[Any] = []
    try:
        log("starting Redis, a fresh PostgreSQL database, workers and the admin site")
        settings = line.start(plan.batch_size)
        producers = Producers(line, settings, workdir, plan.producers)
        watcher = Watcher(line.redis_url, [producers.spool_dir(i) for i in range(plan.producers)])
        camera_pids = producers.pids

        def pids() -> dict[str, int]:
            return {**line.pids(), **camera_pids(), "harness": os.getpid()}

        sampler = Sampler(
            sql_dsn(line.database_url), line.redis_url, pids, phases, plan.sample_seconds
        )
        watcher.start()
        sampler.start()
        threads += [watcher, sampler]

        t0 = time.time()
        warm_ids = warm_up(settings, workdir, 64 * plan.workers)
        phases.append(("warm-up", t0, time.time()))
        log(f"workers warm ({time.time() - t0:.0f} s)")
        redis_baseline = int(watcher.last("used_memory"))
        supervisor = Supervisor(
            line.admin_url, SUPERVISOR, line.password, line.token, plan.supervisor_rate
        )
        supervisor.start()
        threads.insert(0, supervisor)

        # 1. capacity: the producers flat out, the queue never empty
        start = time.time() + 4
        phases.append(("capacity", start, start + plan.capacity_seconds))
        capacity_limit = min(CAPACITY_QUEUE_LIMIT, plan.max_queue_length or CAPACITY_QUEUE_LIMIT)
        producers.run("capacity", [[plan.capacity_seconds, 0]], start, capacity_limit)
        window = (start + plan.capacity_seconds / 3, start + plan.capacity_seconds)
        capacity = measure_capacity(sql_dsn(line.database_url), *window)
        empty_samples = watcher.minimum("queue", *window)
        t1 = time.time()
        wait_for_empty_line(line.redis_url, 600)
        phases.append(("drain", t1, time.time()))
        configured = settings_from_env().max_queue_length
        limit = plan.max_queue_length or max(
            CAPACITY_QUEUE_LIMIT, min(configured, round(AUTO_QUEUE_SECONDS * capacity))
        )
        half, over = plan.soak_share * capacity, plan.overload_factor * capacity
        log(
            f"capacity {capacity:.0f} jobs/s; MAX_QUEUE_LENGTH {limit}; "
            f"half rate {half:.0f}/s, overload {over:.0f}/s"
        )

        # 2-4. baseline, overload, soak: one schedule, so the producers never pause
        n = plan.producers
        schedule = [
            [plan.baseline_minutes * 60, half / n],
            [plan.overload_minutes * 60, over / n],
            [plan.minutes * 60, half / n],
        ]
        start = time.time() + 5
        bounds = [start]
        for seconds, _ in schedule:
            bounds.append(bounds[-1] + seconds)
        for name, begin, end in zip(
            ("baseline", "overload", "soak"), bounds, bounds[1:], strict=False
        ):
            phases.append((name, begin, end))
        log(f"baseline, overload and soak: {(bounds[-1] - start) / 60:.1f} minutes from now")
        producers.run("main", schedule, start, limit)
        t1 = time.time()
        wait_for_empty_line(line.redis_url, 900)
        phases.append(("final drain", t1, time.time()))
        for thread in threads:
            thread.stop()
        log("analysing")

        dsn = sql_dsn(line.database_url)
        baseline_start, burst_start, burst_end, soak_end = bounds
        with psycopg.connect(dsn) as pg:
            latency = {
                "before": latency_between(pg, baseline_start, burst_start),
                "during": latency_between(pg, burst_start, burst_end),
                "first_minute_after": latency_between(pg, burst_end, burst_end + 60),
                "rest_of_soak": latency_between(pg, burst_end + 60, soak_end),
            }
        windows = latency_windows(dsn, baseline_start, soak_end, plan.window_seconds)
        normal = normal_latency_limit(latency["before"]["p95_s"] or 0.0)
        recovery = recovery_seconds(
            [(w, p) for w, p, _ in windows], burst_end, normal, plan.hold_seconds
        )
        burst_s = burst_end - burst_start
        rates_seen = {
            "taken_during_burst": latency["during"]["jobs"] / burst_s,
            "committed_during_burst": measure_capacity(dsn, burst_start, burst_end),
        }
        jobs = check_jobs(dsn, [warm_ids, *producers.ids_files])
        held = plan.workers * 2 * plan.batch_size  # the workers' prefetch (worker/celery_app.py)
        overshoot = producer_overshoot(n, over / n, QUEUE_CHECK_INTERVAL_S)
        # the largest message seen: a bound must hold whichever images fill the queue
        bound = redis_bound_bytes(redis_baseline, limit, held, overshoot, watcher.message_max)
        queue_peak = watcher.peak("queue", burst_start, soak_end) or 0
        memory_peak = watcher.peak("used_memory", baseline_start, time.time()) or 0
        with redis.Redis.from_url(line.redis_url) as client:
            redis_peak_reported = int(client.info("memory")["used_memory_peak"])
        result.update(
            capacity={
                "jobs_per_s": capacity,
                "window": window,
                "queue_min_in_window": empty_samples,
                "saturated": bool(empty_samples and empty_samples > 0),
                "queue_limit": capacity_limit,
            },
            rates={
                "half": half,
                "overload": over,
                "max_queue_length": limit,
                "configured_max_queue_length": configured,
                "auto": plan.max_queue_length is None,
                "auto_seconds": AUTO_QUEUE_SECONDS,
                **rates_seen,
            },
            phases=phases,
            producers=producers.statuses,
            jobs=jobs,
            latency={
                **latency,
                "normal_limit_s": normal,
                "recovery_s": recovery,
                "recovery_limit_s": RECOVERY_LIMIT_S,
                "windows": windows,
            },
            redis={
                "baseline": redis_baseline,
                "peak_sampled": memory_peak,
                "peak_reported": redis_peak_reported,
                "bound": bound,
                "message_bytes": watcher.message_mean(),
                "message_bytes_max": watcher.message_max,
                "held": held,
                "overshoot": overshoot,
                "queue_peak": queue_peak,
                "bytes_per_queued_job": per_job_bytes(watcher, redis_baseline),
                "watch_errors": watcher.errors,
            },
            spool={
                "peak_bytes": watcher.peak("spool_bytes", started, time.time()) or 0,
                "peak_files": watcher.peak("spool_files", started, time.time()) or 0,
                "spool_max_bytes": settings.spool_max_bytes,
            },
            supervisor=supervisor.log.summary(),
            samples=sampler.as_json(),
            sampler_errors=sampler.errors,
            fast={k: [round(v, 2) for v in values] for k, values in watcher.columns.items()},
            soak=judge_soak(sampler, bounds[2] + plan.grace_minutes * 60),
            image_bytes=sum(len(d) for _, d in sample_payloads()) / len(sample_payloads()),
        )
    finally:
        if producers is not None:
            producers.stop()
        for thread in threads:
            if thread.is_alive():
                thread.stop()
        line.stop()
    result["load_average_end"] = os.getloadavg()[0]
    result["wall_minutes"] = (time.time() - started) / 60
    return result


def per_job_bytes(watcher: Watcher, baseline: int) -> float | None:
    """Redis's memory per queued job, at the sample with the longest queue."""
    queues, memory = watcher.columns["queue"], watcher.columns["used_memory"]
    if not queues or max(queues) < 100:
        return None
    i = max(range(len(queues)), key=queues.__getitem__)
    return (memory[i] - baseline) / queues[i]


def judge_soak(sampler: Sampler, grace_end: float) -> dict[str, Any]:
    """Memory growth and count drifts of each judged process over the soak's rest."""
    soak = [s for s in sampler.samples if s.phase in ("soak", "final drain")]
    names = sorted({p.name for s in soak for p in s.processes})
    growth, drifts = [], []
    for name in names:
        points = [(s.t, p) for s in soak for p in s.processes if p.name == name]
        if not points:
            continue
        pids = sorted({p.pid for _, p in points})
        last_pid = points[-1][1].pid
        same = [(t, p) for t, p in points if p.pid == last_pid]
        memory = memory_growth(name, [(t, p.rss_kb / 1024) for t, p in same], grace_end)
        if memory:
            growth.append({**asdict(memory), "judged": name.startswith(JUDGED), "pids": pids})
        for what, tolerance in (("fds", FD_TOLERANCE), ("pg", 0), ("redis", 0)):
            drift = count_drift(
                name, what, [(t, getattr(p, what)) for t, p in same], grace_end, tolerance
            )
            if drift:
                drifts.append({**asdict(drift), "judged": name.startswith(JUDGED)})
    totals = []
    for what in ("pg_total", "redis_total"):
        drift = count_drift("all", what, [(s.t, getattr(s, what)) for s in soak], grace_end, 0)
        if drift:
            totals.append(asdict(drift))
    return {"grace_end": grace_end, "memory": growth, "counts": drifts, "totals": totals}


def stop_on_sigterm(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="a 3-minute smoke run of the same")
    parser.add_argument("--minutes", type=float, help="the soak at half the rate (60)")
    parser.add_argument("--overload-minutes", type=float, help="the burst at 5x (10)")
    parser.add_argument(
        "--grace-minutes", type=float, help="the soak's first minutes, not judged (10)"
    )
    parser.add_argument("--baseline-minutes", type=float, help="half the rate before the burst (2)")
    parser.add_argument("--capacity-seconds", type=float, help="the saturation phase (60)")
    parser.add_argument("--sample-seconds", type=float, help="between process samples (30)")
    parser.add_argument(
        "--hold-seconds", type=float, help="latency normal this long = recovered (60)"
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--producers", type=int, default=2, help="producer processes (cameras)")
    parser.add_argument("--overload-factor", type=float, default=5.0)
    parser.add_argument("--soak-share", type=float, default=0.5, help="of the capacity")
    parser.add_argument(
        "--max-queue-length",
        type=int,
        default=None,
        help=f"MAX_QUEUE_LENGTH for the run (default: {AUTO_QUEUE_SECONDS:g} s of "
        "the capacity, at most the configured value)",
    )
    parser.add_argument("--supervisor-rate", type=float, default=3.0, help="admin requests/s")
    parser.add_argument("--batch-size", type=int, default=32, help="INSPECT_BATCH_SIZE")
    parser.add_argument(
        "--json",
        type=Path,
        help="where the samples go (default: docs/results/soak/, var/soak/ with --quick)",
    )
    parser.add_argument(
        "--report",
        type=Path,
        help="the Markdown report to write the sections "
        "into (default: docs/benchmarks.md; none with --quick)",
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, stop_on_sigterm)  # stop the line as Ctrl-C does
    plan = resolve_plan(args)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M")
    out = args.json or (QUICK_RESULTS if plan.quick else RESULTS) / (
        f"soak-{'quick-' if plan.quick else ''}{stamp}.json"
    )
    report = args.report or (None if plan.quick else REPORT)
    command = (
        shlex.join(["python", "-m", "bench.soak", *sys.argv[1:]])
        if argv is None
        else (shlex.join(["python", "-m", "bench.soak", *argv]))
    )
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        try:
            result = run(plan, Path(tmp))
        except BaseException:
            logs = Path(tmp)
            for path in sorted(logs.glob("*.log")):
                tail = path.read_text(errors="replace")[-2000:]
                if tail.strip():
                    print(f"--- {path.name} (last lines) ---\n{tail}", file=sys.stderr)
            raise
    result["command"] = command
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str))
    log(f"samples: {out}")
    section = soak_report.render(result, out)
    print(section)
    if report is not None:
        text = report.read_text() if report.exists() else ""
        report.write_text(soak_report.splice(text, section))
        log(f"wrote the Overload and Soak sections of {report}")
    return 0 if soak_report.passed(result) else 1


if __name__ == "__main__":
    sys.exit(main())
