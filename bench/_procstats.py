"""CPU seconds and peak memory of process trees, from /proc (Linux; elsewhere nothing is known).

A tree is a process and its descendants (Celery's prefork children, say). `Watch.sample()` is
called every second or so: CPU is each process's utime + stime at its last sample (a child
that exits between two samples loses at most that interval). Memory two ways: the sum of each
process's VmHWM (the kernel's high-water mark of its resident set; pages a forked child shares
with its parent, or a PostgreSQL backend with shared_buffers, count in each, so this is an upper
bound) and the largest sum of PSS seen at a sample (shared pages split between their users).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of `pid`, or None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # After "(comm)": state, ppid, ..., utime (14th field of the line), stime (15th).
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK


def _hwm_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def _all_pids() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return []


@dataclass
class Usage:
    cpu: float = 0.0  # seconds, over the measured window
    peak_rss_kb: int = 0  # sum of the VmHWM of every process of the tree
    peak_pss_kb: int = 0  # largest sum of PSS over the tree at one sample
    processes: int = 0
    leader_rss_kb: int = 0  # VmHWM of the tree's first process


@dataclass
class _Group:
    roots: Callable[[dict[int, int]], list[int]]
    cpu: dict[int, float] = field(default_factory=dict)  # pid -> CPU at its last sample
    baseline: dict[int, float] = field(default_factory=dict)
    hwm: dict[int, int] = field(default_factory=dict)
    peak_pss: int = 0
    leader: int | None = None


class Watch:
    """Named process trees; `start()` sets the CPU baseline, `usage()` reads the totals."""

    def __init__(self) -> None:
        self.groups: dict[str, _Group] = {}
        self.available = Path("/proc/self/stat").exists()

    def add(self, name: str, pid: int) -> None:
        """The tree rooted at `pid`."""
        self.groups[name] = _Group(roots=lambda _parents, pid=pid: [pid], leader=pid)

    def add_matching(self, name: str, needle: str) -> None:
        """Every process whose command line contains `needle` (e.g. one database's backends)."""

        def roots(parents: dict[int, int]) -> list[int]:
            return [pid for pid in parents if needle in _cmdline(pid)]

        self.groups[name] = _Group(roots=roots)

    def sample(self) -> None:
        if not self.available:
            return
        stats = {pid: s for pid in _all_pids() if (s := _stat(pid)) is not None}
        parents = {pid: ppid for pid, (ppid, _) in stats.items()}
        children: dict[int, list[int]] = {}
        for pid, ppid in parents.items():
            children.setdefault(ppid, []).append(pid)
        for group in self.groups.values():
            todo = [pid for pid in group.roots(parents) if pid in stats]
            pss = 0
            while todo:
                pid = todo.pop()
                group.cpu[pid] = stats[pid][1]
                group.hwm[pid] = max(group.hwm.get(pid, 0), _hwm_kb(pid))
                pss += _pss_kb(pid)
                todo.extend(children.get(pid, ()))
            group.peak_pss = max(group.peak_pss, pss)

    def start(self) -> None:
        """Count CPU from now on (processes that appear later count from zero)."""
        self.sample()
        for group in self.groups.values():
            group.baseline = dict(group.cpu)

    def usage(self, name: str) -> Usage:
        group = self.groups[name]
        cpu = sum(value - group.baseline.get(pid, 0.0) for pid, value in group.cpu.items())
        return Usage(
            cpu=cpu,
            peak_rss_kb=sum(group.hwm.values()),
            peak_pss_kb=group.peak_pss,
            processes=len(group.cpu),
            leader_rss_kb=group.hwm.get(group.leader, 0) if group.leader else 0,
        )
