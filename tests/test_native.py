"""The C decoder (``_ctscan.c``) against the Python decoder, which is the reference.

Every corpus is decoded twice, with ``TENANTWATCH_NATIVE`` on and off, and the two ``Decoded``
results must be equal: rows (raw text, hashes and hints included), quarantine, sessions,
counts. The hand-made variants aim at what a JSON scanner gets wrong: escapes, surrogates,
duplicate keys, odd types, nesting, numbers, truncation, and what the extension must hand back to
Python rather than guess.
"""

from __future__ import annotations

import gzip
import json
import random
import sys
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import IngestConfig, parse_config
from pipeline.ingest import native
from pipeline.ingest.decode import Decoded, decode_batch
from pipeline.ingest.reading import Reading
from pipeline.ingest.run import make_batches
from pipeline.ingest.sources import list_inputs
from tests import logfactory as lf
from tests.pooled import pooled_file

REPO = Path(__file__).resolve().parent.parent
CFG = parse_config({}, environ={})
READING = Reading.of(CFG)


def test_the_extension_is_built() -> None:
    # make installs the package, which compiles it; without it ingestion is 2x slower.
    assert native.available(), "pipeline/ingest/_ctscan.c is not built: run `make` (pip install)"


def _without_extension(monkeypatch: pytest.MonkeyPatch) -> str:
    """The state of a checkout whose extension was not built: its import fails as it would."""
    monkeypatch.setitem(sys.modules, "pipeline.ingest._ctscan", None)
    module, why = native._load()
    assert module is None and "pipeline.ingest._ctscan" in why
    monkeypatch.setattr(native, "_ctscan", None)
    monkeypatch.setattr(native, "_missing", why)
    return why


@pytest.mark.parametrize("state", ["compiled", "switched off", "not built"])
def test_the_summary_and_version_say_which_decoder_ingested(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, state: str
) -> None:
    from click.testing import CliRunner

    from pipeline.cli import cli

    want = "compiled"
    if state == "switched off":
        monkeypatch.setenv("TENANTWATCH_NATIVE", "0")
        want = "python (TENANTWATCH_NATIVE=0)"
    elif state == "not built":
        want = f"python (extension not built: {_without_extension(monkeypatch)})"
    lf.delivery_file(tmp_path / "in" / "1.json.gz", [lf.ct(), lf.ct()])
    config = pooled_file(tmp_path / "cfg")
    args = ["--config", config, "ingest", str(tmp_path / "in"), "--workers", "1"]
    runs = [
        CliRunner().invoke(cli, [*args, "--lake", str(tmp_path / f"lake{i}"), *extra])
        for i, extra in enumerate([["--json"], []])
    ]
    assert all(r.exit_code == 0 for r in runs), runs[0].output + runs[1].output
    summary = json.loads(runs[0].output)
    assert summary["decoder"] == want and summary["ingested"] == 2
    assert f"decoder {want}" in " ".join(runs[1].output.replace("│", " ").split())
    version = CliRunner().invoke(cli, ["--version"])
    assert version.exit_code == 0
    assert version.output.splitlines()[1:] == [f"decoder: {want}"]


def decode_both(
    monkeypatch: pytest.MonkeyPatch,
    sources: list[str],
    ingest: IngestConfig = CFG.ingest,
    reading: Reading = READING,
) -> tuple[list[Decoded], list[Decoded]]:
    refs, _ = list_inputs(sources)
    batches = make_batches(refs, ingest.batch_input_bytes)
    out = []
    for flag in ("1", "0"):
        monkeypatch.setenv("TENANTWATCH_NATIVE", flag)
        out.append([decode_batch(b, ingest, reading) for b in batches])
    return out[0], out[1]


def assert_same(fast: list[Decoded], slow: list[Decoded]) -> None:
    assert len(fast) == len(slow)
    for a, b in zip(fast, slow, strict=True):
        assert a.records_in == b.records_in
        assert a.quarantine == b.quarantine
        assert a.sessions == b.sessions
        assert a.digests == b.digests
        assert a.rows.schema == b.rows.schema
        for name in a.rows.column_names:
            assert a.rows[name].to_pylist() == b.rows[name].to_pylist(), name


