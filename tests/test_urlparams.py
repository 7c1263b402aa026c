"""Secrets in URLs: query and fragment parameters fingerprinted by name and by shape.

Named positive cases (a parameter whose name or value makes it a secret) and named negative cases
(what on-call must still read, and the ids the product joins on), then the same URLs where logs
carry them: API Gateway access-log fields, authorizer lines, CloudTrail responses (presigned
URLs), user agents, error messages and the quarantine, on both decoders, in the raw text
and in the normalized columns.
"""

from __future__ import annotations

import json
import random
import string
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest

from pipeline.ingest import prefilter, redact, urlparams
from pipeline.ingest.fingerprint import fingerprint
from pipeline.ingest.run import ingest
from pipeline.lake import read_events, read_quarantine
from tests import logfactory as lf
from tests.pooled import pooled_config

SECRET = "Zk3mQ9vL2xR8pT4wN7yB1cD6hJ0s"  # random-looking: a secret under any name
WORD = "LEAKplainword"  # looks like nothing: a secret only by its name
KEY_ID = "AKIAIOSFODNN7EXAMPLE"
SIGNATURE = "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c3ItMSJ9.c2lnbmF0dXJlLTE"

# name -> (URL, the secret it holds)
BY_NAME = {
    name: (f"/prod/tenants/t0001/items?page=2&{name}={WORD}&sort=name", WORD)
    for name in [
        "token",
        "access_token",
        "id_token",
        "refresh_token",
        "password",
        "passwd",
        "pwd",
        "secret",
        "api_key",
        "apikey",
        "x-api-key",
        "key",
        "sig",
        "signature",
        "X-Amz-Security-Token",
        "X-Amz-Signature",
        "code",
        "client_secret",
        "session",
        "auth",
        "Access%5FToken",
        "JSESSIONID",
    ]
}
BY_SHAPE = {
    "random text under an unknown name": (f"/x?cursor_state={SECRET}", SECRET),
    "a JWT under an unknown name": (f"/x?state={JWT}", JWT),
    "an AWS secret key shape": (
        "/x?aws=wJalrXUtnFEMI%2FK7MDENG%2FbPxRfiCYEXAMPLEKEY",
        "wJalrXUtnFEMI%2FK7MDENG%2FbPxRfiCYEXAMPLEKEY",
    ),
    "a hex signature": (f"/x?h={SIGNATURE}", SIGNATURE),
    "a bearer credential, percent-encoded": ("/x?h=Bearer%20LEAKbearer12", "LEAKbearer12"),
    "an encoded redirect holding a code": (
        "/login?next=https%3A%2F%2Fapp.example%2Fcb%3Fcode%3DLEAKcode1",
        "LEAKcode1",
    ),
    "an implicit-flow fragment": (
        f"https://app.example/cb#access_token={WORD}&token_type=Bearer&expires_in=3600",
        WORD,
    ),
    "a second query after a semicolon": (f"/x?a=1;sig={WORD}", WORD),
    "html-escaped ampersands": (f"/x?a=1&amp;token={WORD}", WORD),
    "separators spelled as JSON escapes": (f"GET /x\\u003fa=1\\u0026sig={WORD}", WORD),
    "a URL in prose": (f"fetch failed for https://h.example/p?pwd={WORD}: 403", WORD),
}
KEPT = {
    "paging and sorting": "/prod/tenants/t0001/invoices?page=2&sort=name&limit=50",
    "presigned URL scope": (
        f"?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={KEY_ID}%2F20130524%2Fus-east-1"
        "%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400"
        "&X-Amz-SignedHeaders=host"
    ),
    "an access key id": "?AWSAccessKeyId=ASIAEXAMPLE0000001&Expires=1700000000",
    "ids": (
        "?requestId=9b2f6f0e-3c1d-4f7e-9a55-0d6f1c2b3a4e&id=9b2f6f0e3c1d4f7e9a550d6f1c2b3a4e"
        "&instance=i-0abcd1234ef5678a0&tenant=t0007&arn=arn:aws:iam::111122223333:role/r"
    ),
    "words and numbers": (
        "?orderBy=createdAtDescending2024&view=ProjectAlpha2024Release"
        "&file=invoice-2026-11-16-000123.pdf&email=ops@example.com&ts=1700000000000"
    ),
    "an encoded redirect without secrets": "/login?next=https%3A%2F%2Fapp.example%2Fcb%3Fpage%3D2",
    "OAuth's token type": "#token_type=Bearer&expires_in=3600&state=xyz",
    "a fragment that is no parameter": "/docs/page#section-2",
    "not a URL": "a = b, c=d",
}


