"""The C extension's kernels against their references: the join hash against xxhash's XXH64,
the builder's secret flag and the compiled pre-filter against ``prefilter.might_hold_secret``,
``take`` and ``take_strings`` against Arrow's take, and the credential spans against
``redact.credential_spans``."""

from __future__ import annotations

import gzip
import json
import os
import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import xxhash

from pipeline.ingest import native

REPO = Path(__file__).resolve().parent.parent


def test_join_hash_of_one_column_is_xxhash_xxh64() -> None:
    # Every length around XXH64's 32-, 8- and 4-byte steps, and long values.
    values = [os.urandom(n) for n in range(0, 300)] + [b"a" * 4096, b""]
    arr = pa.array(values, pa.binary()).cast(pa.string(), safe=False)
    for part in (arr, arr.slice(5, 100)):
        got = native.join_hash([part])
        want = b"".join(
            xxhash.xxh64(v).hexdigest().encode() for v in part.cast(pa.binary()).to_pylist()
        )
        assert got == want


# Pieces of text aimed at what the pre-filter decides on: every needle cut short, whole, in any
# case and next to what ends or continues it (separators, "id", a key's quote and colon), URL
# parameters and passwords, \\u escapes, and strings of 39, 40 and 41 base64 characters.
_B64 = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
FLAG_PIECES = [
    "tok", "toke", "token", "TOKEN", "ToKeN", "secre", "SeCrEt", "pas", "pass", "PASS",
    "authorizatio", "AUTHORIZATION", "beare", "Bearer", "basi", "BASIC", "privat", "PRIVATE",
    "cooki", "cookie", "credentia", "Credential", "eyJ", "EYJ", "ey", "yj", "api", "API", "ap",
    "key", "KEY", "ke", "access", "ACCESS", "acces", "id", "Id", "ID", "i", "d", "pwd", "PWD",
    "pw", "query", "QUERY", "quer", "string", "String", "param", "Param", "para", "-", "_", ".",
    " ", "-_", "x", "0", "en", "re", "ke", "ok", "é", "\\", "u", "?", "#", "&", ";", "=", "=",
    "\t", "a", ":", "//", ":/", "@", "h", "u:p", "://u:p@", _B64, _B64[:39], _B64 + "Q",
    _B64.replace("/", "x"), "/",
]  # fmt: skip
# Keys are read raw by the builder (an escaped key hands the file back): nothing JSON escapes
# (a quote, a backslash, a control or non-ASCII character, a slash where slashes are escaped).
KEY_PIECES = [p for p in FLAG_PIECES if p.isascii() and not set(p) & set('\\"\t/')]


def _flag_records(rng: random.Random, n: int) -> list[str]:
    """Records (compact JSON text) whose keys and values are made of the pieces; a third have
    their slashes escaped, as some writers spell them."""
    out = []
    for _ in range(n):
        agent = "".join(rng.choice(FLAG_PIECES) for _ in range(rng.randint(0, 6)))
        key = "".join(rng.choice(KEY_PIECES) for _ in range(rng.randint(1, 4)))
        rec: dict[str, Any] = {"eventName": "E", "userAgent": agent}
        if rng.random() < 0.5:
            rec[key] = rng.choice([agent, 1, {"a": agent}])
        if rng.random() < 0.3:
            rec = dict(reversed(list(rec.items())))  # the needle at the record's very end
        text = json.dumps(rec, separators=(",", ":"))
        out.append(text.replace("/", "\\/") if rng.random() < 0.3 else text)
    return out


def test_the_secret_flag_is_might_hold_secret() -> None:
    """The builder's per-record secret flag is prefilter.might_hold_secret of the record's
    bytes, on records made of needles cut short, whole, in any case and beside what ends or
    continues them, in values and in keys."""
    from pipeline.ingest import prefilter

    rng = random.Random(11)
    recs = _flag_records(rng, 3000)
    data = ('{"Records":[' + ",".join(recs) + "]}").encode()
    builder = native._ctscan.Builder() if native._ctscan else None
    assert builder is not None and builder.add(data) == len(recs)
    _, columns, flags = builder.take()
    raws = native.string_array(len(recs), *columns["raw"]).to_pylist()
    assert raws == recs
    want = [prefilter.might_hold_secret(r.encode()) for r in raws]
    assert [bool(f & 2) for f in flags] == want
    assert 500 < sum(want) < 2500