def accepted(path: Path) -> bool | None:
    """Did the builder take this file (None: not a delivery file at all)?"""
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    if b'"Records"' not in data[:4096]:
        return None
    builder = native._ctscan.Builder() if native._ctscan else None
    assert builder is not None
    return builder.add(data.lstrip(b"\xef\xbb\xbf \t\r\n")) is not None


def test_sample_logs_decode_the_same_and_are_taken_by_the_c_decoder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trail = REPO / "sample_logs" / "AWSLogs"
    fast, slow = decode_both(monkeypatch, [str(trail)])
    assert_same(fast, slow)
    assert sum(d.rows.num_rows for d in fast) > 10_000
    delivery = [p for p in trail.rglob("*.json.gz") if "CloudTrail-Digest" not in str(p)]
    taken = [accepted(p) for p in delivery]
    assert taken and all(taken), "the simulator's delivery files must all take the C decoder"


def test_the_real_world_corpus_decodes_the_same(
    monkeypatch: pytest.MonkeyPatch, real_logs: Path
) -> None:
    fast, slow = decode_both(monkeypatch, [str(real_logs)])
    assert_same(fast, slow)
    assert sum(d.records_in for d in fast) >= 1000


def _write(folder: Path, name: str, text: str | bytes) -> None:
    data = text.encode() if isinstance(text, str) else text
    (folder / name).write_bytes(gzip.compress(data, mtime=0))


def _records(**over: Any) -> list[dict[str, Any]]:
    base = lf.ct()
    base.update(over)
    return [base]


def _file(recs: list[dict[str, Any]] | str, **json_args: Any) -> str:
    if isinstance(recs, str):
        return '{"Records": [' + recs + "]}"
    return json.dumps({"Records": recs}, **json_args)


# (name, file text, does the C decoder take it?)
RAW = json.dumps(lf.ct())[1:-1]  # one record's members, to splice odd text into
NO_PARAMS = json.dumps({k: v for k, v in lf.ct().items() if k != "requestParameters"})[1:-1]
DUPLICATE_MEMBER = ', "requestParameters": {"tableName": "t", "key": {"a": "1", "a": "2"}}}'
NUMBERS = ', "n": [0, -1, 2.5e-3, 1E+9, -0.0, 12345678901234567890]}'
NO_AGENT = json.dumps({k: v for k, v in lf.ct().items() if k != "userAgent"})[1:-1]
BIG = ["1e400", "-1E+400", "1.7976931348623159e308", "1" + "0" * 400 + ".5"]  # past a double


def _spelt(recs: list[dict[str, Any]], number: str) -> str:
    """A delivery file of ``recs`` with each "#" value written as ``number``."""
    return _file(recs).replace('"#"', number)


def _assume_role(**response: Any) -> dict[str, Any]:
    rec = lf.assume_role(tenant="t0007", new_key_id="ASIANEWKEY000000001")
    rec["requestParameters"]["tags"].append({"key": "n", "value": "#"})
    rec["responseElements"]["credentials"].update(response)
    return rec