@pytest.mark.parametrize("name", BY_NAME)
def test_a_parameter_named_as_a_secret_is_fingerprinted(name: str) -> None:
    url, secret = BY_NAME[name]
    out = redact._scrub_tokens(url)
    assert secret not in out
    assert out == url.replace(secret, fingerprint(secret))  # the rest stays as it was


@pytest.mark.parametrize("name", BY_SHAPE)
def test_a_value_shaped_as_a_secret_is_fingerprinted_whatever_its_name(name: str) -> None:
    url, secret = BY_SHAPE[name]
    out = redact._scrub_tokens(url)
    assert secret not in out, out
    assert redact._scrub_tokens(out) == out  # scrubbing twice changes nothing


@pytest.mark.parametrize("name", KEPT)
def test_what_is_no_secret_stays_readable(name: str) -> None:
    assert redact._scrub_tokens(KEPT[name]) == KEPT[name]


def test_identifiers_are_never_taken_for_random_text_and_random_text_always_is() -> None:
    rng = random.Random(2026)
    words = [
        "invoice",
        "tenant",
        "order",
        "created",
        "desc",
        "page",
        "sorted",
        "name",
        "customer",
        "report",
        "final",
        "draft",
        "alpha",
        "release",
        "project",
        "user",
        "pool",
        "client",
        "account",
        "billing",
        "region",
        "bucket",
        "object",
        "version",
        "status",
        "active",
        "pending",
        "archived",
        "filter",
        "limit",
        "offset",
        "cursor",
        "next",
        "export",
        "download",
        "thumbnail",
    ]
    for _ in range(5000):
        parts = [rng.choice(words) for _ in range(rng.randint(2, 6))]
        text = (
            parts[0] + "".join(p.title() for p in parts[1:])
            if rng.random() < 0.5
            else rng.choice("_-.").join(parts)
        ) + (str(rng.randrange(10**5)) if rng.random() < 0.5 else "")
        assert not urlparams.looks_random(text), text
    alphabets = [string.ascii_letters + string.digits + "+/", string.ascii_letters + "0123456789-_"]
    for n in (40, 64, 200):
        for alphabet in alphabets:
            for _ in range(200):
                text = "".join(rng.choice(alphabet) for _ in range(n))
                assert urlparams.looks_random(text), text


# -- where logs carry URLs: the full redaction, the pre-filter, the quarantine ----------------

PRESIGNED = (
    "https://awslambda-us-east-1-tasks.s3.us-east-1.amazonaws.com/snapshots/111122223333/fn"
    f"?versionId=3&X-Amz-Security-Token=IQoJb3JpZ2luX2VjLEAKsessiontoken%2F%2B%3D"
    f"&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={KEY_ID}%2F20261116%2Fus-east-1%2Fs3"
    f"%2Faws4_request&X-Amz-Signature={SIGNATURE}"
)


def test_a_record_with_a_url_parameter_is_looked_at() -> None:
    # No secret word, no JWT, no escape: only the parameter sends it to the full redaction.
    raw = orjson.dumps({"eventName": "GetFunction", "location": "/f?sig=" + WORD})
    assert prefilter.might_hold_secret(raw)
    assert WORD.encode() not in redact.redact_raw(raw)
    assert not prefilter.might_hold_secret(b'{"userAgent": "Botocore#1.34 os/linux#5", "a": "b=c"}')


