"""Secret redaction: the byte-level redaction of AssumeRole credentials gives the value the full
redaction gives.

``redact_many`` edits a credentials block in the record's own bytes when it can prove nothing
else would change (the proof found in C or in Python: every test runs on both decoders); every
case here checks it against the full redaction (``redact_raw``) and says which decoder it must
take. The byte-level redaction keeps the record's spelling, so records spelled as orjson spells
them come out byte for byte as the full redaction's, and any other spelling decodes to the same
value; a seeded property test holds that over varied records.

Secrets hide in strings too (a request written as a JSON string, key/value text), and records
that are not JSON reach the quarantine with only ``scrub_bytes`` between them and the lake's
reader: those cases hold that no secret text survives and that a secret's fingerprint is the
same wherever it lands (``redact.fingerprint`` of the value).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.config import Config
from pipeline.ingest import prefilter, redact
from pipeline.ingest.decode import Quarantined
from pipeline.ingest.run import _quarantine_table, ingest
from pipeline.lake import read_events, read_quarantine
from tests import logfactory as lf

TOKEN = "IQoJb3JpZ2luX2VjEXAMPLETOKEN0123456789+/="


@pytest.fixture(autouse=True, params=["compiled", "python"])
def decoder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test on both decoders: the credentials found in C (``_credentials.c``) or in Python."""
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


def c_decoder_takes(raw: bytes) -> bool:
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
    "a password in a JSON string elsewhere": {
        **assume_role(sessionToken=TOKEN, secretAccessKey="s3cr3t"),
        "requestParameters": json.dumps({"roleSessionName": "usr-1", "password": "hunter2"}),
    },
    "an escaped quote elsewhere": {**assume_role(sessionToken=TOKEN), "note": 'say "hi"'},
}


@pytest.mark.parametrize("name", FAST)
def test_credentials_are_edited_in_place_with_the_walks_bytes(name: str) -> None:
    raw = orjson.dumps(FAST[name])
    assert c_decoder_takes(raw)
    assert redact.redact_many([raw]) == [walked(raw)]


@pytest.mark.parametrize("name", WALK)
def test_anything_else_takes_the_full_walk(name: str) -> None:
    raw = orjson.dumps(WALK[name])
    assert not c_decoder_takes(raw)
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
    assert c_decoder_takes(raw)
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
    assert not c_decoder_takes(raw)
    assert redact.redact_many([raw]) == [redact.redact_raw(raw)]


# -- property: both decoders decode to the same value, and no secret survives either ---------------

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


def test_both_decoders_decode_to_the_same_value_and_no_secret_survives() -> None:
    rng = random.Random(20261126)
    raws, secrets = [], []
    for _ in range(600):
        rec, held = _record(rng)
        raws.append(_spell(rng, rec))
        secrets.append(held)
    fast = sum(c_decoder_takes(r) for r in raws)
    assert 100 < fast < len(raws)  # both decoders are exercised
    batch = redact.redact_many(raws)
    for raw, out, held in zip(raws, batch, secrets, strict=True):
        assert orjson.loads(out) == orjson.loads(redact.redact_raw(raw)), raw
        texts = _strings(orjson.loads(out))
        for secret in held:
            assert not any(secret in t for t in texts), (secret, raw)
        assert not any("abcdefghijklmnop" in t for t in texts)
        assert not any("eyJhbGciOi" in t for t in texts)
    assert batch == [redact.redact_many([r])[0] for r in raws]


def test_a_chunk_mixes_both_decoders_and_keeps_its_order() -> None:
    raws = [orjson.dumps(c) for c in [*FAST.values(), *WALK.values()]]
    raws.insert(3, b'{"eventName": "GetObject"}')  # no secret at all: the bytes as they are
    assert redact.redact_many(raws) == [redact.redact_raw(r) for r in raws]


# -- secrets inside strings ------------------------------------------------------------------

PASSWORD = "LEAKPASSWORD7xxxxx"


def fp(secret: str) -> bytes:
    return redact.fingerprint(secret).encode()


def test_a_request_spelled_as_a_json_string_is_redacted_inside() -> None:
    # Some pipelines deliver requestParameters as a JSON string; its secrets are the record's.
    rec = {
        **assume_role(sessionToken=TOKEN, secretAccessKey="wJalrXUtnFEMI"),
        "requestParameters": json.dumps({"userName": "bob", "password": PASSWORD}),
    }
    raw = orjson.dumps(rec)
    (out,) = redact.redact_many([raw])
    for secret in (PASSWORD, TOKEN, "wJalrXUtnFEMI"):
        assert secret.encode() not in out
    decoded = orjson.loads(out)
    params = orjson.loads(decoded["requestParameters"])
    assert params == {"userName": "bob", "password": redact.fingerprint(PASSWORD)}
    creds = decoded["responseElements"]["credentials"]
    assert creds["sessionToken"] == redact.fingerprint(TOKEN)


