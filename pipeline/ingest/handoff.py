"""The worker processes of ``ingest --workers N``: each decodes batches and, once the parent has
planned them, writes the same batches' files.

A decoded batch is ~100 MB of Arrow, nine tenths of it the raw text of its records. Only the
process that decoded a batch ever holds that text: it keeps the batch, hands the parent what
the plan reads (``prepare.plan_rows``, through an Arrow IPC file in shared memory, which the
parent memory-maps: a pickle through a pipe costs the parent more than its own work), and
writes the batch's files when the plan comes back (a few columns, through the pipe). Copying
the whole batch to the parent, or to another worker, cost a fifth more CPU than one process
spends on all of it (page faults and copies of shared memory).

Batches go to whichever worker has room, not round-robin: a worker holds at most ``_HELD``
batches (one waiting for its plan, one being decoded), so memory stays bounded and a worker that
got the slow batches gets fewer of them. Each worker does its work in the order it was sent:
the decode it was given and the writes the parent sent since.

Nothing here is state: the lake's all-or-nothing writes and the order of marking batches done
(``run``) are unchanged. The scratch folder is removed when the run ends, also by an exception;
a process killed outright (SIGKILL, out of memory) leaves it behind, holding at most the batches
that were in flight, and the next run removes it (it is named by its owner, ``temporaries``).
Workers stop when the main process is gone: each sees its pipe close (none keeps the main
process's end of a pipe open), ends what it was doing, and exits.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import queue
import re
import shutil
import signal
import tempfile
import threading
import traceback
from dataclasses import replace
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipeline import temporaries
from pipeline.config import IngestConfig
from pipeline.ingest import prepare, write
from pipeline.ingest.decode import Batch, Decoded, decode_batch
from pipeline.ingest.reading import Reading

# Only ever the parent of a private folder made by mkdtemp (mode 0700, unpredictable name).
_SHARED_MEMORY = Path("/dev/shm")  # noqa: S108
# Room for the columns of a few batches in flight (tens of MB each, the raw text not among them).
_ROOM_NEEDED = 1 << 30
_HELD = 2  # batches a worker holds at most: one waiting for its plan, one being decoded
_SCRATCH = "tenantwatch-ingest-"
_SCRATCH_NAME = re.compile(re.escape(_SCRATCH) + r"(?P<owner>[A-Za-z0-9-]+\.\d+)-\w+")


def scratch_dir() -> tempfile.TemporaryDirectory[str]:
    """A folder for one run's hand-off files: in RAM (tmpfs) when the system has one with room
    for the batches in flight (a container's is often 64 MB), else the temporary folder. The
    folders runs that died left there are removed first."""
    shm = _SHARED_MEMORY if _roomy(_SHARED_MEMORY) else None
    clean_scratch([_SHARED_MEMORY, Path(tempfile.gettempdir())])
    prefix = f"{_SCRATCH}{temporaries.owner()}-"
    return tempfile.TemporaryDirectory(prefix=prefix, dir=shm)


def clean_scratch(folders: list[Path]) -> list[Path]:
    """Remove the scratch folders in ``folders`` that runs which died left, and return them.
    Only folders named by their owner are touched: a folder of unknown owner may be a live
    run's."""
    removed = []
    for folder in folders:
        try:
            entries = list(folder.iterdir())
        except OSError:
            continue
        for path in entries:
            m = _SCRATCH_NAME.fullmatch(path.name)
            try:
                if m and temporaries.left_behind(m["owner"], path.stat().st_mtime):
                    shutil.rmtree(path)
                    removed.append(path)
            except OSError:
                pass  # gone already, or not ours to remove
    return removed


def _roomy(folder: Path) -> bool:
    return folder.is_dir() and shutil.disk_usage(folder).free >= _ROOM_NEEDED


def to_file(d: Decoded, folder: str, reading: Reading) -> Decoded:
    """``d`` with what the plan reads of its rows (``prepare.plan_rows``) left in a file in
    ``folder`` (``rows_file``)."""
    rows = prepare.plan_rows(d.rows, reading)
    path = Path(folder) / f"{d.batch.id}.arrow"
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, rows.schema) as writer:
        writer.write_table(rows)
    return replace(d, rows=rows.schema.empty_table(), rows_file=str(path))


def load_rows(d: Decoded) -> Decoded:
    """In the parent: ``d`` with its rows mapped back from their file, which is then deleted
    (the mapping keeps the pages while the table lives)."""
    if d.rows_file is None:
        return d
    rows = pa.ipc.open_file(pa.memory_map(d.rows_file)).read_all()
    Path(d.rows_file).unlink()
    return replace(d, rows=rows, rows_file=None)


class RemoteTraceback(Exception):
    """Where in a worker an exception was raised (its formatted traceback)."""