def test_the_compiled_pre_filter_is_the_python_one_on_any_bytes() -> None:
    """``_ctscan.might_hold_secret`` (what the redactor asks of each access-log line and record)
    is prefilter.might_hold_secret on text that need not be JSON, and RE2's flag_secrets flags
    the same ASCII text (and may flag more of the rest: its case folding is Unicode's)."""
    from pipeline.ingest import prefilter

    rng = random.Random(12)
    texts = [
        "".join(rng.choice([*FLAG_PIECES, '"', '\\"', "\\u00", "{", "}"]) for _ in range(n))
        for n in [rng.randint(0, 40) for _ in range(20_000)]
    ]
    texts += _flag_records(rng, 2000)
    assert native._ctscan is not None
    want = [prefilter.might_hold_secret(t.encode()) for t in texts]
    assert [native._ctscan.might_hold_secret(t.encode()) for t in texts] == want
    re2 = prefilter.flag_secrets(pa.array(texts, pa.string())).to_pylist()
    for text, python, vectorised in zip(texts, want, re2, strict=True):
        assert vectorised == python or (vectorised and not text.isascii()), text
    assert 5_000 < sum(want) < 20_000


def test_take_writes_replacements_in_place_of_the_raw_text() -> None:
    builder = native._ctscan.Builder() if native._ctscan else None
    assert builder is not None
    recs = [{"eventName": f"E{i}", "userAgent": "token" if i % 3 == 0 else "x"} for i in range(10)]
    assert builder.add(json.dumps({"Records": recs}).encode()) == 10
    rows, texts = builder.secrets()
    assert rows == [0, 3, 6, 9]
    assert [json.loads(t)["eventName"] for t in texts] == ["E0", "E3", "E6", "E9"]
    n, columns, _ = builder.take([0, 6, 9], [b"first", b"", b"last"])
    raw = native.string_array(n, *columns["raw"]).to_pylist()
    assert raw[0] == "first" and raw[6] == "" and raw[9] == "last"
    assert [json.loads(raw[i])["eventName"] for i in (1, 2, 3, 4, 5, 7, 8)] == [
        f"E{i}" for i in (1, 2, 3, 4, 5, 7, 8)
    ]
    assert builder.rows == 0
    with pytest.raises(ValueError, match="ascending"):
        builder.add(json.dumps({"Records": recs}).encode())
        builder.take([3, 1], [b"a", b"b"])


def test_take_strings_is_arrows_take() -> None:
    import numpy as np

    rng = random.Random(3)
    chunks = []
    for _ in range(6):
        values = ["".join(rng.choice("ab☃") for _ in range(rng.randint(0, 9))) for _ in range(20)]
        arr = pa.array(values, pa.string())
        chunks.append(arr.slice(rng.randint(0, 5)) if rng.random() < 0.5 else arr)
    col = pa.chunked_array(chunks)
    rows = np.array([rng.randrange(len(col)) for _ in range(300)], np.int64)
    assert native.take_strings(col, rows).to_pylist() == col.take(rows).to_pylist()
    assert native.take_strings(col, rows[:0]).to_pylist() == []
    with pytest.raises(IndexError):
        native.take_strings(col, np.array([len(col)], np.int64))


def test_join_hash_is_join_then_xxh64(monkeypatch: pytest.MonkeyPatch) -> None:
    import pyarrow.compute as pc

    from pipeline.ingest import normalize

    rng = random.Random(5)

    def column() -> pa.Array:
        values = [
            None if rng.random() < 0.2 else "".join(rng.choice("a\x1f\x00☃-") for _ in range(4))
            for _ in range(60)
        ]
        arr = pa.array(values, pa.string())
        return arr.slice(7, 40) if rng.random() < 0.5 else arr.slice(0, 40)

    cols = [column() for _ in range(6)]
    joined = pc.binary_join_element_wise(
        *cols, "\x1f", null_handling="replace", null_replacement="\x00"
    ).cast(pa.binary())
    want = b"".join(xxhash.xxh64(v).hexdigest().encode() for v in joined.to_pylist())
    assert native.join_hash(cols) == want
    # And record_hashes is the same by either decoder.
    fields = {f: column() for f in normalize.HASHED_FIELDS}
    fields["status_code"] = pa.array([200, None] * 20, pa.int32())
    fast = normalize.record_hashes(fields)
    monkeypatch.setenv("TENANTWATCH_NATIVE", "0")
    assert normalize.record_hashes(fields).equals(fast)