VARIANTS: list[tuple[str, str, bool]] = [
    ("plain", _file(_records()), True),
    ("pretty-printed", _file(_records(), indent=2), True),
    ("ascii escapes", _file(_records(userAgent='a "quoted" \\ agent\n\t/x')), True),
    (
        "unicode escapes",
        _file(_records(userAgent="caf\u00e9 \u2603 \U0001f600", eventName="Get\u00d8")),
        True,
    ),
    ("raw utf-8", _file(_records(userAgent="café ☃ 😀"), ensure_ascii=False), True),
    ("surrogate pair", _file("{" + NO_AGENT + ', "userAgent": "x\\ud83d\\ude00y"}'), True),
    ("lone high surrogate", _file("{" + NO_AGENT + ', "userAgent": "x\\ud83dy"}'), False),
    ("lone low surrogate", _file("{" + NO_AGENT + ', "userAgent": "x\\ude00y"}'), False),
    ("escaped key", _file("{" + NO_AGENT + ', "user\\u0041gent": "x"}'), False),
    ("duplicate key", _file("{" + RAW + ', "eventName": "PutObject"}'), False),
    ("duplicate unread key", _file("{" + RAW + ', "eventVersion": "9"}'), True),
    ("null identity", _file(_records(userIdentity=None)), False),
    ("no identity", _file([{k: v for k, v in lf.ct().items() if k != "userIdentity"}]), True),
    ("null session context", _file(_records(userIdentity={"sessionContext": None})), False),
    ("number where text", _file(_records(eventName=7)), False),
    *[
        (
            f"identity arn {arn!r}",
            _file(_records(userIdentity={"type": "AssumedRole", "arn": arn})),
            True,
        )
        for arn in [
            "arn:aws:sts::1:assumed-role/role/session",
            "arn:aws-cn:sts::1:assumed-role/r/s/with/slashes",
            "arn:aws:sts:::assumed-role/r/s",
            "arn:aws:sts::1:assumed-role//s",
            "arn:aws:sts::1:assumed-role/r/",
            "arn:aws:sts::1:assumed-role/r/line\nfeed",
            "arn:aws:sts::1:assumed-role/r/sessión",
            "arn:a.b:sts::1:assumed-role/r/s",
            "arn:aws:sts::1:2:assumed-role/r/s",
            "arn:aws:iam::1:role/r",
            "-",
            "",
        ]
    ],
    ("null text", _file(_records(errorCode=None, awsRegion=None)), True),
    ("blank text", _file(_records(errorCode="", awsRegion="-", sourceIPAddress="")), True),
    ("params null", _file(_records(requestParameters=None)), True),
    ("params as text", _file(_records(requestParameters='{"bucketName": "b"}')), False),
    ("s3 blank key", _file(_records(requestParameters={"bucketName": "b", "key": "-"})), True),
    ("s3 prefix", _file(_records(requestParameters={"bucketName": "-", "prefix": "p/"})), True),
    (
        "dynamodb",
        _file(
            _records(
                eventSource="dynamodb.amazonaws.com",
                requestParameters={
                    "tableName": "t",
                    "key": {"sk": {"N": "1"}, "pk": {"S": "TENANT#t1"}, "x": "y"},
                },
            )
        ),
        True,
    ),
    (
        "dynamodb key text first",
        _file(_records(requestParameters={"tableName": "t", "key": {"a": 1, "b": "v"}})),
        True,
    ),
    (
        "dynamodb empty key then values",
        _file(
            _records(
                requestParameters={
                    "tableName": "t",
                    "key": {"pk": {"S": ""}},
                    "expressionAttributeValues": {":t": {"S": "TENANT#t9"}},
                }
            )
        ),
        True,
    ),
    (
        "dynamodb duplicate member",
        _file("{" + NO_PARAMS + DUPLICATE_MEMBER),
        False,
    ),
    (
        "dynamodb S not text",
        _file(_records(requestParameters={"tableName": "t", "key": {"pk": {"S": 5}, "q": "z"}})),
        True,
    ),
    ("dynamodb key list", _file(_records(requestParameters={"tableName": "-", "key": [1]})), True),
    ("resources null", _file(_records(resources=None)), True),
    ("resources empty", _file(_records(resources=[])), True),
    (
        "resources ARN then arn",
        _file(
            _records(
                requestParameters=None,
                resources=[
                    {"ARN": "", "arn": "arn:aws:iam::1:role/r"},
                    {"ARN": "-", "arn": "arn:aws:iam::1:role/q"},
                    {"ARN": "arn:aws:kms:us-east-1:1:key/k", "arn": "ignored"},
                    {"type": "AWS::S3::Object"},
                ],
            )
        ),
        True,
    ),
    (
        "s3 from ARN",
        _file(
            _records(
                requestParameters={"key": "from-params"},
                resources=[
                    {"ARN": "arn:aws:s3:::bkt"},
                    {"ARN": "arn:aws:s3:::other/key"},
                ],
            )
        ),
        True,
    ),
    (
        "s3 ARN with empty key",
        _file(_records(requestParameters=None, resources=[{"ARN": "arn:aws:s3:::bkt/"}])),
        True,
    ),
    (
        "s3 ARN not matching",
        _file(
            _records(
                requestParameters=None,
                resources=[{"ARN": "arn::s3:::bkt/k"}, {"ARN": "arn:aws:s3:::b2/k 2"}],
            )
        ),
        True,
    ),
    (
        "s3 ARN non-ascii",
        _file(_records(requestParameters=None, resources=[{"ARN": "arn:aws:s3:::bkt/ключ"}])),
        False,
    ),
    ("resource ARN a number", _file(_records(resources=[{"ARN": 5}])), False),
    ("resource not an object", _file(_records(resources=["arn:aws:s3:::b"])), False),
    ("console login failed", _file(_records(responseElements={"ConsoleLogin": "Failure"})), True),
    ("console login other", _file(_records(responseElements={"ConsoleLogin": 1})), True),
    ("no event time", _file([{k: v for k, v in lf.ct().items() if k != "eventTime"}]), True),
    (
        "@timestamp instead",
        _file(
            [
                {
                    **{k: v for k, v in lf.ct().items() if k != "eventTime"},
                    "@timestamp": "2026-11-16T10:00:00Z",
                }
            ]
        ),
        True,
    ),
    ("no event id", _file([{k: v for k, v in lf.ct().items() if k != "eventID"}]), True),
    (
        "no name at all",
        _file([{k: v for k, v in lf.ct().items() if k not in ("eventName", "eventSource")}]),
        False,
    ),
    ("vendor network field", _file(_records(network={"client": {"ip": "1.2.3.4"}})), False),
    ("envelope key", _file(_records(detail={"a": 1})), False),
    ("numbers", _file("{" + RAW + NUMBERS), True),
    # A number a double cannot hold is data like any other (pipeline/ingest/jsonnum.py).
    *[
        (f"number {n[:12]} as {name}", _spelt(_records(**where), n), True)
        for n in BIG
        for name, where in (
            ("a DynamoDB key", {"requestParameters": {"tableName": "t", "key": "#"}}),
            (
                "an attribute value",
                {
                    "requestParameters": {
                        "tableName": "t",
                        "expressionAttributeValues": {"a": ["#"]},
                    }
                },
            ),
            ("ConsoleLogin", {"responseElements": {"ConsoleLogin": "#"}}),
            ("an unread member", {"n": {"x": ["#"]}}),
        )
    ],
    *[(f"number {n[:12]} in AssumeRole", _spelt([_assume_role(x=["#"])], n), True) for n in BIG],
    ("number past a double where text belongs", _spelt(_records(awsRegion="#"), "1e400"), False),
    (
        "a number past a double in an ARN",
        _spelt(_records(resources=[{"ARN": "#"}]), "1e400"),
        False,
    ),
    *[(f"not JSON: {w}", _spelt(_records(n="#"), w), False) for w in ("NaN", "-Infinity", "+1")],
    ("bad number", _file("{" + RAW + ', "n": 01}'), False),
    ("bad literal", _file("{" + RAW + ', "n": nul}'), False),
    ("control character", _file("{" + RAW + ', "n": "a\tb"}'), False),
    ("bad escape", _file("{" + RAW + ', "n": "a\\qb"}'), False),
    ("deep", _file("{" + RAW + ', "n": ' + "[" * 200 + "]" * 200 + "}"), False),
    ("fairly deep", _file("{" + RAW + ', "n": ' + "[" * 60 + "]" * 60 + "}"), True),
    ("trailing garbage", _file(_records()) + " x", False),
    ("truncated", _file(_records())[:-3], False),
    ("records null", '{"Records": null}', False),
    ("records empty", '{"Records": []}', True),
    ("other keys first", '{"a": {"b": [1, "x"]}, "Records": ' + json.dumps(_records()) + "}", True),
    ("records twice", '{"Records": [], "Records": []}', False),
    ("a record not an object", '{"Records": [1]}', False),
    (
        "secrets",
        _file(
            [
                lf.assume_role(tenant="t0007", new_key_id="ASIANEWKEY000000001"),
                lf.ct(userAgent="curl Bearer abcdefghijklmnop"),
                lf.ct(requestParameters={"password": "hunter2", "token": {"a": 1}}),
            ]
        ),
        True,
    ),
    *[
        (f"secret in a URL: {name}", _file([rec]), True)
        for name, rec in [
            (
                "presigned URL",
                lf.ct(responseElements={"location": "https://b/k?X-Amz-Signature=ab"}),
            ),
            ("fragment", lf.ct(additionalEventData={"to": "/cb#access_token=LEAKxx&state=1"})),
            ("user agent", lf.ct(userAgent="bot (+https://x/?apikey=LEAKxx)")),
            ("error message", lf.ct(errorCode="E", errorMessage="GET /a?b=1;sig=LEAKxx failed")),
            ("random value", lf.ct(requestParameters={"u": "/x?c=Zk3mQ9vL2xR8pT4wN7yB1cD6"})),
            ("no secret", lf.ct(requestParameters={"u": "/x?page=2&sort=name"})),
            ("AssumeRole beside a URL", {**lf.assume_role(), "note": "/x?code=LEAKxx"}),
        ]
    ],
]


