"""The memory and CPU time of a process and of every process it starts, sampled from /proc.

``os.wait4`` reports on the process waited for: its own peak RSS (or that of a child it reaped,
if larger) and CPU time. A peer that starts processes of its own is more than that: Spark's
Python driver starts the JVM (driver and, on ``local[N]``, executor), which starts the Python
workers that run the tasks; their memory is not the driver's, and several run side by side.
``Sampler`` walks the process tree every ``interval`` seconds (``/proc/PID/task/*/children``)
and keeps, per process, its peak RSS (the kernel's own high-water mark, ``VmHWM``: exact, as
long as one sample comes after the peak, since the mark stays until the process ends) and its
CPU time as last sampled (``utime + stime`` of ``/proc/PID/stat``, its own, not its children's);
and, at each sample, the memory of the processes below one named ``workers_under`` (``java``)
together (those named ``workers_named``, ``python``: not the helpers Java starts to run
commands): their PSS summed (``/proc/PID/smaps_rollup``: pages a forked worker shares with its
parent counted once between them), whose peak over the run is reported. Linux only.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

_PROC = Path("/proc")
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass
class Proc:
    """One process of the tree, as last sampled."""

    pid: int
    parent: int
    name: str
    peak_mb: float = 0.0  # VmHWM: the process's own peak RSS
    cpu_s: float = 0.0  # its own user + system time, as last sampled
    worker: bool = False  # below a process named ``workers_under``


def available() -> bool:
    return (_PROC / "self" / "status").exists()


class Sampler:
    """Samples the tree under ``root`` in a thread of its own: ``start()``, then ``stop()`` once
    the root has ended but before it is reaped (``os.waitid(..., WNOWAIT)``: its final CPU time
    is still readable then)."""

    def __init__(
        self,
        root: int,
        interval: float = 0.2,
        workers_under: str = "java",
        workers_named: str = "python",
    ) -> None:
        self.root, self.interval = root, interval
        self.workers_under, self.workers_named = workers_under, workers_named
        self.procs: dict[int, Proc] = {}
        self.workers_peak_mb = 0.0  # the largest sum of the workers' PSS at one sample
        self.samples = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join()
        self.sample()

    def _loop(self) -> None:
        while not self._done.is_set():
            self.sample()
            self._done.wait(self.interval)

    def sample(self) -> None:
        workers_mb = 0.0
        for pid, parent in _tree(self.root):
            status = _status(pid)
            if status is None:  # ended since it was listed
                continue
            known = self.procs.get(pid)
            if known is None or known.parent != parent:  # new (or a reused pid)
                up = self.procs.get(parent)
                below = up is not None and (up.worker or up.name == self.workers_under)
                name = status.get("Name", "?")
                known = self.procs[pid] = Proc(pid, parent, name, worker=below)
            known.name = status.get("Name", known.name)  # a script that became java (exec)
            known.peak_mb = max(known.peak_mb, _kb(status.get("VmHWM")) / 1024)
            cpu = _cpu(pid)
            if cpu is not None:
                known.cpu_s = cpu
            if known.worker and known.name.startswith(self.workers_named):
                workers_mb += _pss_kb(pid, status) / 1024
        self.workers_peak_mb = max(self.workers_peak_mb, workers_mb)
        self.samples += 1

    # --- what the tree did --------------------------------------------------------------------

    def cpu_s(self) -> float:
        """The tree's CPU time: every process's own, summed."""
        return sum(p.cpu_s for p in self.procs.values())

    def peak_mb(self, name: str) -> float:
        """The largest peak RSS of the tree's processes named ``name`` (not workers)."""
        return max((p.peak_mb for p in self.procs.values() if p.name == name), default=0.0)

    def workers(self) -> list[Proc]:
        """The worker processes seen (a Python daemon that forks workers is one of them)."""
        return [
            p for p in self.procs.values() if p.worker and p.name.startswith(self.workers_named)
        ]

    def still_running(self) -> list[int]:
        """Processes of the tree that outlived the root (a JVM shutting down), not zombies."""
        out = []
        for pid in self.procs:
            status = _status(pid)
            if pid != self.root and status is not None and status.get("State", "Z")[0] != "Z":
                out.append(pid)
        return out


def _tree(root: int) -> list[tuple[int, int]]:
    """(pid, parent) of ``root`` (parent 0) and its descendants, parents first."""
    out, todo = [(root, 0)], [root]
    while todo:
        pid = todo.pop()
        for child in _children(pid):
            out.append((child, pid))
            todo.append(child)
    return out


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        tasks = list((_PROC / str(pid) / "task").iterdir())
    except OSError:
        return kids
    for task in tasks:  # a child belongs to the thread that started it
        try:
            kids += [int(k) for k in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return kids


def _status(pid: int) -> dict[str, str] | None:
    try:
        text = (_PROC / str(pid) / "status").read_text()
    except OSError:
        return None
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def _kb(value: str | None) -> float:
    return float(value.split()[0]) if value else 0.0


def _pss_kb(pid: int, status: dict[str, str]) -> float:
    """The process's proportional set size; its RSS where smaps_rollup cannot be read."""
    try:
        for line in (_PROC / str(pid) / "smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return _kb(line.split(":", 1)[1])
    except OSError:
        pass
    return _kb(status.get("VmRSS"))


def _cpu(pid: int) -> float | None:
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text.rpartition(")")[2].split()  # after the name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime (fields 14 and 15)
