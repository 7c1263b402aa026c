"""Bounded gzip decompression with ISA-L.

python-isal decompresses gzip 2-3x faster than zlib. Decompression is bounded: a member that
inflates past the limit (a gzip bomb) raises instead of filling memory, and a truncated stream
raises instead of returning the part that happened to decode.
"""

from __future__ import annotations

from isal import isal_zlib

GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20
DEFAULT_LIMIT = 2 << 30


class GzipError(ValueError):
    """The bytes are not a complete gzip stream within the size limit."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def is_gzip(data: bytes) -> bool:
    return data[:2] == GZIP_MAGIC


def decompress_bounded(data: bytes, limit: int = DEFAULT_LIMIT) -> bytes:
    """All members of a gzip stream, at most ``limit`` bytes of output."""
    out: list[bytes] = []
    total = 0
    rest = data
    while rest:
        # wbits 16 + MAX_WBITS: a gzip header and trailer are required.
        d = isal_zlib.decompressobj(16 + isal_zlib.MAX_WBITS)
        buf = rest
        try:
            while buf:
                chunk = d.decompress(buf, min(_CHUNK, limit - total + 1))
                total += len(chunk)
                if total > limit:
                    raise GzipError(
                        "decompressed_too_large",
                        f"inflates past {limit:,} bytes (compressed size {len(data):,})",
                    )
                out.append(chunk)
                buf = d.unconsumed_tail
                if d.eof:
                    break
            if not d.eof:
                # Output still buffered inside the decompressor (at most a window's worth).
                tail = d.flush()
                total += len(tail)
                out.append(tail)
            if not d.eof or total > limit:
                raise GzipError("truncated_gzip", "the gzip stream ends before its trailer")
        except isal_zlib.error as exc:  # type: ignore[misc]  # isal's stub types error loosely
            raise GzipError("corrupt_gzip", f"not a valid gzip stream ({exc})") from None
        rest = d.unused_data.lstrip(b"\x00")  # members may be padded with zeros
        if rest and not is_gzip(rest):
            raise GzipError("corrupt_gzip", "trailing bytes after the gzip stream")
    return b"".join(out)


def maybe_decompress(data: bytes, limit: int = DEFAULT_LIMIT) -> bytes:
    return decompress_bounded(data, limit) if is_gzip(data) else data
