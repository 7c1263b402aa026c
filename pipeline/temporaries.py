"""Temporary files and folders named by the process that owns them, so that a later run removes
what a dead one left, and never what a live one is still writing.

A process killed outright (SIGKILL, the out-of-memory killer, a machine gone) cleans nothing up.
Its temporaries carry ``owner()``, its host and process id: on the same host, a later run asks
whether that process still runs; of another host (a lake shared over a network), or of no
owner known, a temporary is left behind once ``STALE_AFTER_S`` passed without a write to it.
"""

from __future__ import annotations

import os
import re
import socket
import time
from pathlib import Path

# Writing a temporary takes seconds; one unchanged for this long has no live writer.
STALE_AFTER_S = 600.0
OWNER = re.compile(r"[A-Za-z0-9-]+\.\d+")  # host.pid


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:63] or "host"


def owner() -> str:
    """This process, as its temporaries are named: ``<host>.<pid>``."""
    return f"{_host()}.{os.getpid()}"


def left_behind(owner_tag: str | None, modified: float, now: float | None = None) -> bool:
    """Was a temporary, last written at ``modified`` (seconds since the epoch) by
    ``owner_tag`` (``owner()``'s form, or None when unknown), left by a process that is gone?"""
    now = time.time() if now is None else now
    if owner_tag is not None and OWNER.fullmatch(owner_tag):
        host, pid = owner_tag.rsplit(".", 1)
        if host == _host():
            return not _running(int(pid), modified)
    return now - modified > STALE_AFTER_S


def _running(pid: int, since: float) -> bool:
    """Is process ``pid`` running, and did it start before ``since`` (a process started later
    is another one that was given the same id)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's: it runs
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
    except (OSError, StopIteration, IndexError, ValueError):
        return True  # no /proc to ask: it runs
    if stat[0] in ("Z", "X"):
        return False  # it ended, and nobody has reaped it yet
    started = boot + int(stat[19]) / os.sysconf("SC_CLK_TCK")
    return started <= since + 2.0  # boot time is known to the second