def _credential_records() -> list[bytes]:
    """The records of sample_logs/ as CloudTrail writes them (compact JSON), AssumeRole
    responses with credentials among them."""
    out = []
    for path in sorted((REPO / "sample_logs" / "AWSLogs").rglob("*.json.gz")):
        doc = json.loads(gzip.decompress(path.read_bytes()))
        for rec in doc.get("Records", []):
            out.append(json.dumps(rec, separators=(",", ":")).encode())
    return out


def test_credential_spans_are_the_python_decoders() -> None:
    """``_credentials.c`` finds the same credential values, and sends the same records to the
    full redaction, as ``redact.credential_spans``: on sample_logs/, and on seeded mutations
    aimed at what it decides on (keys, quotes, escapes, backslash runs, doubt words, non-ASCII,
    cuts)."""
    from pipeline.ingest import redact

    creds_keys = redact._CREDENTIAL_KEYS
    recs = _credential_records()
    creds = [r for r in recs if b'"sessionToken":"' in r]
    assert native._ctscan is not None and len(creds) > 20
    got = native._ctscan.credential_spans(recs, creds_keys)
    assert got == redact.credential_spans(recs)
    assert sum(g is not None for g in got) == len(creds)  # the C decoder, for every one
    pieces = [b'"sessionToken":"', b'"secretAccessKey":"', b'"secretAccessKey":"k"', b'"', b"\\"]
    pieces += [b'\\"', b"\\\\", b"{", b",", b":", b" ", b"\n", b'"token"', b'"Token" :', b"x"]
    pieces += [b'"PASSWORD"\t:', b"earer", b"asic", b"eyJ", b"\\u", b"\xc3\xa9", b'"idToken":']
    pieces += [b"EARER", b"eArEr", b"ASIC", b"aSiC", b"EyJ", b"eYj"]  # the schemes in any case
    pieces += [b"?", b"#", b"&", b";", b"=", b"?a=", b"#x", b"\t"]  # URL parameters
    # Secret keys and their look-alikes, header lines, settings, passwords in URLs, PEM blocks,
    # strings of 40 base64 characters.
    pieces += [b'"apiKey":', b'"x-api-key" :', b'"API_KEY":', b'"accessKey":', b'"accessKeyId":']
    pieces += [b'"access_key_i":', b'"ACCESS-KEY-ID":', b'"credentials":{', b'"credentials": "']
    pieces += [b'"Credential":[', b'"pwd":', b'"queryString":', b'"query_param":', b'"Query":']
    pieces += [b"x-api-key: ", b"Token:\t", b"token:", b"Access_Key: ", b"api.key: ", b"-----BEGIN"]
    pieces += [b"----BEGIN", b"://u:p@", b":\\/\\/u:p@", b"://u@", b"@", b"api", b"key", b"id"]
    pieces += [b'"' + _B64.encode() + b'"', b'"' + _B64.encode().replace(b"/", b"\\/") + b'"']
    pieces += [_B64.encode(), b'"' + _B64.encode()[:39] + b'"', b"{", b'":{']
    pieces += [b"Pwd =", b"api.key=", b"token=", b"db.password \t=", b"=", b"x=", b"pw d="]
    rng = random.Random(5)
    mutated = []
    for _ in range(20_000):
        raw = rng.choice(creds)
        for _ in range(rng.randint(0, 3)):
            at = raw.find(b'"sessionToken":"') + rng.randint(-40, 60)
            at = max(0, min(at, len(raw)))
            raw = raw[:at] + rng.choice(pieces) + raw[at:]
        if rng.random() < 0.1:
            raw = raw[: rng.randint(0, len(raw))]
        mutated.append(raw)
    mutated += [
        b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 30))) for _ in range(5000)
    ]
    got = native._ctscan.credential_spans(mutated, creds_keys)
    assert got == redact.credential_spans(mutated)
    assert 2_000 < sum(g is not None for g in got) < 20_000  # both decoders well exercised


def test_credential_spans_refuses_what_it_cannot_compare() -> None:
    assert native._ctscan is not None
    with pytest.raises(TypeError, match="must be bytes"):
        native._ctscan.credential_spans(["{}"], (b'"token":"',))
    with pytest.raises(TypeError, match="non-empty bytes"):
        native._ctscan.credential_spans([b"{}"], (b"",))
