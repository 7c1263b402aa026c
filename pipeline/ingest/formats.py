"""Recognise what a file holds by its content, and split it into records.

One input may be: a CloudTrail S3 delivery file (``{"Records": [...]}``, gzipped or not), a JSON
array of records, bare records one per line, EventBridge "AWS API Call via CloudTrail" envelopes, a
CloudWatch Logs subscription payload (``{"awslogs": {"data": base64(gzip)}}``) or its decoded form,
a LookupEvents export (``CloudTrailEvent`` as a JSON string), a CloudTrail-Digest
file, CloudWatch Logs export lines (``<ISO time> <message>``), API Gateway access-log lines, or
Lambda authorizer (Powertools Logger) lines. Names lie; content does not.

``split`` yields ``Item``s: a record with its kind, decoded object and raw bytes, a digest, or a
quarantine entry with its reason. Nothing is skipped without an item saying so.

``typed_cloudtrail`` is the fast path for the bulk of the data, clean CloudTrail delivery files:
the whole file decodes in one msgspec call into typed records (``cloudtrail.Record``) plus each
record's raw bytes. Any file it declines takes ``split``, with the same outcome record by record.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import msgspec
import orjson

from pipeline.ingest import cloudtrail, gz, jsonnum, normalize

CLOUDTRAIL = "cloudtrail"
APIGATEWAY = "apigateway"
AUTHORIZER = "authorizer"
DIGEST = "digest"
QUARANTINE = "quarantine"

# orjson refuses JSON nested deeper than 1024 levels ("depth limit exceeded") and msgspec raises
# RecursionError: either is reported as "too_deep", never a crash nor "invalid_json", wherever the
# nesting is (a whole document, one line, a record inside an envelope or a CloudWatch payload).
# Writing is stricter than reading: orjson writes 254 levels at most, so a record taken out of an
# envelope (which needs bytes of its own) is too deep past that.
_TOO_DEEP = "JSON nested too deeply"
_TOO_DEEP_TO_WRITE = "JSON nested too deeply to be written out of its envelope (254 levels)"


@dataclass(frozen=True, slots=True)
class Item:
    kind: str  # CLOUDTRAIL, APIGATEWAY, AUTHORIZER, DIGEST or QUARANTINE
    position: int  # record index or line number within the input; -1 for the whole input
    obj: Any  # the decoded record (dict) or, for QUARANTINE, None
    raw: bytes  # the record's own bytes
    reason: str = ""  # QUARANTINE only: a short stable code
    detail: str = ""  # QUARANTINE only: for people
    # A CloudTrail record read from Security Lake: its OCSF row as JSON ({"ocsf": row}, secrets
    # redacted), where ``field`` strategies' ``ocsf.`` paths read (``securitylake``).
    ocsf: bytes | None = None


class _RecordsFile(msgspec.Struct):
    Records: list[msgspec.Raw]


_records_decoder = msgspec.json.Decoder(_RecordsFile)
_raw_list_decoder = msgspec.json.Decoder(list[msgspec.Raw])
_LAMBDA_PLATFORM = (b"START RequestId:", b"END RequestId:", b"REPORT RequestId:", b"INIT_START ")
_CWL_EXPORT_LINE = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z ")


# Which per-line source a decoded line is (APIGATEWAY, AUTHORIZER or None), by the field names
# its source's mapping gives (``Reading.line_kind``): a SaaS names its log fields as it likes.
LineKind = Callable[[dict[str, Any]], str | None]


def default_line_kind(obj: dict[str, Any]) -> str | None:
    """``line_kind`` for the default field names (Powertools authorizer logs, API Gateway's
    ``$context`` names)."""
    if "decision" in obj and ("service" in obj or "principal_id" in obj):
        return AUTHORIZER
    if "requestId" in obj and ("httpMethod" in obj or "routeKey" in obj or "status" in obj):
        return APIGATEWAY
    return None


def classify(obj: Any, line_kind: LineKind = default_line_kind) -> str | None:
    """The kind of one decoded record, or None when it is none we know. CloudTrail and its
    digests are told by AWS's own field names; the per-line sources by ``line_kind``."""
    if not isinstance(obj, dict):
        return None
    if "eventName" in obj or "eventSource" in obj or ("eventID" in obj and "userIdentity" in obj):
        return CLOUDTRAIL
    if "eventVersion" in obj and ("eventTime" in obj or "@timestamp" in obj):
        return CLOUDTRAIL
    kind = line_kind(obj)
    if kind is not None:
        return kind
    if "digestStartTime" in obj and isinstance(obj.get("logFiles"), list):
        return DIGEST
    return None