@pytest.mark.parametrize(("name", "text", "fast"), VARIANTS, ids=[v[0] for v in VARIANTS])
def test_a_variant_decodes_the_same_by_both_decoders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, text: str, fast: bool
) -> None:
    _write(tmp_path, "f.json.gz", text)
    assert accepted(tmp_path / "f.json.gz") is fast
    assert_same(*decode_both(monkeypatch, [str(tmp_path)]))


def test_secrets_in_urls_leave_both_decoders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The C decoder's pre-filter sends a record with a URL parameter to the redactor: no
    secret is left in the raw text nor in a column, by either decoder."""
    for i, (name, text, _) in enumerate(VARIANTS):
        if name.startswith("secret in a URL"):
            _write(tmp_path, f"{i:03d}.json.gz", text)
    fast, slow = decode_both(monkeypatch, [str(tmp_path)])
    assert_same(fast, slow)
    for decoded in (*fast, *slow):
        text = json.dumps(decoded.rows.to_pylist(), default=str)
        assert "LEAKxx" not in text and "Zk3mQ9vL2xR8pT4wN7yB1cD6" not in text
        assert "page=2&sort=name" in text and "X-Amz-Signature=redacted:sha256:" in text


def test_all_variants_in_one_batch_keep_input_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Roads alternate file by file; the same event in two files keeps its first copy's place.
    for i, (_, text, _) in enumerate(VARIANTS * 2):
        _write(tmp_path, f"{i:03d}.json.gz", text)
    fast, slow = decode_both(monkeypatch, [str(tmp_path)])
    assert len(fast) == 1
    assert_same(fast, slow)


def test_records_too_large_are_quarantined_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recs = [lf.ct(), lf.ct(userAgent="x" * 5000), lf.ct()]
    _write(tmp_path, "f.json.gz", _file(recs))
    ingest = IngestConfig(max_record_bytes=4000)
    fast, slow = decode_both(monkeypatch, [str(tmp_path)], ingest)
    assert_same(fast, slow)
    assert [q[2] for q in fast[0].quarantine] == ["record_too_large"]
    assert fast[0].rows.num_rows == 2


def test_a_record_too_large_is_measured_before_redaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redaction re-spells a record it rewrites (\\u00e9, six bytes, becomes é, two): one over
    the limit as it came is too large, however short its redacted text, by both decoders, and is
    quarantined as it came."""
    text = _file([lf.ct(userAgent="é" * 1000, eventName="Bearer")])  # json: ensure_ascii
    assert len(text) > 6000
    _write(tmp_path, "f.json.gz", text)
    ingest = IngestConfig(max_record_bytes=4000)
    fast, slow = decode_both(monkeypatch, [str(tmp_path)], ingest)
    assert_same(fast, slow)
    assert [q.reason for q in fast[0].quarantine] == ["record_too_large"]
    assert fast[0].quarantine[0].raw == text.encode()[len('{"Records": [') :][:4000]


