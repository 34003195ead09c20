"""What the soak reads about each process: resident memory, open files, and which of
the database's and Redis's connections are its own.

Linux only (``/proc``). PostgreSQL's ``pg_stat_activity`` and Redis's ``CLIENT LIST``
name a connection by the client's address; ``/proc/net/tcp`` and a process's
``/proc/<pid>/fd`` links say which process holds the socket on that port, so each
server-side connection is counted against the process that opened it.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")


def rss_kb(pid: int) -> int | None:
    """VmRSS of ``pid`` in KiB; None when the process is gone."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def open_fds(pid: int) -> list[str]:
    """The targets of ``pid``'s open file descriptors (``socket:[inode]`` for sockets)."""
    folder = PROC / str(pid) / "fd"
    targets = []
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    for name in names:
        try:
            targets.append(os.readlink(folder / name))
        except OSError:
            continue  # closed meanwhile
    return targets


def socket_inodes(fd_targets: Iterable[str]) -> set[int]:
    return {
        int(t[len("socket:[") : -1])
        for t in fd_targets
        if t.startswith("socket:[") and t.endswith("]")
    }


def parse_tcp_table(text: str) -> dict[int, tuple[int, int]]:
    """``/proc/net/tcp`` (or tcp6) as inode -> (local port, remote port)."""
    sockets = {}
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10:
            continue
        local, remote, inode = fields[1], fields[2], int(fields[9])
        if inode:
            sockets[inode] = (int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16))
    return sockets


def tcp_sockets() -> dict[int, tuple[int, int]]:
    sockets: dict[int, tuple[int, int]] = {}
    for name in ("tcp", "tcp6"):
        try:
            sockets.update(parse_tcp_table((PROC / "net" / name).read_text()))
        except OSError:
            continue
    return sockets


def client_ports(
    inodes: set[int], sockets: Mapping[int, tuple[int, int]], server_port: int
) -> set[int]:
    """The local ports of a process's connections to ``server_port``."""
    return {sockets[i][0] for i in inodes if i in sockets and sockets[i][1] == server_port}


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (gunicorn's workers under its master)."""
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the command name, in parentheses, may hold spaces: the fields follow the last ")"
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)


@dataclass
class ProcessSample:
    name: str  # worker-0, admin, admin-worker-1, camera-0, harness
    pid: int
    rss_kb: int
    fds: int
    pg: int = 0  # its connections as PostgreSQL lists them
    redis: int = 0  # its connections as Redis lists them


@dataclass
class Sample:
    t: float
    phase: str
    processes: list[ProcessSample]
    pg_total: int  # connections to the soak's database
    pg_other: int  # ... that no sampled process holds
    redis_total: int
    redis_other: int
    redis_used_memory: int
    rows: int
    extra: dict[str, float] = field(default_factory=dict)


def attribute(
    server_ports: Iterable[int], ports_by_process: Mapping[str, set[int]]
) -> tuple[Counter[str], int]:
    """Count the server's connections (by client port) per process; and those of no process."""
    owner = {port: name for name, ports in ports_by_process.items() for port in ports}
    counts: Counter[str] = Counter()
    other = 0
    for port in server_ports:
        if port in owner:
            counts[owner[port]] += 1
        else:
            other += 1
    return counts, other


def parse_client_ports(addresses: Iterable[str]) -> list[int]:
    """Ports of ``host:port`` addresses as Redis's CLIENT LIST gives them."""
    ports = []
    for address in addresses:
        host, _, port = address.rpartition(":")
        if host and port.isdigit():
            ports.append(int(port))
    return ports
