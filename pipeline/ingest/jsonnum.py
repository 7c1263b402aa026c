"""JSON numbers too large for a double, read and written back as they were spelled.

JSON puts no bound on a number, and RFC 8259 leaves its range to each parser. orjson refuses one
that overflows a double ("number is infinity when parsed as double": ``1e400``, a 400-digit
integer with a fraction) and msgspec refuses it in a field it decodes ("Number out of range").
A record is data, and ``requestParameters`` echo what a caller sent: one such number must not cost
the record (a caller could otherwise keep its own calls out of the lake, and so out of every
detector, and the C decoder, which checks a number's spelling and never its value, would keep
them anyway). So every reader in ingestion takes it, as an ``orjson.Fragment`` of its own text:
orjson writes a fragment back verbatim (a redacted record keeps the number as it came) and
``normalize.as_text`` gives its text as written.

Which decoder owns which rule is written down in one place: docs/DECODERS.md.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import msgspec
import orjson

_INT_MIN, _INT_MAX = -(1 << 63), (1 << 64) - 1  # orjson's integers (int64 and uint64)


def number(text: str) -> float | orjson.Fragment:
    """A JSON number with a fraction or an exponent (msgspec's ``float_hook``): its double, or
    its text as a fragment when a double overflows."""
    value = float(text)
    return value if math.isfinite(value) else orjson.Fragment(text)


_decoder = msgspec.json.Decoder(float_hook=number)
_DEPTH = 1024  # orjson's: a container nested deeper is "depth limit exceeded"


class _TooDeep(Exception):
    pass


def loads(data: bytes | str) -> Any:
    """``orjson.loads``, which also takes numbers past a double (as fragments; see above): the
    same values, the same nesting limit, and any other fault raised as the same
    ``orjson.JSONDecodeError``."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if not str(exc).startswith("number is infinity"):
            raise
        error = exc
    # msgspec checks what orjson checks (UTF-8, escapes, surrogates, the grammar) and hands the text
    # of each number with a fraction or an exponent to ``number``. Rare (a record holding such a
    # number), so a second parse costs nothing worth measuring. Python's recursion limit bounds
    # msgspec's nesting and the recursion below: room for orjson's 1,024 levels, for this call
    # (ingestion decodes in one thread per process).
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(limit + _DEPTH + 100)
    try:
        return _as_orjson(_decoder.decode(data), 0)
    except msgspec.DecodeError as exc:
        raise orjson.JSONDecodeError(str(exc), error.doc, error.pos) from None
    except (_TooDeep, RecursionError):
        raise orjson.JSONDecodeError("depth limit exceeded", error.doc, error.pos) from None
    finally:
        sys.setrecursionlimit(limit)


def _as_orjson(value: Any, depth: int) -> Any:
    """msgspec's result as orjson gives it: nested at most ``_DEPTH`` levels, and an integer past
    int64/uint64 as a double (or a fragment when it overflows that too), where msgspec keeps a
    Python int of any size."""
    if isinstance(value, dict | list):
        if depth == _DEPTH:
            raise _TooDeep
        if isinstance(value, dict):
            return {k: _as_orjson(v, depth + 1) for k, v in value.items()}
        return [_as_orjson(v, depth + 1) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and not _INT_MIN <= value <= _INT_MAX:
        try:
            return float(value)
        except OverflowError:
            return orjson.Fragment(str(value))
    return value
