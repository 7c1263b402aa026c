"""How a worker process hands a decoded batch to the parent: its rows through a file, not a pipe.

A batch's rows are ~100 MB of Arrow, mostly raw text. Returned from a ``ProcessPoolExecutor``
they are pickled (one copy), pushed through a 64 KB pipe (another, in thousands of system calls)
and unpickled by the parent (a third), and the parent, which must keep up with every worker,
pays for the last two. Instead the worker writes them once as an Arrow IPC file in a scratch
folder (shared memory where there is some) and returns only the small rest of ``Decoded``; the
parent memory-maps the file, so reading it copies nothing, and deletes it as soon as it is
mapped (the mapping keeps the pages until the table is released).

Nothing here is state: the lake's all-or-nothing writes and the order of marking batches done are
unchanged. The scratch folder is removed when the run ends, also by an exception; a process
killed outright (SIGKILL, out of memory) leaves it behind, holding at most the batches that
were in flight. Those files live in RAM when on tmpfs and are not in any process's RSS until
the parent maps them.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import pyarrow as pa

from pipeline.config import IngestConfig
from pipeline.ingest.decode import Batch, Decoded, decode_batch

# Only ever the parent of a private folder made by mkdtemp (mode 0700, unpredictable name).
_SHARED_MEMORY = Path("/dev/shm")  # noqa: S108
# Room for a few batches in flight (a batch's rows are ~100-200 MB).
_ROOM_NEEDED = 2 << 30


def scratch_dir() -> tempfile.TemporaryDirectory[str]:
    """A folder for one run's hand-off files: in RAM (tmpfs) when the system has one with room
    for the batches in flight (a container's is often 64 MB), else the temporary folder."""
    shm = _SHARED_MEMORY if _roomy(_SHARED_MEMORY) else None
    return tempfile.TemporaryDirectory(prefix="tenantwatch-ingest-", dir=shm)


def decode_to_file(batch: Batch, ingest: IngestConfig, claim_key: str, folder: str) -> Decoded:
    """In a worker: ``decode_batch``, with the rows left in ``folder`` (``rows_file``)."""
    d = decode_batch(batch, ingest, claim_key)
    rows = d.rows  # in its chunks as decoded: the writer picks rows from chunks (write.write)
    path = Path(folder) / f"{batch.id}.arrow"
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, rows.schema) as writer:
        writer.write_table(rows)
    return replace(d, rows=d.rows.schema.empty_table(), rows_file=str(path))


def _roomy(folder: Path) -> bool:
    return folder.is_dir() and shutil.disk_usage(folder).free >= _ROOM_NEEDED


def load_rows(d: Decoded, keep_file: bool = False) -> Decoded:
    """In the parent: ``d`` with its rows mapped back from their file, which is then deleted,
    unless ``keep_file`` (then ``rows_file`` still names it, for ``write.write`` to map and
    delete)."""
    if d.rows_file is None:
        return d
    # Not closed here: the table's buffers point into the mapping, which lives as long as they do.
    rows = pa.ipc.open_file(pa.memory_map(d.rows_file)).read_all()
    if keep_file:
        return replace(d, rows=rows)
    Path(d.rows_file).unlink()
    return replace(d, rows=rows, rows_file=None)