def _unwrap(obj: Any, raw: bytes, position: int, kind_of: LineKind) -> Iterator[Item]:
    """Envelopes around records: EventBridge, LookupEvents, GCP LogEntry."""
    if isinstance(obj, dict):
        detail = obj.get("detail")
        if isinstance(detail, dict) and "detail-type" in obj and classify(detail) == CLOUDTRAIL:
            yield _taken(detail, raw, position)
            return
        event = obj.get("CloudTrailEvent")
        if isinstance(event, str):
            try:
                inner = jsonnum.loads(event)
            except orjson.JSONDecodeError as exc:
                yield Item(QUARANTINE, position, None, raw, _json_error(exc), str(exc))
                return
            yield from _unwrap(inner, event.encode(), position, kind_of)
            return
        payload = obj.get("jsonPayload")
        if isinstance(payload, dict) and classify(payload) == CLOUDTRAIL:
            yield _taken(payload, raw, position)
            return
    kind = classify(obj, kind_of)
    if kind is None:
        yield Item(QUARANTINE, position, None, raw, "unrecognised_record", _shape(obj))
    else:
        yield Item(kind, position, obj, raw)


def _taken(record: dict[str, Any], envelope: bytes, position: int) -> Item:
    """A CloudTrail record out of its envelope, with bytes of its own."""
    text = _dumps(record)
    if text is None:
        return Item(QUARANTINE, position, None, envelope, "too_deep", _TOO_DEEP_TO_WRITE)
    return Item(CLOUDTRAIL, position, record, text)


def _dumps(obj: Any) -> bytes | None:
    """``obj`` as JSON, or None when it is nested too deeply for orjson to write."""
    try:
        return orjson.dumps(obj)
    except orjson.JSONEncodeError:
        return None


def _shape(obj: Any) -> str:
    if isinstance(obj, dict):
        keys = ", ".join(sorted(str(k) for k in obj)[:8])
        return f"an object with keys {keys}" if keys else "an empty object"
    return f"a JSON {type(obj).__name__}"


def _json_error(exc: orjson.JSONDecodeError) -> str:
    """The reason for JSON orjson refused: nesting past its limit is not a syntax error."""
    return "too_deep" if str(exc).startswith("depth limit exceeded") else "invalid_json"


def _one(raw: bytes, position: int, limit: int, kind_of: LineKind) -> Iterator[Item]:
    """One JSON value that should be one record (or an envelope of records). Whatever raises
    while it is taken apart costs this value one entry (``normalize.failure``), not its input.
    (Each record of an envelope is a value of its own, so one that raises costs only itself.)"""
    items = _value(raw, position, limit, kind_of)
    while True:
        try:
            item = next(items)
        except StopIteration:
            return
        except Exception as exc:
            yield Item(QUARANTINE, position, None, raw, *normalize.failure(exc))
            return
        yield item


def _value(raw: bytes, position: int, limit: int, kind_of: LineKind) -> Iterator[Item]:
    try:
        obj = jsonnum.loads(raw)
    except orjson.JSONDecodeError as exc:
        yield Item(QUARANTINE, position, None, raw, _json_error(exc), str(exc))
        return
    if isinstance(obj, dict) and ("awslogs" in obj or "logEvents" in obj):
        yield from _cloudwatch(obj, raw, position, limit, kind_of)
        return
    if isinstance(obj, dict) and isinstance(obj.get("Events"), list):
        # LookupEvents export: {"Events": [{"CloudTrailEvent": "..."}]}
        for i, ev in enumerate(obj["Events"]):
            text = _dumps(ev)
            if text is None:
                yield Item(QUARANTINE, i, None, raw, "too_deep", _TOO_DEEP_TO_WRITE)
            else:
                yield from _unwrap(ev, text, i, kind_of)
        return
    yield from _unwrap(obj, raw, position, kind_of)