def test_a_json_string_without_a_secret_keeps_its_spelling() -> None:
    raw = orjson.dumps({"token": "t", "requestParameters": '{"tokenType":  "bearer-less"}'})
    assert orjson.loads(redact.redact_raw(raw))["requestParameters"] == (
        '{"tokenType":  "bearer-less"}'
    )


def test_secret_pairs_in_other_text_are_scrubbed_as_text() -> None:
    note = f'retry with "password": "{PASSWORD}", "sessionToken":"{TOKEN}" and more'
    out = redact.redact_raw(orjson.dumps({"eventName": "X", "note": note}))
    assert PASSWORD.encode() not in out and TOKEN.encode() not in out
    assert orjson.loads(out)["note"] == (
        f'retry with "password": "{redact.fingerprint(PASSWORD)}", '
        f'"sessionToken":"{redact.fingerprint(TOKEN)}" and more'
    )


# -- quarantine: bytes that are not JSON ---------------------------------------------------------


def test_a_secret_that_never_ends_is_scrubbed_to_the_end() -> None:
    raw = b'{"eventID":"l2","credentials":{"sessionToken":"' + TOKEN.encode()
    out = redact.scrub_bytes(raw)
    assert TOKEN.encode() not in out
    assert out == b'{"eventID":"l2","credentials":{"sessionToken":"' + fp(TOKEN)


@pytest.mark.parametrize(
    "key", ["\\u0073essionToken", "\\u0053ESSIONTOKEN", "p\\u0061ssword", "\\u0070\\u0041ssword"]
)
def test_a_key_spelled_with_escapes_is_still_a_secret_key(key: str) -> None:
    raw = b'{"x":{"' + key.encode() + b'":"' + PASSWORD.encode() + b'"}, bad'
    out = redact.scrub_bytes(raw)
    assert PASSWORD.encode() not in out
    assert fp(PASSWORD) in out


# Secret keys as credentials, tokens, OAuth responses and HTTP headers spell them, each with its
# words run together and parted by "_" and "-" (tests/test_secret_keys.py has the whole class).
_KEY_WORDS = [
    ("session", "token"), ("secret", "access", "key"), ("password",), ("new", "password"),
    ("old", "password"), ("password", "hash"), ("authorization",), ("token",), ("id", "token"),
    ("access", "token"), ("refresh", "token"), ("auth", "token"), ("client", "secret"),
    ("private", "key"), ("secret", "string"), ("secret", "binary"),
    ("x", "amz", "security", "token"), ("cookie",), ("set", "cookie"), ("x", "api", "key"),
    ("api", "key"), ("passwd",), ("pwd",), ("access", "key"), ("credentials",),
]  # fmt: skip
SECRET_KEYS = sorted({sep.join(words) for words in _KEY_WORDS for sep in ("", "_", "-")})


@pytest.mark.parametrize("key", SECRET_KEYS)
def test_every_secret_key_is_scrubbed_from_bytes(key: str) -> None:
    for spelled in (key, key.upper()):
        raw = b'{"eventID":"q","' + spelled.encode() + b'" : "' + PASSWORD.encode() + b'", bad'
        out = redact.scrub_bytes(raw)
        assert PASSWORD.encode() not in out, spelled
        assert fp(PASSWORD) in out


@pytest.mark.parametrize("depth", [0, 1, 2, 3])
@pytest.mark.parametrize("ascii_only", [True, False])
def test_a_secret_in_strings_in_strings_gets_the_walks_fingerprint(
    depth: int, ascii_only: bool
) -> None:
    # A JSON request inside a string inside a string...: the walk decodes each level, the
    # quarantine's patterns count the backslashes; both fingerprint the same decoded value.
    secret = 'LEAK"quote\\backslash caf\u00e9'
    value: dict[str, Any] = {"userName": "bob", "password": secret}
    for _ in range(depth):
        value = {"requestParameters": json.dumps(value, ensure_ascii=ascii_only)}
    raw = json.dumps({"eventID": "q", **value}, ensure_ascii=ascii_only).encode()
    walked_value = orjson.loads(redact.redact_raw(raw))
    for _ in range(depth):
        walked_value = orjson.loads(walked_value["requestParameters"])
    assert walked_value["password"] == redact.fingerprint(secret)
    quarantined = redact.scrub_bytes(raw[:-1] + b", bad")
    assert b"LEAK" not in quarantined
    assert fp(secret) in quarantined