def test_a_number_past_a_double_costs_no_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1e400 is data: ingested by both decoders, kept in the lake's raw text as written, also
    where redaction rewrites the record (a password beside it is still fingerprinted, whatever
    its type), and read as its spelling where a text field holds it."""
    recs = [
        lf.ct(requestParameters={"tableName": "t", "key": "#"}),
        lf.ct(requestParameters={"password": 12345, "limit": "#"}),
        lf.ct(awsRegion="#"),
    ]
    _write(tmp_path, "f.json.gz", _spelt(recs, "1e400"))
    fast, slow = decode_both(monkeypatch, [str(tmp_path)])
    assert_same(fast, slow)
    assert not slow[0].quarantine
    raw = slow[0].rows["raw"].to_pylist()
    assert len(raw) == 3 and all("1e400" in r for r in raw)
    assert "12345" not in raw[1] and '"password":"redacted:sha256:' in raw[1]
    assert slow[0].rows["region"].to_pylist()[2] == "1e400"


def test_jsonnum_reads_as_orjson_does_and_numbers_past_a_double() -> None:
    import orjson

    from pipeline.ingest import jsonnum

    plain = [b'{"a": [1, -0, 2.5e-3, -0.0, "\\u00e9\\ud83d\\ude00", null, true]}', b"1e308"]
    plain += [b"[18446744073709551615, 18446744073709551616, -9223372036854775809, 1e-400]"]
    for doc in plain:
        assert jsonnum.loads(doc) == orjson.loads(doc)
    big = b'{"a": 1e400, "b": [-1E+400, 123456789012345678901234567890, 1' + b"0" * 400 + b"]}"
    value = jsonnum.loads(big)
    want = b'{"a":1e400,"b":[-1E+400,1.2345678901234568e+29,1' + b"0" * 400 + b"]}"
    assert orjson.dumps(value) == want  # written back as it came (orjson's double for the int)
    for broken, error in [
        (b"[1e400, nul]", "malformed"),
        (b'[1e400, "\\ud800"]', "truncated"),
        (b"[1e400, " + b"[" * 1024 + b"]" * 1024 + b"]", "depth limit exceeded"),
    ]:
        with pytest.raises(orjson.JSONDecodeError, match=error):
            jsonnum.loads(broken)
    assert jsonnum.loads(b"[1e400, " + b"[" * 1023 + b"]" * 1023 + b"]")  # orjson's 1,024 levels


def test_random_mutations_decode_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bytes of a real-shaped file flipped, cut and spliced: whatever either decoder makes of
    them, the other makes the same."""
    rng = random.Random(7)
    seed = _file([lf.ct(), lf.assume_role(tenant="t0001", new_key_id="ASIAKEY0000000001")])
    alphabet = '{}[]":,\\ u0123456789abcdefnulltrue-.eE\n\t'
    for i in range(150):
        chars = list(seed)
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(chars))
            op = rng.random()
            if op < 0.4:
                chars[at] = rng.choice(alphabet)
            elif op < 0.7:
                del chars[at]
            else:
                chars.insert(at, rng.choice(alphabet))
        _write(tmp_path, f"{i:03d}.json.gz", "".join(chars))
    assert_same(*decode_both(monkeypatch, [str(tmp_path)]))


