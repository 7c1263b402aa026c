"""Bad input, case by case: each case is a hostile or broken input written beside good records,
with the quarantine reasons (and record counts) it must give.

Every case is ingested alone on both decoders, and all of them once more in one run with
two workers. Each time: ``records_in = ingested + duplicates + quarantined``, the quarantine
counted with ``sum(records)``; the quarantine holds exactly the case's reasons; the good records,
and only they, are in the lake; and the secret some cases plant in a bad record reaches neither
the lake nor the quarantine.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from pipeline.ingest.quarantine import KEPT_PER_INPUT
from pipeline.ingest.run import ingest
from pipeline.lake import read_events, read_quarantine
from tests import logfactory as lf
from tests.pooled import pooled_config

CFG = pooled_config(ingest={"max_record_bytes": 8192, "max_decompressed_bytes": 1 << 20})
SECRET = "LEAKEDSECRETVALUExxxxxx0"
DEEP = 300  # past what orjson writes (254 levels), short of what it reads (1,024)
TOO_DEEP = 3000  # past what any parser here reads


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Path], list[str]]  # writes its files into a folder; the ids to ingest
    quarantined: dict[str, int]  # reason -> records
    rows: int | None = None  # quarantine rows, where they are not one a record


CASES: list[Case] = []


def case(quarantined: dict[str, int], rows: int | None = None) -> Callable[..., Any]:
    def register(build: Callable[[Path], list[str]]) -> Callable[[Path], list[str]]:
        CASES.append(Case(build.__name__, build, quarantined, rows))
        return build

    return register


# --- small writers ----------------------------------------------------------------------------


def _write(path: Path, data: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)


def _ids(records: list[dict[str, Any]]) -> list[str]:
    keys = ("eventID", "requestId", "function_request_id")
    return [next(r[k] for k in keys if k in r) for r in records]


def _beside(d: Path, bad: dict[str, Any] | str, kind: str = "ct") -> list[str]:
    """``bad`` between two good records of its kind: a delivery file for CloudTrail, lines for
    the others (``bad`` as a record, or as the text of its line)."""
    make = {"ct": lf.ct, "api": lf.access_log, "authz": lf.authorizer_log}[kind]
    good = [make(), make()]
    if kind == "ct":
        text = json.dumps(bad) if isinstance(bad, dict) else bad
        body = f'{{"Records": [{json.dumps(good[0])}, {text}, {json.dumps(good[1])}]}}'
        _write(d / "delivery.json.gz", gzip.compress(body.encode()))
    else:
        line = json.dumps(bad) if isinstance(bad, dict) else bad
        _write(d / f"{kind}.log", f"{json.dumps(good[0])}\n{line}\n{json.dumps(good[1])}\n")
    return _ids(good)


def _good_file(d: Path) -> list[str]:
    """A good delivery file of its own, beside a bad input that is one entry as a whole."""
    good = [lf.ct(), lf.ct("PutObject")]
    lf.delivery_file(d / "good.json.gz", good)
    return _ids(good)


def _alone(d: Path, name: str, data: str | bytes) -> list[str]:
    _write(d / name, data)
    return _good_file(d)


def _with_deep(kind: str, field: str, depth: int = DEEP) -> Callable[[Path], list[str]]:
    make = {"ct": lf.ct, "api": lf.access_log, "authz": lf.authorizer_log}[kind]
    bad = make()
    bad[field] = lf.nested(depth)
    return lambda d: _beside(d, bad, kind)


# --- a value nested past what can be written as text, in a field read as text -----------------

for _kind, _field in [
    ("ct", "eventName"),
    ("ct", "eventSource"),
    ("ct", "userAgent"),
    ("ct", "eventTime"),
    ("ct", "sourceIPAddress"),
    ("ct", "errorCode"),
    ("api", "path"),
    ("api", "userAgent"),
    ("api", "authorizerTenantId"),
    ("authz", "tenant_claim"),
    ("authz", "user_agent"),
]:
    CASES.append(Case(f"deep_{_kind}_{_field}", _with_deep(_kind, _field), {"too_deep": 1}))


@case({"too_deep": 1})
def deep_resource_arn(d: Path) -> list[str]:
    # Typed decoding takes any value here: the text is made later, per chunk of records.
    return _beside(d, lf.ct(resources=[{"ARN": lf.nested(DEEP), "type": "AWS::S3::Object"}]))


@case({"too_deep": 1})
def deep_session_tag(d: Path) -> list[str]:
    assume = lf.assume_role()
    assume["requestParameters"]["tags"] = [{"key": "tenant_id", "value": lf.nested(DEEP)}]
    return _beside(d, assume)


@case({"too_deep": 1})
def deep_datadog_user_agent(d: Path) -> list[str]:
    return _beside(d, lf.ct(http={"useragent": lf.nested(DEEP)}))


# --- event times ----------------------------------------------------------------------------


@case({"bad_event_time": 1})
def year_zero_beside_a_time_that_needs_the_slow_parser(d: Path) -> list[str]:
    # The fraction takes the per-value parser, which then meets year 0 as well.
    records = [lf.ct(time="0000-01-01T00:00:00Z"), lf.ct(time="2026-11-16T10:00:00.250Z")]
    lf.delivery_file(d / "times.json.gz", records)
    return [*_ids(records[1:]), *_good_file(d)]


@case({"bad_event_time": 1})
def last_second_of_year_9999_west_of_utc(d: Path) -> list[str]:
    return _beside(d, lf.ct(time="9999-12-31T23:59:59-01:00"))


@case({"bad_event_time": 1})
def access_log_time_past_year_9999_in_utc(d: Path) -> list[str]:
    return _beside(d, lf.access_log(when="31/Dec/9999:23:59:59 -0100"), "api")


@case({"bad_event_time": 1})
def epoch_in_superscript_digits(d: Path) -> list[str]:
    return _beside(d, lf.ct(time="¹⁷⁶³²⁸⁷²⁰⁰"))


@case({"bad_event_time": 2})
def times_no_format_takes_or_out_of_bounds(d: Path) -> list[str]:
    ids = _beside(d, lf.ct(time="yesterday"))
    return ids + _beside(d / "b", lf.ct(time="1999-12-31T23:59:59Z"))


# --- documents, lines and what is not JSON ---------------------------------------------------


@case({"invalid_json": 1})
def pretty_printed_document_with_a_trailing_comma(d: Path) -> list[str]:
    text = json.dumps({"Records": [lf.ct(), lf.ct(), lf.ct()]}, indent=2)
    return _alone(d, "pretty.json", text[: text.rindex("]")].rstrip() + ",\n  ]\n}\n")


@case({"invalid_json": 1})
def pretty_printed_array_with_a_trailing_comma(d: Path) -> list[str]:
    text = json.dumps([lf.ct(), lf.ct(), lf.ct()], indent=2)
    return _alone(d, "pretty.json", text[:-1].rstrip() + ",\n]\n")


@case({"invalid_json": 1})
def documents_one_after_another_one_broken(d: Path) -> list[str]:
    # As jq prints records: each pretty-printed, one after the other.
    records = [lf.ct(), lf.ct("PutObject"), lf.ct("HeadObject")]
    texts = [json.dumps(r, indent=2) for r in records]
    texts[1] = texts[1][:-1].rstrip() + ",\n}"
    _write(d / "jq.json", "\n".join(texts) + "\n")
    return _ids([records[0], records[2]])


@case({"invalid_json": 2})
def lines_opening_like_json_that_are_not(d: Path) -> list[str]:
    return [*_beside(d, "{not json at all", "api"), *_beside(d / "b", "[not json either", "api")]


@case({"not_json": 1})
def a_line_of_text(d: Path) -> list[str]:
    return _beside(d, "Traceback (most recent call last):", "api")


@case({"lambda_platform_line": 1})
def a_lambda_runtime_line(d: Path) -> list[str]:
    return _beside(d, "START RequestId: 1 Version: $LATEST", "authz")


@case({"unrecognised_record": 1})
def a_json_array_on_a_line(d: Path) -> list[str]:
    return _beside(d, "[1, 2]", "api")


@case({"not_json": KEPT_PER_INPUT + 5}, rows=KEPT_PER_INPUT + 1)
def a_flood_of_bad_lines(d: Path) -> list[str]:
    return _alone(d, "flood.log.gz", gzip.compress(b"x\n" * (KEPT_PER_INPUT + 5)))


@case({"not_json": 1, "invalid_json": 2})
def secrets_in_lines_that_are_not_json(d: Path) -> list[str]:
    lines = [
        f'curl -H "Authorization: Bearer {SECRET}"',
        '{"eventID":"q2","responseElements":{"credentials":{"sessionToken":"' + SECRET,
        '{"eventID":"q3","x":{"\\u0073essionToken":"' + SECRET + '"}, bad',
    ]
    return _alone(d, "secrets.log", "\n".join(lines) + "\n")


@case({"too_deep": 1})
def a_record_too_deep_to_read_holding_a_secret(d: Path) -> list[str]:
    bad = json.dumps(lf.ct(requestParameters={"sessionToken": SECRET}))
    return _beside(d, bad[:-1] + f', "x": {_nesting(TOO_DEEP)}}}')


# --- compression and size ---------------------------------------------------------------------


@case({"truncated_gzip": 1})
def truncated_gzip_delivery_file(d: Path) -> list[str]:
    records = [lf.ct(key=f"tenants/t0001/{i}") for i in range(8)]
    text = json.dumps({"Records": records}).encode()
    cut = text.index(json.dumps(records[5]).encode())
    _write(d / "cut.json.gz", lf.gzip_cut(text, cut))
    return _ids(records[:5])


@case({"truncated_gzip": 1})
def truncated_gzip_lines(d: Path) -> list[str]:
    logs = [lf.access_log() for _ in range(6)]
    text = b"".join(json.dumps(x).encode() + b"\n" for x in logs)
    cut = text.index(json.dumps(logs[4]).encode())
    _write(d / "cut.log.gz", lf.gzip_cut(text, cut))
    return _ids(logs[:4])


@case({"corrupt_gzip": 1})
def bytes_after_the_gzip_stream(d: Path) -> list[str]:
    records = [lf.ct(), lf.ct()]
    data = gzip.compress(json.dumps({"Records": records}).encode()) + b"garbage"
    _write(d / "trailing.json.gz", data)
    return _ids(records)  # whole before the break; the rest ("]}") is the entry


@case({"decompressed_too_large": 1})
def gzip_bomb(d: Path) -> list[str]:
    return _alone(d, "bomb.json.gz", gzip.compress(bytes(2 << 20)))


@case({"input_too_large": 1})
def input_past_the_decompressed_limit(d: Path) -> list[str]:
    return _alone(d, "big.log", b" " * ((1 << 20) + 1))


@case({"record_too_large": 2})
def records_too_large(d: Path) -> list[str]:
    big_line = {**lf.access_log(), "padding": "y" * 10_000}
    return [*_beside(d, lf.ct(userAgent="x" * 10_000)), *_beside(d / "b", big_line, "api")]


@case({"empty_input": 1})
def empty_file(d: Path) -> list[str]:
    return _alone(d, "empty.json", b"")


@case({"invalid_utf8": 1})
def latin1_document(d: Path) -> list[str]:
    return _alone(d, "latin1.json", b'{"Records": [{"eventName": "Get\xe9"}]}')


@case({"invalid_utf8": 1})
def latin1_line_among_good_lines(d: Path) -> list[str]:
    good = [lf.access_log(), lf.access_log()]
    first, last = (json.dumps(g).encode() for g in good)
    _write(d / "api.log", first + b'\n{"requestId": "caf\xe9"}\n' + last + b"\n")
    return _ids(good)


# --- nested too deeply to read, wherever it is ------------------------------------------------


def _nesting(depth: int) -> str:
    """The text of ``lf.nested(depth)``, for depths past what ``json.dumps`` writes."""
    return '{"a": ' * depth + "1" + "}" * depth


def _too_deep_record() -> str:
    return json.dumps(lf.ct())[:-1] + f', "x": {_nesting(TOO_DEEP)}}}'


def _too_deep_alone(name: str, text: Callable[[], str]) -> Callable[[Path], list[str]]:
    return lambda d: _alone(d, name, text())


_EVENTBRIDGE = '{"version": "0", "detail-type": "AWS API Call via CloudTrail", "detail": '
_CWL = '{"messageType": "DATA_MESSAGE", "logEvents": [], "x": %s}'
for _name, _text in {
    "deep_document": lambda: "[" * 5000 + "]" * 5000,
    "deep_array_element": lambda: f"[{_too_deep_record()}]",
    "deep_pretty_document": lambda: _too_deep_record().replace('{"a": ', '{\n"a": '),
    "deep_eventbridge_detail": lambda: _EVENTBRIDGE + _too_deep_record() + "}\n",
    "deep_lookup_events_record": lambda: json.dumps(
        {"Events": [{"CloudTrailEvent": _too_deep_record()}]}
    ),
    "deep_cloudwatch_message": lambda: json.dumps({"logEvents": [{"message": _too_deep_record()}]}),
    "deep_cloudwatch_payload": lambda: json.dumps(_payload((_CWL % _nesting(TOO_DEEP)).encode())),
}.items():
    # Each is one record (or one whole input) nested past what any parser here reads.
    CASES.append(Case(_name, _too_deep_alone(f"{_name}.json", _text), {"too_deep": 1}))


@case({"too_deep": 1})
def deep_line_among_good_lines(d: Path) -> list[str]:
    return _beside(d, _too_deep_record(), "api")


@case({"too_deep": 1})
def eventbridge_detail_too_deep_to_write_out(d: Path) -> list[str]:
    inner = json.dumps(lf.ct(requestParameters={"x": lf.nested(DEEP)}))
    return _alone(d, "eb.jsonl", _EVENTBRIDGE + inner + "}\n")


# --- CloudWatch Logs payloads and digests -----------------------------------------------------


def _payload(data: bytes) -> dict[str, Any]:
    return {"awslogs": {"data": base64.b64encode(gzip.compress(data)).decode()}}


@case({"bad_cloudwatch_payload": 1})
def cloudwatch_bomb(d: Path) -> list[str]:
    return _beside(d, _payload(bytes(2 << 20)), "authz")


@case({"bad_cloudwatch_payload": 1})
def cloudwatch_data_not_base64_ascii(d: Path) -> list[str]:
    return _beside(d, {"awslogs": {"data": "é"}}, "authz")


@case({"bad_cloudwatch_payload": 1})
def cloudwatch_payload_a_list(d: Path) -> list[str]:
    return _beside(d, _payload(b"[1, 2]"), "authz")


@case({"bad_cloudwatch_payload": 1})
def cloudwatch_log_events_not_a_list(d: Path) -> list[str]:
    return _beside(d, {"messageType": "DATA_MESSAGE", "logEvents": 5}, "authz")


@case({"not_an_event": 1})
def cloudwatch_control_message(d: Path) -> list[str]:
    return _beside(d, {"messageType": "CONTROL_MESSAGE", "logEvents": []}, "authz")


@case({"unrecognised_record": 2})
def cloudwatch_without_data_or_message(d: Path) -> list[str]:
    ids = _beside(d, {"awslogs": {"nodata": 1}}, "authz")
    return ids + _beside(d / "b", {"logEvents": [{"id": "1"}]}, "authz")


@case({"unrecognised_record": 1})
def digest_whose_files_are_not_a_list(d: Path) -> list[str]:
    digest = {"digestStartTime": "2026-11-16T09:00:00Z", "logFiles": 5}
    return _alone(d, "digest.json", json.dumps(digest))


# --- records that are not what they claim -----------------------------------------------------


@case({"missing_event_time": 3})
def records_without_a_time(d: Path) -> list[str]:
    no_time = {k: v for k, v in lf.ct().items() if k != "eventTime"}
    api, authz = lf.access_log(), lf.authorizer_log()
    del api["requestTime"], authz["timestamp"]
    return [*_beside(d, no_time), *_beside(d / "b", api, "api"), *_beside(d / "c", authz, "authz")]


@case({"missing_event_name": 1})
def record_without_a_name(d: Path) -> list[str]:
    rec = {k: v for k, v in lf.ct().items() if k not in ("eventName", "eventSource")}
    return _beside(d, rec)


@case({"missing_request_id": 1})
def access_log_without_a_request_id(d: Path) -> list[str]:
    return _beside(d, lf.access_log(request_id="-"), "api")


@case({"unrecognised_record": 4})
def records_of_no_known_kind(d: Path) -> list[str]:
    ids = _beside(d, "1", "ct")  # a number among a delivery file's records
    ids += _beside(d / "b", {"no": "idea"}, "api")
    _write(d / "lake_query.json", json.dumps({"QueryResultRows": [[{"eventID": "x"}]]}))
    _write(d / "records_null.json", '{"Records": null}')
    return ids


@case({"invalid_json": 1})
def lookup_events_record_not_json(d: Path) -> list[str]:
    good = lf.ct()
    export = {"Events": [{"CloudTrailEvent": json.dumps(good)}, {"CloudTrailEvent": "{bad"}]}
    _write(d / "lookup.json", json.dumps(export))
    return _ids([good])


_RAW = json.dumps(lf.ct())[1:-1]
for _name, _text in {
    "bad_number": "{" + _RAW + ', "n": 01}',
    "bad_literal": "{" + _RAW + ', "n": nul}',
    "control_character": "{" + _RAW + ', "n": "a\tb"}',
    "bad_escape": "{" + _RAW + ', "n": "a\\qb"}',
    "lone_surrogate": "{" + _RAW + ', "userAgent": "x\\ud83dy"}',
}.items():
    # A delivery file in one line that does not parse: the file is one entry.
    CASES.append(
        Case(
            f"delivery_file_{_name}",
            lambda d, t=_text: _alone(d, "broken.json", '{"Records": [' + t + "]}"),
            {"invalid_json": 1},
        )
    )


# --- the runs ---------------------------------------------------------------------------------


def check(lake: Path, summary: dict[str, Any], case: Case, ids: list[str]) -> None:
    entries = read_quarantine(str(lake)).to_pylist()
    counted: Counter[str] = Counter()
    for e in entries:
        counted[e["reason"]] += e["records"]
    assert dict(counted) == case.quarantined, [(e["reason"], e["detail"]) for e in entries]
    assert summary["quarantined"] == case.quarantined
    quarantined = sum(e["records"] for e in entries)
    assert summary["records_in"] == summary["ingested"] + summary["duplicates"] + quarantined
    assert len(entries) == (case.rows if case.rows is not None else quarantined)
    ingested = read_events(str(lake), columns=["event_id"]).column("event_id").to_pylist()
    assert sorted(ingested) == sorted(ids)
    for path in lake.rglob("*.parquet"):
        assert SECRET not in json.dumps(pq.read_table(path).to_pylist(), default=str), path


@pytest.mark.parametrize("decoder", ["native", "python"])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_bad_input_costs_its_own_records_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: Case, decoder: str
) -> None:
    monkeypatch.setenv("TENANTWATCH_NATIVE", "1" if decoder == "native" else "0")
    ids = case.build(tmp_path / "in")
    summary = ingest([str(tmp_path / "in")], str(tmp_path / "lake"), CFG, workers=1)
    check(tmp_path / "lake", summary, case, ids)


@pytest.mark.slow
def test_all_bad_inputs_in_one_run_with_workers(tmp_path: Path) -> None:
    """Side by side in a few batches, each bad record still costs only itself."""
    ids = [i for c in CASES for i in c.build(tmp_path / "in" / c.name)]
    total: Counter[str] = Counter()
    for c in CASES:
        total.update(c.quarantined)
    rows = sum(c.rows if c.rows is not None else sum(c.quarantined.values()) for c in CASES)
    summary = ingest([str(tmp_path / "in")], str(tmp_path / "lake"), CFG, workers=2)
    check(tmp_path / "lake", summary, Case("all", lambda _: [], dict(total), rows), ids)


# Reasons whose inputs are made elsewhere: a fault no rule foresaw
# (tests/test_unforeseen_faults.py), an S3 object that
# cannot be read (tests/test_ingest_aws.py), Security Lake's Parquet
# (tests/test_ingest_securitylake.py).
TESTED_ELSEWHERE = {
    "unprocessable_record",
    "unreadable_input",
    "corrupt_parquet",
    "parquet_not_ocsf",
    "ocsf_unmapped_class",
    "ocsf_missing_field",
}


def test_the_readme_lists_exactly_the_reasons_tested() -> None:
    from tests.conftest import REPO

    readme = (REPO / "README.md").read_text()
    table = readme.split("Quarantine reasons", 1)[1].split("\n\n", 2)[1]
    first_cells = [row.split("|")[1] for row in table.splitlines() if row.startswith("| `")]
    documented = set(re.findall(r"`([a-z0-9_]+)`", " ".join(first_cells)))
    tested = {r for c in CASES for r in c.quarantined} | TESTED_ELSEWHERE
    assert documented == tested
