"""Bounded gzip decompression with ISA-L.

python-isal decompresses gzip 2-3x faster than zlib. Decompression is bounded: a member that
inflates past the limit (a gzip bomb) raises instead of filling memory, and a truncated stream
raises instead of returning the part that happened to decode (the error carries that part, for
the quarantine).

Memory follows the output, not twice the output: it grows in one ``io.BytesIO`` (by an eighth,
large blocks resized in place) that ``getvalue`` hands over without a copy, and at most ``_CHUNK``
at a time, so it never passes the limit by more than a chunk. Chunks gathered in a list and joined
at the end would hold the whole output twice.
"""

from __future__ import annotations

import io

from isal import isal_zlib

GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20


class GzipError(ValueError):
    """The bytes are not a complete gzip stream within the size limit. ``partial`` is what
    decompressed before the stream ended, broke or reached the limit (about the limit at most)."""

    def __init__(self, reason: str, detail: str, partial: bytes = b"") -> None:
        super().__init__(detail)
        self.reason = reason
        self.partial = partial


def is_gzip(data: bytes) -> bool:
    return data[:2] == GZIP_MAGIC


def decompress_bounded(data: bytes, limit: int) -> bytes:
    """All members of a gzip stream, at most ``limit`` bytes of output (the callers' limit is
    ``ingest.max_decompressed_bytes``, which the error names)."""
    out = io.BytesIO()
    rest = data
    while rest:
        # wbits 16 + MAX_WBITS: a gzip header and trailer are required.
        d = isal_zlib.decompressobj(16 + isal_zlib.MAX_WBITS)
        buf = rest
        try:
            while buf and not d.eof:
                _write(out, d.decompress(buf, min(_CHUNK, limit - out.tell() + 1)), limit, data)
                buf = d.unconsumed_tail
            if not d.eof:
                # Output still buffered inside the decompressor (at most a window's worth).
                _write(out, d.flush(), limit, data)
        except isal_zlib.error as exc:  # type: ignore[misc]  # isal's stub types error loosely
            raise GzipError(
                "corrupt_gzip", f"not a valid gzip stream ({exc})", out.getvalue()
            ) from None
        if not d.eof:
            raise GzipError(
                "truncated_gzip",
                f"the gzip stream ends before its trailer, after {out.tell():,} bytes of output",
                out.getvalue(),
            )
        rest = d.unused_data.lstrip(b"\x00")  # members may be padded with zeros
        if rest and not is_gzip(rest):
            raise GzipError("corrupt_gzip", "trailing bytes after the gzip stream", out.getvalue())
    return out.getvalue()


def _write(out: io.BytesIO, chunk: bytes, limit: int, data: bytes) -> None:
    """Append a chunk of output; past the limit, stop there (where a bomb ends)."""
    out.write(chunk)
    if out.tell() > limit:
        raise GzipError(
            "decompressed_too_large",
            f"inflates past {limit:,} bytes (compressed size {len(data):,}); "
            "raise ingest.max_decompressed_bytes to read it",
            out.getvalue(),
        )


def maybe_decompress(data: bytes, limit: int) -> bytes:
    return decompress_bounded(data, limit) if is_gzip(data) else data