@pytest.mark.parametrize("native", ["1", "0"])
def test_credentials_beside_a_presigned_url_take_the_walk(
    monkeypatch: pytest.MonkeyPatch, native: str
) -> None:
    # The byte-level redaction of AssumeRole credentials (in C, or in Python) leaves the URL to
    # the full redaction.
    monkeypatch.setenv("TENANTWATCH_NATIVE", native)
    rec = {
        "eventName": "AssumeRole",
        "responseElements": {"credentials": {"sessionToken": "LEAKsession"}},
        "additionalEventData": {"url": PRESIGNED},
    }
    raw = orjson.dumps(rec)
    (out,) = redact.redact_many([raw])
    assert out == redact.redact_raw(raw)
    assert b"LEAK" not in out and SIGNATURE.encode() not in out and KEY_ID.encode() in out


def test_urls_in_strings_in_strings_are_scrubbed() -> None:
    inner = json.dumps({"url": f"/cb?code={WORD}", "note": "no secret word here"})
    raw = orjson.dumps({"eventName": "X", "requestParameters": json.dumps({"body": inner})})
    out = redact.redact_raw(raw)
    assert WORD.encode() not in out and fingerprint(WORD).encode() in out


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("plain", b'{"u":"/cb?code=' + WORD.encode() + b'&page=2"'),
        ("escaped ampersand", b'{"u":"/x?a=1\\u0026sig=' + WORD.encode() + b'"'),
        ("escaped slashes", b'{"u":"\\/x?aws=wJalrXUtnFEMI\\/K7MDENG\\/bPxRfiCYEXAMPLEKEY",'),
        ("fragment in a string", b'{"m":"{\\"u\\": \\"\\/cb#access_token=' + WORD.encode()),
    ],
)
def test_the_quarantine_scrubs_urls_in_bytes_that_are_not_json(name: str, text: bytes) -> None:
    out = redact.scrub_bytes(text)
    assert WORD.encode() not in out and b"bPxRfiCY" not in out, out
    assert redact.scrub_bytes(out) == out


def test_the_quarantine_fingerprint_is_the_full_redactions() -> None:
    rec = {"eventName": "X", "u": f"\\/cb?code={WORD}&page=2"}
    walked = orjson.loads(redact.redact_raw(orjson.dumps(rec)))["u"]
    broken = json.dumps(rec).replace("/", "\\/").encode()[:-1] + b", bad"
    assert fingerprint(WORD) in walked and fingerprint(WORD).encode() in redact.scrub_bytes(broken)


# -- through ingestion, both decoders, raw text and columns ---------------------------------------


def _strings(table_rows: list[dict[str, Any]]) -> str:
    return json.dumps(table_rows, default=str)