def test_quarantine_fingerprints_are_the_lakes() -> None:
    # The fingerprint is the decoded value's, as the walk computes it: not the key's, not the
    # escaped bytes'.
    token = 'IQoJ/slash"quote'
    rec = {"eventID": "q", "credentials": {"sessionToken": token, "password": PASSWORD}}
    lake = orjson.loads(redact.redact_raw(orjson.dumps(rec)))["credentials"]
    broken = json.dumps(rec).replace("/", "\\/").encode()[:-1] + b", bad"
    out = redact.scrub_bytes(broken)
    assert fp(token) in out and lake["sessionToken"] == redact.fingerprint(token)
    assert fp(PASSWORD) in out and lake["password"] == redact.fingerprint(PASSWORD)


def test_scrubbing_what_the_walk_redacted_changes_nothing() -> None:
    # A record the walk redacted can still be quarantined (no eventTime): scrubbed again, its
    # fingerprints must stay the walk's.
    rec = {"password": PASSWORD, "h": "Authorization: Basic TEVBS0JBU0lDOHh4eHh4", "t": "x"}
    walked_raw = redact.redact_raw(orjson.dumps(rec))
    assert redact.scrub_bytes(walked_raw) == walked_raw


def test_the_quarantine_detail_is_scrubbed_too() -> None:
    line = b'curl -H "Authorization: Bearer LEAKBEARERxxxxxxxxxx1"'
    detail = f"line starts {line.decode()!r}"
    (row,) = _quarantine_table([Quarantined("in.log", 1, "not_json", detail, line)]).to_pylist()
    bearer = fp("Bearer LEAKBEARERxxxxxxxxxx1").decode()
    assert row["detail"] == f"line starts 'curl -H \"Authorization: Bearer {bearer}\"'"
    assert row["raw"] == b'curl -H "Authorization: Bearer ' + bearer.encode() + b'"'


def test_secrets_reach_neither_lake_nor_quarantine_through_ingest(tmp_path: Path) -> None:
    token, bearer = "LEAKSESSIONTOKENxxxxxxxx5", "LEAKBEARERxxxxxxxxxx1"
    assume = lf.ct(
        "AssumeRole",
        requestParameters=json.dumps({"roleSessionName": "s1", "password": PASSWORD}),
        responseElements={"credentials": {"accessKeyId": "ASIA1", "sessionToken": token}},
    )
    lines = [
        f'curl -H "Authorization: Bearer {bearer}"',
        '{"eventID":"q2","responseElements":{"credentials":{"sessionToken":"' + token,
        '{"eventID":"q3","x":{"\\u0073essionToken":"' + token + '"}, bad',
        json.dumps(assume),
    ]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.log").write_text("\n".join(lines) + "\n")
    summary = ingest([str(tmp_path / "in")], str(tmp_path / "lake"), Config(), workers=1)
    assert (summary["ingested"], summary["quarantined_total"]) == (1, 3)

    (raw,) = read_events(str(tmp_path / "lake")).column("raw").to_pylist()
    quarantine = read_quarantine(str(tmp_path / "lake")).to_pylist()
    texts = [raw, *(q["detail"] for q in quarantine), *(q["raw"].decode() for q in quarantine)]
    for text in texts:
        assert "LEAK" not in text, text
    assert redact.fingerprint(PASSWORD) in raw
    assert redact.fingerprint(token) in raw
    by_position = {q["position"]: q for q in quarantine}
    assert fp(token) in by_position[2]["raw"] and fp(token) in by_position[3]["raw"]
    assert fp(f"Bearer {bearer}") in by_position[1]["raw"]
    assert fp(f"Bearer {bearer}").decode() in by_position[1]["detail"]


@pytest.mark.parametrize(
    "key", ["access_token", "ID-Token", "client_secret", "private_key", "Set-Cookie", "auth_token"]
)
def test_a_secret_key_spelled_with_separators_is_a_secret_key(key: str) -> None:
    # OAuth responses and HTTP headers spell the same keys with "_" or "-" between the words.
    raw = orjson.dumps({"eventID": "q", "response": {key: PASSWORD}})
    assert prefilter.might_hold_secret(raw)
    out = redact.redact_many([raw])[0]
    assert orjson.loads(out)["response"][key] == redact.fingerprint(PASSWORD)
    assert fp(PASSWORD) in redact.scrub_bytes(raw[:-1] + b", bad")
