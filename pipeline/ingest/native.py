"""The compiled decoder (``_ctscan.c``), if it was built, and the switch to leave it.

Ingestion reads CloudTrail delivery files by two decoders: the compiled one, and the Python one
(``cloudtrail``, ``formats``, ``decode``), which is the reference and takes every input. The
compiled one takes a file only when it reads it exactly as the Python one does, and hands anything
unusual back. Which decoder owns which rule (fields, numbers, strings, the secret pre-filter,
credential spans, the record hash, depth), and what keeps them equal (tests/test_native.py, the
differential fuzzer in tests/fuzz/), is written in one place: docs/DECODERS.md.

``pip install`` compiles the extension (a C compiler is part of the machine's set-up). Without it,
or with ``TENANTWATCH_NATIVE=0`` in the environment, every file takes the Python decoder, which
gives the same lake, slower: ``decoder()`` says which is in use, and why, in the ingest summary
and in ``tenantwatch --version``.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from types import ModuleType

import numpy as np
import pyarrow as pa

_S = pa.string()


def _load() -> tuple[ModuleType | None, str]:
    """The extension, or None and why it could not be imported."""
    try:
        return importlib.import_module("pipeline.ingest._ctscan"), ""
    except ImportError as exc:  # not built (no C compiler at install), or built for another Python
        return None, str(exc)


_ctscan, _missing = _load()


def available() -> bool:
    """Is the extension built?"""
    return _ctscan is not None


def enabled() -> bool:
    """Built and not switched off by ``TENANTWATCH_NATIVE=0``."""
    return _ctscan is not None and os.environ.get("TENANTWATCH_NATIVE", "1") != "0"


def decoder() -> str:
    """Which decoder ingestion uses for CloudTrail delivery files, and why when it is not the
    compiled one: a silent fallback would only show as a slower ingest."""
    if _ctscan is None:
        return f"python (extension not built: {_missing})"
    if not enabled():
        return "python (TENANTWATCH_NATIVE=0)"
    return "compiled"


def builder() -> object | None:
    """A fresh ``_ctscan.Builder`` when the C decoder is on, else None."""
    return _ctscan.Builder() if _ctscan is not None and enabled() else None


def string_array(n: int, validity: bytes, offsets: bytes, data: bytes, null_count: int) -> pa.Array:
    """An Arrow string array over the builder's buffers (no copy)."""
    buffers = [pa.py_buffer(validity) if null_count else None, pa.py_buffer(offsets)]
    return pa.Array.from_buffers(_S, n, [*buffers, pa.py_buffer(data)], null_count=null_count)


def take_strings(column: pa.ChunkedArray, rows: np.ndarray) -> pa.Array:
    """``column.take(rows)`` for a string column without nulls (the raw text): picked from its
    chunks in one copy, where Arrow joins the chunks first (a second copy of all of them).
    Arrow's own take without the extension."""
    if _ctscan is None or not enabled() or column.null_count:
        return column.take(pa.array(rows, pa.int64())).combine_chunks()
    chunks = column.chunks
    bounds = np.cumsum([0, *(len(c) for c in chunks)])
    rows = np.asarray(rows, np.int64)
    which = (np.searchsorted(bounds, rows, side="right") - 1).astype(np.int32)
    index = rows - bounds[which]
    specs = [(c.buffers()[1], c.buffers()[2] or b"", c.offset, len(c)) for c in chunks]
    offsets, data = _ctscan.gather(specs, which.tobytes(), index.tobytes())
    return pa.Array.from_buffers(
        _S, len(rows), [None, pa.py_buffer(offsets), pa.py_buffer(data)], null_count=0
    )


def join_hash(columns: list[pa.Array]) -> bytes | None:
    """XXH64 hex (``xxhash.xxh64(v).hexdigest()``) of each row's values joined by 0x1F (a null
    as 0x00), end to end: the hashes of ``pc.binary_join_element_wise(*columns, "\\x1f",
    null_handling="replace", null_replacement="\\x00")``, without building that column. String
    arrays of equal length; None without the extension."""
    if _ctscan is None or not enabled():
        return None
    n = len(columns[0]) if columns else 0
    specs = []
    for c in columns:
        validity, offsets, data = c.buffers()
        specs.append((validity if c.null_count else None, offsets, data or b"", c.offset))
    return bytes(_ctscan.join_hash(specs, n))


def credential_spans(
    raws: list[bytes], credential_keys: tuple[bytes, ...]
) -> list[tuple[int, ...] | None] | None:
    """``redact.credential_spans`` compiled (``_credentials.c``), or None when the C decoder
    is off."""
    if _ctscan is None or not enabled():
        return None
    spans: list[tuple[int, ...] | None]
    spans = _ctscan.credential_spans(raws, credential_keys)
    return spans


def might_hold_secret(raw: bytes, reference: Callable[[bytes], bool]) -> bool:
    """``prefilter.might_hold_secret`` compiled (``_secrets.c``); ``reference`` (the Python one)
    when the C decoder is off."""
    if _ctscan is None or not enabled():
        return reference(raw)
    found: bool = _ctscan.might_hold_secret(raw)
    return found