@pytest.mark.parametrize("native", ["1", "0"])
def test_urls_in_every_source_reach_neither_raw_nor_columns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, native: str
) -> None:
    monkeypatch.setenv("TENANTWATCH_NATIVE", native)
    secrets = [f"LEAK{i:02d}x" for i in range(13)]
    api = lf.access_log()
    api["path"] = f"/prod/tenants/t0001/invoices?page=2&access_token={secrets[0]}&sort=name"
    api["resourcePath"] = f"/tenants/{{tenantId}}/invoices?sig={secrets[1]}"
    api["referer"] = f"https://app.example/cb#id_token={secrets[2]}&state=s1"
    api["userAgent"] = f"bot/1.0 (+https://bot.example/?apikey={secrets[3]})"
    authz = lf.authorizer_log()
    authz["reason"] = f"denied https://idp.example/authorize?client_secret={secrets[4]}"
    authz["method_arn"] += f"?password={secrets[5]}"
    authz["user_agent"] = f"bot/2 (+https://b.example/x\\u003fsig={secrets[12]})"
    ct = lf.ct(
        "GetFunction",
        userAgent=f"sdk/2 https://x.example/?session={secrets[6]}",
        errorCode="AccessDenied",
        errorMessage=f"denied for https://h.example/p?pwd={secrets[7]}",
        responseElements={"code": {"location": PRESIGNED + f"&auth={secrets[8]}"}},
        additionalEventData={"redirect": f"/cb?next=%2Fa%3Fkey%3D{secrets[9]}"},
    )
    ct["requestParameters"]["key"] = f"tenants/t0001/f?code={secrets[10]}"
    lf.lines_file(tmp_path / "in" / "api.log", [api])
    lf.lines_file(tmp_path / "in" / "authz.log", [authz])
    lf.delivery_file(tmp_path / "in" / "ct.json.gz", [ct])
    (tmp_path / "in" / "bad.log").write_text(f'{{"u": "/x?token={secrets[11]}", broken\n')
    summary = ingest([str(tmp_path / "in")], str(tmp_path / "lake"), pooled_config(), workers=1)
    assert (summary["ingested"], summary["quarantined_total"]) == (3, 1)

    lake = tmp_path / "lake"
    for path in lake.rglob("*.parquet"):
        text = _strings(pq.read_table(path).to_pylist())
        for secret in [*secrets, "LEAKsessiontoken", SIGNATURE]:
            assert secret not in text, (secret, path)
    rows = {r["source"]: r for r in read_events(str(lake)).to_pylist()}
    api_row, authz_row, ct_row = rows["apigateway"], rows["authorizer"], rows["cloudtrail"]
    # Columns hold the fingerprints the raw text holds; what is no secret stays readable.
    assert api_row["resource"] == (
        f"/prod/tenants/t0001/invoices?page=2&access_token={fingerprint(secrets[0])}&sort=name"
    )
    assert api_row["target_tenant"] == "t0001"
    assert fingerprint(secrets[1]) in api_row["action"]
    # A value runs on over a closing parenthesis: fingerprinting more, never leaving a tail.
    assert api_row["user_agent"].endswith(f"?apikey={fingerprint(secrets[3] + ')')}")
    for i in (0, 1, 2):
        assert fingerprint(secrets[i]) in api_row["raw"]
    assert api_row["user_agent"] in api_row["raw"]
    assert fingerprint(secrets[4]) in authz_row["error_code"]
    assert fingerprint(secrets[5]) in authz_row["raw"]
    assert fingerprint(secrets[12] + ")") in authz_row["user_agent"]
    assert ct_row["user_agent"] == f"sdk/2 https://x.example/?session={fingerprint(secrets[6])}"
    location = json.loads(ct_row["raw"])["responseElements"]["code"]["location"]
    assert f"X-Amz-Credential={KEY_ID}%2F20261116" in location and "versionId=3" in location
    assert json.loads(ct_row["raw"])["userIdentity"]["accessKeyId"] == "ASIAEXAMPLE0000001"
    (entry,) = read_quarantine(str(lake)).to_pylist()
    assert fingerprint(secrets[11]).encode() in entry["raw"]


def test_a_query_after_the_tenant_never_becomes_the_tenant(tmp_path: Path) -> None:
    # The default api_path pattern takes the segment after /tenants/: with the query right after
    # it, the query (and its secret) became the target tenant, and from there findings and
    # notifications. The path hint ends where the query or fragment starts.
    api = lf.access_log(tenant_path="t0002", claim="t0001")
    api["path"] = f"/prod/tenants/t0002?access_token={WORD}"
    authz = lf.authorizer_log(requested="t0003")
    authz["method_arn"] = authz["method_arn"].replace("/invoices", f"#code={WORD}")
    lf.lines_file(tmp_path / "in" / "api.log", [api])
    lf.lines_file(tmp_path / "in" / "authz.log", [authz])
    ingest([str(tmp_path / "in")], str(tmp_path / "lake"), pooled_config(), workers=1)
    rows = {r["source"]: r for r in read_events(str(tmp_path / "lake")).to_pylist()}
    assert rows["apigateway"]["target_tenant"] == "t0002"
    assert rows["authorizer"]["target_tenant"] == "t0003"
    assert WORD not in _strings(list(rows.values()))
