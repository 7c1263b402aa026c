"""A lake's small objects on S3 in one request each: written with one PUT, read with one GET,
and small event files held in memory for a ``Lake.snapshot()`` block.

pyarrow's S3 file system makes a small file cost several requests: a write asks for the
bucket and the key first and then uploads in three parts (start, part, complete); a read asks
for the size and then reads ranges. A scheduled run every few minutes writes and reads dozens
of small files (its lease, watermark, state, findings), so these requests were most of its
time. Files of at most ``PUT_BYTES`` are written with one ``PutObject`` (larger ones, a
compacted day, stream through pyarrow as before), and the lake's small reads are one
``GetObject``.

The snapshot's held files:

A window's detectors each read the window's event files, and the scheduled run's detectors
each read their baselines: on S3, pyarrow reads a Parquet file in several ranged GETs (its
footer, then the column chunks asked for), and every detector asks again. Over a day of small
files (the hour partitions before compaction, what one object's ingest wrote) most of a run's
requests were these. Inside a snapshot, an event file of at most ``FILE_BYTES`` is fetched whole
in one GET the first time a read needs it, and later reads in the block decode it from memory;
the block holds at most ``TOTAL_BYTES`` of them, and larger files (compacted days) are read from
S3 as before, where a file's few ranged GETs are small beside its bytes.

Event files are never rewritten under their name (a batch's file is named by its inputs; a
compaction writes new names and deletes the old ones), so the bytes held are the file's. A file
whose size is not known from a listing (the files an ingest just wrote) is fetched with a
ranged GET of ``FILE_BYTES``: the answer says whether that was the whole file, and a larger one
is read from S3 as before. Local lakes are read from disk as always: nothing is held.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from pipeline import aws

if TYPE_CHECKING:
    from pipeline.lake import Lake

FILE_BYTES = 8 << 20
TOTAL_BYTES = 256 << 20
PUT_BYTES = 64 << 20


def _missing(exc: Exception) -> bool:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
    return code in ("NoSuchKey", "404", "NotFound")


def get(lake: Lake, rel: str, **ask: str) -> dict[str, object]:
    """``GetObject`` of ``rel``: FileNotFoundError if there is none, OSError for any other
    failure (as pyarrow reports a lake it cannot read)."""
    bucket, _, key = lake.path(rel).partition("/")
    try:
        answer: dict[str, object] = aws.client("s3").get_object(Bucket=bucket, Key=key, **ask)
    except Exception as exc:
        if _missing(exc):
            raise FileNotFoundError(lake.uri(rel)) from exc
        raise OSError(f"{lake.uri(rel)}: {type(exc).__name__}: {exc}"[:500]) from exc
    return answer


def read_bytes(lake: Lake, rel: str) -> bytes:
    """The file at ``rel`` in one request: one GET on S3 (pyarrow would ask for the size first
    and then a range, which a replacement in between makes a mix of two versions), one open
    file locally (a rename replaces the name, not what is open). FileNotFoundError if there is
    none."""
    if lake.is_local:
        with lake.fs.open_input_stream(lake.path(rel)) as f:
            data: bytes = f.read()
        return data
    body: bytes = get(lake, rel)["Body"].read()  # type: ignore[attr-defined]
    return body


def write_bytes(lake: Lake, rel: str, data: bytes) -> None:
    """``data`` at ``rel``, replacing what is there at once: a rename locally, one PUT on S3."""
    if not lake.is_local:
        put(lake, rel, data)
        return
    dest = lake.path(rel)
    lake.fs.create_dir(dest.rsplit("/", 1)[0], recursive=True)
    tmp = f"{dest}.{uuid.uuid4().hex}.tmp"
    with lake.fs.open_output_stream(tmp) as f:
        f.write(data)
    lake.fs.move(tmp, dest)


def delete(lake: Lake, rel: str) -> bool:
    """Remove the lake file ``rel``; False if it was gone already (known only locally: S3's
    ``DeleteObject`` answers the same either way, and is True). On S3 one ``DeleteObject``:
    pyarrow's delete asks for the key first and then for its parent folders, and writes a folder
    marker in their place if the folder is left empty; the lake has no folder markers on S3."""
    if lake.is_local:
        try:
            lake.fs.delete_file(lake.path(rel))
        except FileNotFoundError:
            return False
        except OSError:
            if lake.exists(rel):
                raise
            return False
        return True
    bucket, _, key = lake.path(rel).partition("/")
    try:
        aws.client("s3").delete_object(Bucket=bucket, Key=key)
    except Exception as exc:
        raise OSError(f"{lake.uri(rel)}: {type(exc).__name__}: {exc}"[:500]) from exc
    return True


def put(lake: Lake, rel: str, data: bytes | pa.Buffer) -> None:
    """``PutObject`` of ``data`` at ``rel`` (boto3's retries; an OSError if they fail)."""
    bucket, _, key = lake.path(rel).partition("/")
    body = data if isinstance(data, bytes) else data.to_pybytes()
    try:
        aws.client("s3").put_object(Bucket=bucket, Key=key, Body=body)
    except Exception as exc:
        raise OSError(f"{lake.uri(rel)}: {type(exc).__name__}: {exc}"[:500]) from exc
    lake.note_size(rel, len(body))


@dataclass
class Held:
    """The event files a snapshot block holds."""

    files: dict[str, pa.Buffer] = field(default_factory=dict)
    too_large: set[str] = field(default_factory=set)
    total: int = 0
    gets: int = 0  # GETs made (for tests)


def buffer(lake: Lake, held: Held, rel: str) -> pa.Buffer | None:
    """The bytes of the event file ``rel`` (fetched on first use), or None: read it from the
    lake (a large file, the block's memory spent, or a local lake)."""
    got = held.files.get(rel)
    if got is not None or lake.is_local or rel in held.too_large:
        return got
    size = lake.size(rel)
    if (size is not None and size > FILE_BYTES) or held.total + (size or 0) > TOTAL_BYTES:
        return None
    ask: dict[str, str] = {} if size is not None else {"Range": f"bytes=0-{FILE_BYTES - 1}"}
    # A file deleted since its listing (a compaction) raises FileNotFoundError, as pyarrow's
    # read would.
    answer: Any = get(lake, rel, **ask)
    held.gets += 1
    whole = answer.get("ContentRange", "")
    if whole:
        lake.note_size(rel, int(whole.rsplit("/", 1)[-1]))
    if whole and lake.size(rel) != answer["ContentLength"]:
        held.too_large.add(rel)  # larger than FILE_BYTES: read from S3 as before
        answer["Body"].close()
        return None
    data = pa.py_buffer(answer["Body"].read())
    if held.total + data.size > TOTAL_BYTES:
        return None
    held.files[rel] = data
    held.total += data.size
    return data