def _cloudwatch(
    obj: dict[str, Any], raw: bytes, position: int, limit: int, kind_of: LineKind
) -> Iterator[Item]:
    """A CloudWatch Logs subscription payload, encoded (``awslogs.data``) or decoded. The encoded
    payload inflates within ``limit`` (``ingest.max_decompressed_bytes``) like a whole input: a
    bomb can hide in one line as well as in a file."""
    if "awslogs" in obj:
        data = obj.get("awslogs", {}).get("data") if isinstance(obj["awslogs"], dict) else None
        if not isinstance(data, str):
            yield Item(QUARANTINE, position, None, raw, "unrecognised_record", "awslogs.data")
            return
        try:
            obj = jsonnum.loads(gz.decompress_bounded(base64.b64decode(data, validate=True), limit))
        except orjson.JSONDecodeError as exc:
            reason = "too_deep" if _json_error(exc) == "too_deep" else "bad_cloudwatch_payload"
            yield Item(QUARANTINE, position, None, raw, reason, str(exc))
            return
        except ValueError as exc:  # not base64 (binascii.Error), not ASCII, not gzip
            yield Item(QUARANTINE, position, None, raw, "bad_cloudwatch_payload", str(exc))
            return
        if not isinstance(obj, dict):
            detail = f"awslogs.data holds {_shape(obj)}, not a payload"
            yield Item(QUARANTINE, position, None, raw, "bad_cloudwatch_payload", detail)
            return
    if obj.get("messageType") == "CONTROL_MESSAGE":
        yield Item(QUARANTINE, position, None, raw, "not_an_event", "CloudWatch Logs control")
        return
    events = obj.get("logEvents") or []
    if not isinstance(events, list):
        detail = f"logEvents is {_shape(events)}, not a list"
        yield Item(QUARANTINE, position, None, raw, "bad_cloudwatch_payload", detail)
        return
    for i, ev in enumerate(events):
        msg = ev.get("message") if isinstance(ev, dict) else None
        if not isinstance(msg, str):
            text = _dumps(ev)
            if text is None:
                yield Item(QUARANTINE, i, None, raw, "too_deep", _TOO_DEEP_TO_WRITE)
            else:
                yield Item(QUARANTINE, i, None, text, "unrecognised_record", "no message")
            continue
        yield from _line(msg.encode(), i, limit, kind_of)


def _line(line: bytes, position: int, limit: int, kind_of: LineKind) -> Iterator[Item]:
    """One line of a line-oriented file."""
    body = line.strip()
    if _CWL_EXPORT_LINE.match(body):
        body = body.split(b" ", 1)[1].lstrip()
    if body.startswith((b"{", b"[")):
        yield from _one(body, position, limit, kind_of)  # JSON, or meant to be
    elif body.startswith(_LAMBDA_PLATFORM):
        # The Lambda runtime's own lines between a function's log lines: known, not events.
        text = body[:60].decode("utf-8", "replace")
        yield Item(QUARANTINE, position, None, line, "lambda_platform_line", text)
    else:
        text = body[:80].decode("utf-8", "replace")
        yield Item(QUARANTINE, position, None, line, "not_json", f"line starts {text!r}")


def delivery_body(data: bytes) -> bytes | None:
    """The text of what looks like a CloudTrail delivery file (``{"Records": ...}`` after a byte
    order mark and white space), or None: the one test of it, for both decoders."""
    body = data.lstrip(b"\xef\xbb\xbf \t\r\n")
    return body if body.startswith(b"{") and b'"Records"' in body[:4096] else None