# Field strategies over paths of every kind: the path columns come from each record's raw text
# after either decoder made it, so both decoders must give the same columns.
FIELDS = Reading.of(
    parse_config(
        {
            "tenancy": {
                "actor": [
                    {"kind": "field", "source": "cloudtrail", "path": "userIdentity.accountId"},
                    {
                        "kind": "field",
                        "source": "cloudtrail",
                        "path": "userIdentity.arn",
                        "when": {"userIdentity.sessionContext.sessionIssuer.userName": ["x"]},
                    },
                ],
                "target": [
                    {"kind": "field", "source": "cloudtrail", "path": "resources[*].accountId"},
                    {"kind": "field", "source": "cloudtrail", "path": "requestParameters.key.*"},
                    {"kind": "field", "source": "cloudtrail", "path": "requestParameters"},
                    {"kind": "field", "source": "cloudtrail", "path": "n[3]"},
                ],
            }
        },
        environ={},
    )
)


def test_path_columns_are_the_same_by_both_decoders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i, (_, text, _) in enumerate(VARIANTS):
        _write(tmp_path, f"{i:03d}.json.gz", text)
    fast, slow = decode_both(monkeypatch, [str(tmp_path)], reading=FIELDS)
    assert_same(fast, slow)
    columns = {c.text: c.name for c in FIELDS.columns}
    rows = fast[0].rows
    assert set(rows[columns["userIdentity.accountId"]].to_pylist()) >= {lf.ACCOUNT}
    assert ["2"] in rows[columns["requestParameters.key.*"]].to_pylist()  # the last of two
    assert "1E+9" not in str(rows[columns["n[3]"]].to_pylist())  # numbers are text by one rule
    assert any(
        v and v.startswith('{"bucketName"') for v in rows[columns["requestParameters"]].to_pylist()
    )


def test_the_real_world_corpus_gives_the_same_path_columns(
    monkeypatch: pytest.MonkeyPatch, real_logs: Path
) -> None:
    fast, slow = decode_both(monkeypatch, [str(real_logs)], reading=FIELDS)
    assert_same(fast, slow)
    name = FIELDS.column("cloudtrail", "resources[*].accountId").name
    assert sum(len(v or ()) for d in fast for v in d.rows[name].to_pylist()) > 10
