"""Every place logs carry a key and its value, and what ingestion makes of them.

``carry`` writes named cases (a key and a value each) into every place, one input file per
place holding one record per case, decodes each file by both decoders (``decode_batch`` with the
C decoder on and off, as ingestion calls it), and gives back, per decoder, place and case, the
value as the lake holds it (read out of the record's raw text) and all the text written for the
record (raw text and every column). Lines that are not JSON reach the quarantine: there the text
is the quarantined bytes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.config import parse_config
from pipeline.ingest.decode import Decoded, decode_batch
from pipeline.ingest.reading import Reading
from pipeline.ingest.run import _quarantine_table, make_batches
from pipeline.ingest.sources import list_inputs
from tests import logfactory as lf

CFG = parse_config({}, environ={})
READING = Reading.of(CFG)
DECODERS = ("compiled", "python")
MISSING = object()  # the value is not where it was put (the record has no such member)


def _ct(rid: str, **extra: Any) -> dict[str, Any]:
    return lf.ct(event_id=rid, **extra)


def _assume_role(rid: str, key: str, value: Any) -> dict[str, Any]:
    rec = lf.assume_role()
    rec["eventID"] = rid
    rec["requestParameters"][key] = value
    return rec


def _access_log(rid: str, key: str, value: Any) -> dict[str, Any]:
    return {**lf.access_log(request_id=rid), key: value}


def _authorizer(rid: str, key: str, value: Any) -> dict[str, Any]:
    rec = lf.authorizer_log()
    rec["function_request_id"] = rid
    rec[key] = value
    return rec


def _quarantined(rid: str, key: str, value: Any) -> str:
    """A record cut short, so it is no JSON: its pairs are found by pattern."""
    return '{"eventID": "' + rid + '", "x": {' + json.dumps(key) + ": " + json.dumps(value) + "}"


def _member(*path: str) -> Callable[[Any], Any]:
    def get(rec: Any) -> Any:
        for step in path:
            if not isinstance(rec, dict) or step not in rec:
                return MISSING
            rec = rec[step]
        return rec

    return get


def _in_json_string(key_path: str) -> Callable[[str], Callable[[Any], Any]]:
    def at(key: str) -> Callable[[Any], Any]:
        def get(rec: Any) -> Any:
            inner = orjson.loads(rec[key_path])
            return inner.get(key, MISSING)

        return get

    return at


# place -> (record maker, key -> value getter, file kind)
PLACES: dict[str, tuple[Callable[[str, str, Any], Any], Callable[[str], Any], str]] = {
    "CloudTrail headers map": (
        lambda rid, k, v: _ct(rid, requestParameters={"bucketName": "b", "headers": {k: v}}),
        lambda k: _member("requestParameters", "headers", k),
        "trail",
    ),
    "CloudTrail requestParameters": (
        lambda rid, k, v: _ct(rid, requestParameters={"bucketName": "b", k: v}),
        lambda k: _member("requestParameters", k),
        "trail",
    ),
    "CloudTrail responseElements": (
        lambda rid, k, v: _ct(rid, responseElements={k: v}),
        lambda k: _member("responseElements", k),
        "trail",
    ),
    "CloudTrail additionalEventData": (
        lambda rid, k, v: _ct(rid, additionalEventData={"SignatureVersion": "SigV4", k: v}),
        lambda k: _member("additionalEventData", k),
        "trail",
    ),
    "AssumeRole beside its credentials": (
        _assume_role,
        lambda k: _member("requestParameters", k),
        "trail",
    ),
    "a request spelled as a JSON string": (
        lambda rid, k, v: _ct(rid, requestParameters=json.dumps({"bucketName": "b", k: v})),
        _in_json_string("requestParameters"),
        "trail",
    ),
    "access-log field": (_access_log, lambda k: _member(k), "lines"),
    "authorizer-log field": (_authorizer, lambda k: _member(k), "lines"),
    "authorizer context": (
        lambda rid, k, v: {**_authorizer(rid, "decision", "Deny"), "context": {k: v}},
        lambda k: _member("context", k),
        "lines",
    ),
    "quarantined line": (_quarantined, lambda k: _member("x", k), "quarantine"),
}


@dataclass
class Carried:
    """One case in one place by one decoder: the value the lake holds (MISSING when it could not
    be read back, as from a quarantined line) and every text written for the record."""

    value: Any
    text: str


def _decode(folder: Path, decoder: str, monkeypatch: pytest.MonkeyPatch) -> list[Decoded]:
    monkeypatch.setenv("TENANTWATCH_NATIVE", "1" if decoder == "compiled" else "0")
    refs, _ = list_inputs([str(folder)])
    return [decode_batch(b, CFG.ingest, READING) for b in make_batches(refs, 1 << 30)]


def _texts(decoded: list[Decoded]) -> Iterator[tuple[str, str, Any]]:
    """(record id, all its text, its raw record decoded) for every row; quarantined lines give
    their raw bytes and detail, and no record."""
    for d in decoded:
        rows = d.rows.to_pylist()
        for row in rows:
            raw = row["raw"]
            raw = raw.decode() if isinstance(raw, bytes) else raw
            text = json.dumps(row, default=str)
            yield str(row["event_id"]), text, orjson.loads(raw)
        for q in _quarantine_table(d.quarantine).to_pylist():  # as the lake keeps it
            raw = q["raw"].decode("utf-8", "replace")
            found = raw.split('"eventID": "', 1)[-1].split('"', 1)[0]
            yield found, raw + "\n" + q["detail"], None


def carry(
    folder: Path, cases: dict[str, tuple[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> dict[tuple[str, str, str], Carried]:
    """Every case in every place, by both decoders: (decoder, place, case) -> what the lake
    holds."""
    ids = {name: f"case-{i:04d}" for i, name in enumerate(cases)}
    for p, (make, _, kind) in enumerate(PLACES.values()):
        made = [make(ids[name], key, value) for name, (key, value) in cases.items()]
        if kind == "trail":
            lf.delivery_file(folder / f"p{p}" / "trail.json.gz", made)
        elif kind == "lines":
            lf.lines_file(folder / f"p{p}" / "lines.log", made)
        else:
            (folder / f"p{p}").mkdir(parents=True, exist_ok=True)
            # A first line read whole, so that each line after it is one entry of its own.
            lines = ['{"first": "a line of JSON"}', *made]
            (folder / f"p{p}" / "bad.log").write_text("\n".join(lines) + "\n")
    out: dict[tuple[str, str, str], Carried] = {}
    for decoder in DECODERS:
        for p, (place, (_, getter, _kind)) in enumerate(PLACES.items()):
            decoded = _decode(folder / f"p{p}", decoder, monkeypatch)
            found = {rid: (text, rec) for rid, text, rec in _texts(decoded)}
            for name, (key, _) in cases.items():
                text, rec = found.get(ids[name], ("", None))
                value = MISSING if rec is None else getter(key)(rec)
                out[decoder, place, name] = Carried(value, text)
    return out