def _serve(
    conn: Connection,
    ingest: IngestConfig,
    reading: Reading,
    lake_root: str,
    parents: list[Connection],
) -> None:
    """A worker's loop: ("decode", i, batch, folder) and ("write", i, plan) messages in order,
    each answered with ("decoded", i, Decoded) / ("written", i, rows), or ("failed", i,
    exception, traceback); None, or the parent's end closing, ends it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the workers on Ctrl-C
    # A forked worker holds copies of the parent's ends of the pipes made so far, its own among
    # them: while it does, its pipe never closes, and a worker whose parent was killed would wait
    # for messages forever (holding its memory).
    for parent_end in parents:
        parent_end.close()
    # A thread takes the parent's messages as they come: the parent never waits on a send while
    # this worker is busy (a plan is megabytes, more than a pipe holds), and both sending at once
    # cannot block each other.
    inbox: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
    threading.Thread(target=_receive, args=(conn, inbox), daemon=True).start()
    held: dict[int, pa.Table] = {}
    while (msg := inbox.get()) is not None:
        kind, i = msg[0], msg[1]
        reply: tuple[Any, ...]
        try:
            if kind == "decode":
                d = decode_batch(msg[2], ingest, reading)
                held[i] = d.rows
                reply = ("decoded", i, to_file(d, msg[3], reading))
            else:
                reply = ("written", i, write.write(lake_root, msg[2], held.pop(i)))
        except Exception as e:  # every failure goes to the parent, which raises it
            reply = ("failed", i, e, traceback.format_exc())
        try:
            conn.send(reply)
        except Exception as e:  # an exception that does not pickle
            conn.send(("failed", i, RuntimeError(repr(e)), traceback.format_exc()))


def _receive(conn: Connection, inbox: queue.SimpleQueue[tuple[Any, ...] | None]) -> None:
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            msg = None
        inbox.put(msg)
        if msg is None:
            return


class Workers:
    """N worker processes (``_serve``) and what each holds.

    ``decode`` sends a batch to the worker with the most room (``room`` says whether one has
    any); ``write`` sends a plan to the worker that holds its batch; ``next_reply`` waits for
    the next answer, raising a worker's exception, or an error if a worker died."""

    def __init__(
        self,
        n: int,
        ingest: IngestConfig,
        reading: Reading,
        lake_root: str,
    ) -> None:
        self._scratch = scratch_dir()
        self.folder = self._scratch.name
        ctx = multiprocessing.get_context()
        self._conns: list[Connection] = []
        self._procs: list[Any] = []
        self._held = [0] * n  # batches sent to each worker and not yet written
        self._owner: dict[int, int] = {}  # batch -> its worker
        try:
            for _ in range(n):
                mine, theirs = ctx.Pipe()
                p = ctx.Process(
                    target=_serve,
                    args=(theirs, ingest, reading, lake_root, [*self._conns, mine]),
                    daemon=True,
                )
                p.start()
                theirs.close()
                self._conns.append(mine)
                self._procs.append(p)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        self.close(abort=kind is not None)

    def room(self) -> bool:
        return min(self._held) < _HELD

    def decode(self, i: int, batch: Batch) -> None:
        w = min(range(len(self._held)), key=self._held.__getitem__)
        self._held[w] += 1
        self._owner[i] = w
        self._conns[w].send(("decode", i, batch, self.folder))

    def write(self, i: int, plan: write.Plan) -> None:
        self._conns[self._owner[i]].send(("write", i, plan))

    def next_reply(self) -> tuple[str, int, Any]:
        """The next ("decoded", batch, Decoded) or ("written", batch, rows written)."""
        ready = wait([*self._conns, *(p.sentinel for p in self._procs)])
        conn = next((c for c in ready if isinstance(c, Connection)), None)
        try:
            if conn is None:
                raise EOFError
            kind, i, value, *tb = conn.recv()
        except (EOFError, OSError):
            died = next(
                p
                for p, c in zip(self._procs, self._conns, strict=True)
                if c is conn or p.sentinel in ready
            )
            died.join(timeout=5)
            raise RuntimeError(f"an ingest worker died (exit code {died.exitcode})") from None
        if kind == "failed":
            raise value from RemoteTraceback(tb[0])
        if kind == "written":
            self._held[self._owner.pop(i)] -= 1
        return kind, i, value

    def close(self, abort: bool = False) -> None:
        """Stop the workers: when they are done with what they were sent, or at once (``abort``:
        the run failed, and what they hold is not needed)."""
        for conn in self._conns:
            with contextlib.suppress(OSError):  # already gone
                conn.send(None)
        for p in self._procs:
            p.join(timeout=0 if abort else 30)
            if p.is_alive():
                p.terminate()
                p.join()
        for conn in self._conns:
            conn.close()
        self._conns, self._procs = [], []
        self._scratch.cleanup()
