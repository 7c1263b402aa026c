"""Secret redaction: the byte-level road for AssumeRole credentials gives exactly the walk's bytes.

``redact_many`` edits a credentials block in the serialised bytes when it can prove nothing else
would change; every case here checks it against the full walk (``redact_raw``) and says which
road it must take.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from pipeline.ingest import redact

TOKEN = "IQoJb3JpZ2luX2VjEXAMPLETOKEN0123456789+/="


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


def test_input_spelled_differently_comes_out_as_the_walk_spells_it() -> None:
    # Spaces and escaped slashes, as some writers emit them: the output is orjson's spelling.
    raw = b'{"responseElements": {"credentials": {"sessionToken": "a\\/b", "x": 1.50}}}'
    assert took_fast_road(raw)
    assert redact.redact_many([raw]) == [walked(raw)]


def test_a_chunk_mixes_both_roads_and_keeps_its_order() -> None:
    raws = [orjson.dumps(c) for c in [*FAST.values(), *WALK.values()]]
    raws.insert(3, b'{"eventName": "GetObject"}')  # no secret at all: the bytes as they are
    assert redact.redact_many(raws) == [redact.redact_raw(r) for r in raws]