def typed_cloudtrail(data: bytes) -> tuple[list[cloudtrail.Record], list[msgspec.Raw]] | None:
    """A clean CloudTrail delivery file's records and raw bytes, or None to go through ``split``.

    Clean: valid UTF-8, every record fits ``cloudtrail.Record`` (which refuses envelope and
    CloudWatch keys) and names an event, so ``split`` would classify each as CLOUDTRAIL as is.
    """
    body = delivery_body(data)
    if body is None:
        return None
    try:
        body.decode("utf-8")
        records = cloudtrail.delivery_decoder.decode(body).Records
        raws = _records_decoder.decode(body).Records
    except (UnicodeDecodeError, msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None
    if any(r.eventName is None and r.eventSource is None for r in records):
        return None
    return records, raws


def split(data: bytes, limit: int, kind_of: LineKind = default_line_kind) -> Iterator[Item]:
    """All items of one input's (already decompressed) bytes; ``limit`` bounds what a CloudWatch
    Logs payload inside it may inflate to, ``kind_of`` tells the per-line sources apart."""
    body = data.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not body:
        yield Item(QUARANTINE, -1, None, data, "empty_input", "no bytes after decompression")
        return
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        # Line by line, so one bad line quarantines only itself.
        if b"\n" not in body.rstrip():
            yield Item(QUARANTINE, -1, None, data, "invalid_utf8", str(exc))
            return
    if delivery_body(body) is not None:
        records: list[msgspec.Raw] | list[bytes] | None
        try:
            records = _records_decoder.decode(body).Records
        except RecursionError:
            # One record nested too deeply must not take the file's other records with it (one
            # could hide a whole file's events that way): its records, found by counting.
            opening = _RECORDS_OPEN.match(body)
            records = None if opening is None else _elements(body, opening.end() - 1, b"}")
            if records is None:
                yield Item(QUARANTINE, -1, None, data, "too_deep", _TOO_DEEP)
                return
        except (msgspec.DecodeError, msgspec.ValidationError):
            records = None  # not a clean delivery file: fall through to the general paths
        if records is not None:
            for i, rec in enumerate(records):
                raw = bytes(rec)
                yield from _one(raw, i, limit, kind_of)
            return
    if body.startswith(b"["):
        items: list[msgspec.Raw] | list[bytes] | None
        try:
            items = _raw_list_decoder.decode(body)
        except RecursionError:
            items = _elements(body, 0, b"")
            if items is None:
                yield Item(QUARANTINE, -1, None, data, "too_deep", _TOO_DEEP)
                return
        except (msgspec.DecodeError, msgspec.ValidationError):
            items = None
        if items is not None:
            for i, rec in enumerate(items):
                yield from _one(bytes(rec), i, limit, kind_of)
            return
    if body.startswith(b"{") and b"\n" not in body.rstrip():
        yield from _one(body.rstrip(), 0, limit, kind_of)
        return
    if body.startswith((b"{", b"[")):
        # Pretty-printed JSON (one document, or several one after another as jq prints them)
        # or lines (arrays that parse were read above). A whole-document parse, then where the
        # first value ends, tell which; split into lines, a document would be a row a line.
        try:
            jsonnum.loads(body)
        except orjson.JSONDecodeError as exc:
            if _json_error(exc) == "too_deep" and exc.lineno > 1:
                # Still inside the first value past its first line: one document across lines,
                # too deep.
                yield Item(QUARANTINE, -1, None, data, "too_deep", str(exc))
                return
            values = None if _lines_of_json(body) else _documents(body)
            if values is not None and len(values) == 1:
                # One document that does not parse and cannot be split: one entry.
                yield Item(QUARANTINE, -1, None, data, _json_error(exc), str(exc))
                return
            if values is not None:
                for i, value in enumerate(values):
                    yield from _one(value, i, limit, kind_of)
                return
        else:
            yield from _one(body, 0, limit, kind_of)
            return
    for n, line in enumerate(_lines(data), start=1):
        if line.strip():
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield Item(QUARANTINE, n, None, line, "invalid_utf8", str(exc))
                continue
            yield from _line(line, n, limit, kind_of)


# A delivery file as CloudTrail writes it, up to the "[" of its records.
_RECORDS_OPEN = re.compile(rb'\{\s*"Records"\s*:\s*\[')
# What the element scan steps on: a whole string (escapes and all; one cut short runs to the
# end of the text), a bracket or a comma.
_JSON_TOKEN = re.compile(rb'"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)|[\[\]{},]')


def _scan_array(body: bytes, at: int) -> tuple[list[bytes], int, bool]:
    """The JSON array opening at ``body[at]`` (a "["), by counting brackets, with no recursion
    however deep an element is: the text of each element ended by a comma or by the array's
    end, where the text after them starts, and whether the array ended."""
    depth, start, out = 0, at + 1, list[bytes]()
    for m in _JSON_TOKEN.finditer(body, at):
        c = body[m.start()]
        if c in b"[{":
            depth += 1
        elif c in b"]}":
            depth -= 1
            if depth == 0:
                last = body[start : m.start()].strip()
                if last or out:
                    out.append(last)
                return out, m.end(), True
        elif c == 0x2C and depth == 1:  # a comma between elements
            out.append(body[start : m.start()].strip())
            start = m.end()
    return out, start, False


def _elements(body: bytes, at: int, closing: bytes) -> list[bytes] | None:
    """The text of each element of the JSON array opening at ``body[at]``, after which only
    ``closing`` and white space may follow; None when the array or the document does not end so
    (broken JSON: the caller's whole-file entry stands). Each element is still JSON to parse."""
    out, end, ended = _scan_array(body, at)
    return out if ended and body[end:].strip() == closing else None


def _lines_of_json(body: bytes) -> bool:
    """Is ``body`` (which starts with "{" or "[") lines of JSON, rather than JSON spread over
    lines? Lines if its first value ends on its first line, or if another line is a whole
    object: a pretty-printer puts no object but "{}" on one line. (A file whose first line was
    cut short is still lines.)"""
    first = body[: body.find(b"\n")].strip()
    _, end, ended = _scan_values(first, 1)
    if ended and not first[end:].strip():
        return True
    for line in _lines(body[len(first) :]):
        line = line.strip()
        if line.startswith(b"{") and len(line) > 2 and _parses(line):
            return True
    return False


def _documents(body: bytes) -> list[bytes]:
    """The JSON values of ``body`` one after another, by counting brackets (each still JSON to
    parse); what follows the last that ends (one that never ends) is one more."""
    values, end, _ = _scan_values(body)
    rest = body[end:].strip()
    return [*values, rest] if rest else values


def _scan_values(body: bytes, most: int = -1) -> tuple[list[bytes], int, bool]:
    """Up to ``most`` (-1: every) top-level values of ``body`` one after another, by counting
    brackets: their texts, where the text after them starts, and whether the last one ended."""
    depth, start, out = 0, 0, list[bytes]()
    for m in _JSON_TOKEN.finditer(body):
        c = body[m.start()]
        if c in b"[{":
            depth += 1
        elif c in b"]}" and depth == 0:
            continue  # closes nothing: part of the broken text of the next value
        elif c in b"]}":
            depth -= 1
            if depth == 0:
                out.append(body[start : m.end()].strip())
                start = m.end()
                if len(out) == most:
                    return out, start, True
    return out, start, depth == 0


def split_cut(
    data: bytes, limit: int, kind_of: LineKind = default_line_kind
) -> tuple[Iterator[Item], bytes, int, int] | None:
    """What a stream cut short (a truncated or corrupt gzip) decompressed to, as the items of
    its complete records, the text after them, how many records (or lines) came before that
    text, and its position as ``split`` numbers them (an array index, a line number); None when
    its records cannot be told apart before its end (a document other than a delivery file or
    an array, or not one complete line)."""
    body = data.lstrip(b"\xef\xbb\xbf \t\r\n")
    opening = _RECORDS_OPEN.match(body) or re.match(rb"\[", body)
    if opening is not None:
        # Every element a comma ended is whole; the rest starts with the one the cut is in.
        records, end, _ended = _scan_array(body, opening.end() - 1)
        items = (item for i, raw in enumerate(records) for item in _one(raw, i, limit, kind_of))
        return items, body[end:], len(records), len(records)
    cut = data.rfind(b"\n")
    first = data[: data.find(b"\n")].strip()
    if cut < 0 or (first.startswith((b"{", b"[")) and not _parses(first)):
        return None  # one line cut short, or a document spread over lines
    complete = data[: cut + 1]
    # Items one at a time, as split gives them (a cut file can be a flood of short lines).
    lines = sum(1 for _ in _lines(complete)) if b"\r" in complete else complete.count(b"\n")
    return split(complete, limit, kind_of), data[cut + 1 :], lines, lines + 1


def _parses(text: bytes) -> bool:
    try:
        jsonnum.loads(text)
    except orjson.JSONDecodeError:
        return False
    return True


def _lines(data: bytes) -> Iterator[bytes]:
    """``data.splitlines()``, one line at a time: a few kilobytes of gzip can inflate to millions
    of short lines, and a list of them all would take far more memory than their text."""
    start, end = 0, len(data)
    while start < end:
        stop = data.find(b"\n", start)
        stop = end if stop < 0 else stop
        piece = data[start:stop]
        if b"\r" in piece:  # "\r\n" ends a line as "\n" does, and a lone "\r" ends one too
            yield from piece.splitlines()
        else:
            yield piece
        start = stop + 1
