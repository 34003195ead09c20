"""The soak's two samplers, each a thread: the queue and Redis every second, the
processes (memory, files, connections) every ``--sample-seconds``."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, cast

import psycopg
import redis

from bench.soak_probes import (
    ProcessSample,
    Sample,
    attribute,
    children,
    client_ports,
    open_fds,
    parse_client_ports,
    rss_kb,
    socket_inodes,
    tcp_sockets,
)
from bench.soak_stats import phase_at
from core.jobs import QUEUE_NAME
from core.queue import jobs_held, queue_length

Phases = list[tuple[str, float, float]]
MESSAGE_SAMPLE = 50
MESSAGE_LOOKS = 20


class Watcher(threading.Thread):
    """The queue's length, the jobs held, Redis's memory and the producers' spools."""

    def __init__(self, redis_url: str, spool_dirs: Sequence[Path], period_s: float = 1.0) -> None:
        super().__init__(name="soak-watcher", daemon=True)
        self.client = redis.Redis.from_url(redis_url, socket_timeout=5)
        self.spool_dirs = spool_dirs
        self.period_s = period_s
        self.columns: dict[str, list[float]] = {
            k: [] for k in ("t", "queue", "held", "used_memory", "spool_bytes", "spool_files")
        }
        # sizes of queued jobs as Redis holds them: up to MESSAGE_LOOKS looks at the
        # first MESSAGE_SAMPLE of the queue
        self.message_max = 0
        self.message_sizes: list[int] = []
        self.errors = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.sample()
            except redis.RedisError:
                self.errors += 1
            self.stopping.wait(self.period_s)

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)
        self.client.close()

    def sample(self) -> None:
        queue, held = queue_length(self.client), jobs_held(self.client)
        used = int(cast(dict[str, Any], self.client.info("memory"))["used_memory"])
        files = [p for d in self.spool_dirs if d.is_dir() for p in d.glob("*.json*")]
        size = 0
        for path in files:
            try:
                size += path.stat().st_size
            except FileNotFoundError:
                continue  # sent meanwhile
        for key, value in zip(
            self.columns, (time.time(), queue, held, used, size, len(files)), strict=True
        ):
            self.columns[key].append(value)
        if queue >= 10 and len(self.message_sizes) < MESSAGE_LOOKS * MESSAGE_SAMPLE:
            messages = cast(list[bytes], self.client.lrange(QUEUE_NAME, 0, MESSAGE_SAMPLE - 1))
            self.message_sizes += [len(m) for m in messages]
            self.message_max = max(self.message_sizes)

    def message_mean(self) -> float:
        return statistics.fmean(self.message_sizes) if self.message_sizes else 0.0

    def peak(self, column: str, start: float, end: float) -> float | None:
        values = [
            v
            for t, v in zip(self.columns["t"], self.columns[column], strict=True)
            if start <= t < end
        ]
        return max(values) if values else None

    def minimum(self, column: str, start: float, end: float) -> float | None:
        values = [
            v
            for t, v in zip(self.columns["t"], self.columns[column], strict=True)
            if start <= t < end
        ]
        return min(values) if values else None

    def last(self, column: str) -> float:
        return self.columns[column][-1] if self.columns[column] else 0.0


class Sampler(threading.Thread):
    """Each process's resident memory, open files, and database and Redis connections."""

    def __init__(
        self,
        database_dsn: str,
        redis_url: str,
        pids: Callable[[], dict[str, int]],
        phases: Phases,
        period_s: float,
    ) -> None:
        super().__init__(name="soak-sampler", daemon=True)
        self.database_dsn = database_dsn
        self.database = psycopg.conninfo.conninfo_to_dict(database_dsn)["dbname"]
        self.pg_port = int(psycopg.conninfo.conninfo_to_dict(database_dsn).get("port") or 5432)
        self.redis = redis.Redis.from_url(redis_url, socket_timeout=5)
        self.redis_port = int(self.redis.connection_pool.connection_kwargs["port"])
        self.pids, self.phases, self.period_s = pids, phases, period_s
        self.samples: list[Sample] = []
        self.names: dict[int, str] = {}  # the admin's workers get a name when first seen
        self.errors: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.database_dsn, autocommit=True) as pg:
            while not self.stopping.is_set():
                try:
                    self.samples.append(self.sample(pg))
                except (psycopg.Error, redis.RedisError, OSError) as exc:
                    self.errors.append(f"{time.time():.0f}: {type(exc).__name__}: {exc}")
                self.stopping.wait(self.period_s)
            try:
                self.samples.append(self.sample(pg))  # the last, as the run ends
            except (psycopg.Error, redis.RedisError, OSError) as exc:
                self.errors.append(f"{time.time():.0f}: {type(exc).__name__}: {exc}")

    def stop(self) -> None:
        self.stopping.set()
        self.join(60)
        self.redis.close()

    def watched(self) -> dict[str, int]:
        pids = dict(self.pids())
        if "admin" in pids:
            for pid in children(pids["admin"]):
                name = self.names.setdefault(pid, f"admin-worker-{len(self.names)}")
                pids[name] = pid
        return pids

    def sample(self, pg: psycopg.Connection[Any]) -> Sample:
        now = time.time()
        sockets = tcp_sockets()
        processes, pg_ports, redis_ports = [], {}, {}
        for name, pid in self.watched().items():
            rss = rss_kb(pid)
            if rss is None:
                continue  # exited
            fds = open_fds(pid)
            inodes = socket_inodes(fds)
            pg_ports[name] = client_ports(inodes, sockets, self.pg_port)
            redis_ports[name] = client_ports(inodes, sockets, self.redis_port)
            processes.append(ProcessSample(name, pid, rss, len(fds)))
        server_pg = [
            int(port)
            for (port,) in pg.execute(
                "SELECT client_port FROM pg_stat_activity WHERE datname = %s", (self.database,)
            ).fetchall()
            if port is not None
        ]
        clients = cast(list[dict[str, str]], self.redis.client_list())
        server_redis = parse_client_ports(c["addr"] for c in clients)
        pg_counts, pg_other = attribute(server_pg, pg_ports)
        redis_counts, redis_other = attribute(server_redis, redis_ports)
        for process in processes:
            process.pg, process.redis = pg_counts[process.name], redis_counts[process.name]
        rows = pg.execute("SELECT count(*) FROM inspections").fetchone()
        return Sample(
            t=now,
            phase=phase_at(self.phases, now),
            processes=processes,
            pg_total=len(server_pg),
            pg_other=pg_other,
            redis_total=len(server_redis),
            redis_other=redis_other,
            redis_used_memory=int(cast(dict[str, Any], self.redis.info("memory"))["used_memory"]),
            rows=int(rows[0]) if rows else 0,
        )

    def as_json(self) -> list[dict[str, Any]]:
        return [asdict(s) for s in self.samples]
