"""Secret redaction: the byte-level road for AssumeRole credentials gives the walk's value.

``redact_many`` edits a credentials block in the record's own bytes when it can prove nothing
else would change (the proof found in C or in Python: every test runs on both roads); every
case here checks it against the full walk (``redact_raw``) and says which road it must take.
The byte road keeps the record's spelling, so records spelled as orjson
spells them come out byte for byte as the walk's, and any other spelling decodes to the same
value; a seeded property test holds that over varied records.
"""

from __future__ import annotations

import json
import random
from typing import Any

import orjson
import pytest

from pipeline.ingest import redact

TOKEN = "IQoJb3JpZ2luX2VjEXAMPLETOKEN0123456789+/="


@pytest.fixture(autouse=True, params=["compiled", "python"])
def road(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test on both roads: the credentials found in C (``_credentials.c``) or in Python."""
    monkeypatch.setenv("TENANTWATCH_NATIVE", "1" if request.param == "compiled" else "0")
    return str(request.param)


def assume_role(**credentials: Any) -> dict[str, Any]:
    return {
        "eventName": "AssumeRole",
        "userIdentity": {"arn": "arn:aws:sts::1:assumed-role/tenant-token-vendor/x"},
        "requestParameters": {"roleSessionName": "usr-1", "tags": [{"key": "t", "value": "1"}]},
        "responseElements": {"credentials": {"accessKeyId": "ASIAEXAMPLE", **credentials}},
    }


def walked(raw: bytes) -> bytes:
    return orjson.dumps(redact.redact(orjson.loads(raw)))


def took_fast_road(raw: bytes) -> bool:
    """Would ``redact_many`` edit the bytes rather than walk? (Spied on, not re-derived.)"""
    calls = []
    real = redact.redact_raw

    def spy(r: bytes) -> bytes:
        calls.append(r)
        return real(r)

    redact.redact_raw = spy  # type: ignore[assignment]
    try:
        redact.redact_many([raw])
    finally:
        redact.redact_raw = real  # type: ignore[assignment]
    return not calls


FAST = {
    "session token": assume_role(sessionToken=TOKEN, expiration="soon"),
    "both keys": assume_role(sessionToken=TOKEN, secretAccessKey="wJalrXUtnFEMI/K7MDENG"),
    "token at the end of the object": assume_role(expiration="soon", sessionToken=TOKEN),
    "escaped quotes in the token": assume_role(sessionToken='ab\\"cd"ef\\\\', expiration="x"),
    "empty token stays empty": assume_role(sessionToken="", secretAccessKey="s3cr3t"),
}
WALK = {
    "a password elsewhere": {**assume_role(sessionToken=TOKEN), "password": "hunter2"},
    "a bearer header elsewhere": {**assume_role(sessionToken=TOKEN), "h": "Bearer abcdefghijkl"},
    "a JWT elsewhere": {**assume_role(sessionToken=TOKEN), "t": "eyJhbGciOi.eyJzdWIiOi.sig"},
    "another case of the key": assume_role(SessionToken=TOKEN),
    "a token that is not a string": assume_role(sessionToken={"nested": TOKEN}),
    "a null token": assume_role(sessionToken=None, secretAccessKey="s3cr3t"),
    "non-ASCII text": {**assume_role(sessionToken=TOKEN), "note": "caf\u00e9"},
    "no credentials at all": {"eventName": "GetObject", "token": "abc"},
    "the key name escaped inside another key": {'a"sessionToken': "v", "token": "t"},
}


@pytest.mark.parametrize("name", FAST)
def test_credentials_are_edited_in_place_with_the_walks_bytes(name: str) -> None:
    raw = orjson.dumps(FAST[name])
    assert took_fast_road(raw)
    assert redact.redact_many([raw]) == [walked(raw)]


@pytest.mark.parametrize("name", WALK)
def test_anything_else_takes_the_full_walk(name: str) -> None:
    raw = orjson.dumps(WALK[name])
    assert not took_fast_road(raw)
    assert redact.redact_many([raw]) == [walked(raw)]


def test_the_token_never_survives_and_the_key_id_does() -> None:
    raw = orjson.dumps(assume_role(sessionToken=TOKEN, secretAccessKey="wJalrXUtnFEMI"))
    (redacted,) = redact.redact_many([raw])
    out = orjson.loads(redacted)
    creds = out["responseElements"]["credentials"]
    assert creds["sessionToken"] == redact.fingerprint(TOKEN)
    assert creds["secretAccessKey"] == redact.fingerprint("wJalrXUtnFEMI")
    assert creds["accessKeyId"] == "ASIAEXAMPLE"


def test_compact_input_spelled_differently_keeps_its_spelling() -> None:
    # Escaped slashes and a trailing zero, as some writers emit them: edited where they stand.
    raw = b'{"responseElements":{"credentials":{"sessionToken":"a\\/b","x":1.50}}}'
    assert took_fast_road(raw)
    fp = redact.fingerprint("a/b").encode()
    expected = b'{"responseElements":{"credentials":{"sessionToken":"' + fp + b'","x":1.50}}}'
    assert redact.redact_many([raw]) == [expected]
    assert orjson.loads(expected) == orjson.loads(walked(raw))


WALK_BYTES = {
    # Spaced JSON: the credential keys are not spelled compactly, so nothing is edited in place.
    "spaces around the colon": b'{"credentials": {"sessionToken": "abc", "x": 1}}',
    "a secret key with a space before its colon": (
        b'{"credentials":{"sessionToken":"abc"},"password" :"hunter2"}'
    ),
    "a secret key spelled with an escape": (
        b'{"credentials":{"sessionToken":"abc"},"\\u0074oken":"t0k3n"}'
    ),
    "a bearer token spelled with an escape": (
        b'{"credentials":{"sessionToken":"abc"},"h":"B\\u0065arer abcdefghijkl"}'
    ),
    "a token that never ends": b'{"credentials":{"sessionToken":"abc',
}


@pytest.mark.parametrize("name", WALK_BYTES)
def test_what_the_bytes_cannot_prove_takes_the_walk(name: str) -> None:
    raw = WALK_BYTES[name]
    assert not took_fast_road(raw)
    assert redact.redact_many([raw]) == [redact.redact_raw(raw)]


# -- property: both roads decode to the same value, and no secret survives either ---------------

_TOKENS = [
    "IQoJb3JpZ2luX2VjEXAMPLE+/=",
    'quote " and backslash \\ inside',
    "slash / and tab \t and newline \n",
    "caf\u00e9 \u2028 non-ASCII",
    "\\u0041 looks like an escape",
    "",
]
_SECRET_KEYS = ["sessionToken", "secretAccessKey", "SessionToken", "SECRETACCESSKEY", "password"]
_AGENTS = ["Bearer abcdefghijklmnop", "x eyJhbGciOi.eyJzdWIiOi.sig", "Basic", "basic"]


def _secret(rng: random.Random, n: int) -> str:
    return f"S3CR3T{n}x{rng.choice(_TOKENS)}{rng.randrange(10**6)}"


def _record(rng: random.Random) -> tuple[dict[str, Any], list[str]]:
    """A varied AssumeRole-like record and the secrets it holds under secret keys."""
    secrets: list[str] = []

    def value() -> str:
        v = _secret(rng, len(secrets)) if rng.random() > 0.1 else ""
        if v:
            secrets.append(v)
        return v

    creds: dict[str, Any] = {"accessKeyId": "ASIAEXAMPLE", "sessionToken": value()}
    if rng.random() < 0.7:
        creds["secretAccessKey"] = value()
    if rng.random() < 0.2:
        creds["expiration"] = "Nov 3, 2026 7:50:30 PM"
    items = list(creds.items())
    rng.shuffle(items)
    rec: dict[str, Any] = {
        "eventName": "AssumeRole",
        "userAgent": rng.choice(_AGENTS) if rng.random() < 0.3 else "aws-cli/2.15",
        "requestParameters": {"roleSessionName": "usr-1", "durationSeconds": 3600},
        "responseElements": {"credentials": dict(items)},
    }
    if rng.random() < 0.2:
        rec["requestParameters"]["nested"] = [{"sessionToken": value()}, {"n": 1.5}]
    if rng.random() < 0.15:
        rec["additionalEventData"] = {rng.choice(_SECRET_KEYS): value()}
    if rng.random() < 0.15:
        rec["note"] = rng.choice(["caf\u00e9", "\u2028", "plain"])
    if rng.random() < 0.1:
        rec["responseElements"]["credentials"]["sessionToken"] = None
    return rec, secrets


def _spell(rng: random.Random, rec: dict[str, Any]) -> bytes:
    style = rng.randrange(6)
    if style == 0:
        return orjson.dumps(rec)
    if style == 1:
        return json.dumps(rec).encode()  # spaces after ":" and ",", \u escapes
    if style == 2:
        return json.dumps(rec, separators=(",", ":")).encode()  # compact, \u escapes
    if style == 3:
        return json.dumps(rec, indent=2, ensure_ascii=False).encode()
    if style == 4:
        return orjson.dumps(rec).replace(b"/", b"\\/")  # escaped slashes
    return orjson.dumps(rec, option=orjson.OPT_INDENT_2)


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [*value, *(s for v in value.values() for s in _strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def test_both_roads_decode_to_the_same_value_and_no_secret_survives() -> None:
    rng = random.Random(20261126)
    raws, secrets = [], []
    for _ in range(600):
        rec, held = _record(rng)
        raws.append(_spell(rng, rec))
        secrets.append(held)
    fast = sum(took_fast_road(r) for r in raws)
    assert 100 < fast < len(raws)  # both roads are exercised
    batch = redact.redact_many(raws)
    for raw, out, held in zip(raws, batch, secrets, strict=True):
        assert orjson.loads(out) == orjson.loads(redact.redact_raw(raw)), raw
        texts = _strings(orjson.loads(out))
        for secret in held:
            assert not any(secret in t for t in texts), (secret, raw)
        assert not any("abcdefghijklmnop" in t for t in texts)
        assert not any("eyJhbGciOi" in t for t in texts)
    assert batch == [redact.redact_many([r])[0] for r in raws]


def test_a_chunk_mixes_both_roads_and_keeps_its_order() -> None:
    raws = [orjson.dumps(c) for c in [*FAST.values(), *WALK.values()]]
    raws.insert(3, b'{"eventName": "GetObject"}')  # no secret at all: the bytes as they are
    assert redact.redact_many(raws) == [redact.redact_raw(r) for r in raws]
