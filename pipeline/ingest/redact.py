"""Secrets never reach the lake: tokens and credentials become fingerprints.

A fingerprint (``redacted:sha256:<16 hex>``) still lets an analyst see that two records carried
the same secret, without the secret. Access key ids are kept: CloudTrail logs them everywhere as
identifiers and tenant attribution joins on them; what unlocks them (secret key, session token)
does not survive.

What is a secret: a value under a secret key (``secretkeys``: ``password``, ``x-api-key``,
``client_secret``, ``Cookie``...), a URL's secret parameters and password (``urlparams``; also
parameters logged as an object or a bare query string under a query key), and text of a
secret's shape wherever it is (``shapes``: Bearer credentials, JWTs, PEM private keys, AWS
secret keys, header lines).

Most records carry no secret at all, so only a record the pre-filter flags (``prefilter``) is
decoded and redacted value by value (``redact_raw``: the full redaction). The commonest flagged
record is an ``AssumeRole`` whose response carries a session token and a secret key. Redacting its
decoded tree in Python costs ~25 us; ``_credentials_only`` instead edits the two values in the
record's own bytes and proves, with one RE2 pass per chunk, that the full redaction would have
changed nothing else, falling back to it whenever it cannot (``redact_many``). The edited record
keeps its original spelling (spaces, escapes) where the full redaction would re-spell it as orjson
does: the two decode to the same value, and that is what the tests hold it to.

Secrets also hide inside string values: some pipelines deliver ``requestParameters`` as a JSON
string, and free text can quote ``"key": "value"`` pairs. The full redaction looks inside a string
that holds a quote and that the pre-filter flags (``_redact_string``). Records that are not JSON at
all (the quarantine) only get patterns (``scrub_bytes``), which fingerprint a value as the full
redaction does, so an analyst can match one secret across the lake and the quarantine.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from itertools import accumulate
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.ingest import jsonnum, native, prefilter, secretkeys, shapes, urlparams
from pipeline.ingest.fingerprint import FINGERPRINT_BYTES, fingerprint
from pipeline.ingest.secretkeys import SEP, Kind

_FINGERPRINT = FINGERPRINT_BYTES
# Credentials as compact JSON spells them (as CloudTrail and orjson write them). A key starts
# right after "{" or "," (inside a string every quote is escaped, so neither pair occurs there).
_CREDENTIAL_KEYS = (b'"sessionToken":"', b'"secretAccessKey":"')
# What, outside the credentials, sends a record to the full redaction (a superset of what it
# would change; RE2's case folding is a superset of str.lower()'s on ASCII, and the records here
# are ASCII):
# - a key (quoted text, white space, a colon) holding a word of a secret key or a query key;
#   "credential", and "access" then "key" not followed by "id", only where the value does not
#   open an object (AssumeRole's "credentials" holds the key id and the two values edited here;
#   RE2 has no lookahead: "not followed by id" is spelled out, the key ending after "key" or
#   after an "i", or going on with neither "i" nor "id");
# - a header line or a setting whose name holds such a word ("x-api-key: ...", shapes._HEADER_NAME;
#   "Password=...", shapes._SETTING);
# - text _scrub_tokens might rewrite (a scheme, a JWT, a URL parameter or password, a PEM
#   block, a string of 40 base64 characters);
# - any \u escape, the one way a key or value can spell letters its bytes do not show
#   ("\u0074oken" is a token key once decoded), and any escaped quote: only a string holding a
#   quote can be one _redact_string rewrites (a JSON request, "key": "value" text), and \" is
#   how JSON spells that quote (\u0022 is caught as a \u).
# One RE2 pass does it all. _credentials.c (with _secrets.c's words) is the same in C.
_WS = r"[ \t\n\r]*"
_STRONG_KEY_WORD = (
    "(?i:token|secret|pass|pwd|authorization|private|cookie|api"
    + SEP
    + "key|query"
    + SEP
    + "(?:string|param))"
)
_WEAK_KEY_WORD = "(?i:credential|access" + SEP + "key" + SEP + '(?:[^-_. i"]|i[^d"]))'
_WEAK_KEY_END = "(?i:access" + SEP + "key" + SEP + "i?)"
_NOT_AN_OBJECT = _WS + ":" + _WS + "[^{ \t\n\r]"
_HEADER_WORD = (
    r"(?i:token|secret|pass|pwd|authorization|cookie|private|credential|api[-_]*key|"
    r"access[-_]*key)[\w-]*:[ \t]"
)
_DOUBT_PATTERN = "|".join(
    [
        '"[^"]*' + _STRONG_KEY_WORD + '[^"]*"' + _WS + ":",
        '"[^"]*' + _WEAK_KEY_WORD + '[^"]*"' + _NOT_AN_OBJECT,
        '"[^"]*' + _WEAK_KEY_END + '"' + _NOT_AN_OBJECT,
        _HEADER_WORD,
        shapes.SETTING_WORD,
        r"(?i:earer|asic)|eyJ|\\[u\"]",
        urlparams.HINT,
        urlparams.USERINFO_HINT,
        "-----BEGIN",
        '"(?:[A-Za-z0-9+/]|\\\\/){40}"',
    ]
)
# A key and the opening quote of its string value, in text that is not (or no longer) a JSON
# document: in any letter case, letters maybe \u-escaped, at any depth of nesting, the quotes of
# key and value escaped by the same run of backslashes (group 1, the whole run: trying it from
# inside a run would cost time quadratic in its length). Whether the key is a secret's is
# secretkeys.kind's to say, of its decoded text; where the value ends is _value_end's (no regex
# can count the backslash runs).
_SPACE = rb"(?:\s|\\+[nrt])*"
_PAIR = re.compile(
    rb'(?<!\\)(\\*)"((?:[^"\\]|\\+u[0-9a-fA-F]{4})+)\1"'
    + _SPACE
    + b":"
    + _SPACE
    + rb'(?:\1"|([\[{]))'
)
# In a list or object whose text _container_values reads: a quote (with the backslashes before
# it) or a bracket.
_QUOTE_OR_BRACKET = re.compile(rb'(\\*)"|[\[\]{}]')
_COLON_AFTER = re.compile(_SPACE + b":")
_KEY_ESCAPE = re.compile(rb"\\+u([0-9a-fA-F]{4})")
# AssumeRoleWithWebIdentity's response names the token's subject (a repository, a user): no
# secret, and as CloudTrail spells it no doubt (secretkeys.PLAIN_WORDS has it too).
_WEB_IDENTITY_SUBJECT = b'"subjectFromWebIdentityToken":'


def _scrub_tokens(value: str) -> str:
    """Settings of secret keys (``Password=...;``), secret URL parameters and passwords
    (``urlparams``), then secrets of a known shape (``shapes``)."""
    return shapes.scrub_text(urlparams.scrub_text(shapes.scrub_settings(value)))


# The normalized columns that copy free text out of a record (a path with its query, an
# authorizer's reason, a principalId, a User-Agent): a JWT, a bearer token or a URL with a secret
# parameter can sit in any of them, as in the raw text.
FREE_TEXT_COLUMNS = ("action", "actor_principal", "resource", "error_code", "user_agent")
# What _scrub_tokens can rewrite, and more (any case).
_COLUMN_HINT = "|".join(
    [
        r"(?:bearer|basic)\s|eyj|private key|^[A-Za-z0-9+/]{40}$",
        urlparams.HINT,
        urlparams.ESCAPED_HINT,
        urlparams.USERINFO_HINT,
        _HEADER_WORD,
        shapes.SETTING_WORD,
    ]
)


def scrub_token_columns(cols: dict[str, pa.Array], where: pa.Array | None = None) -> None:
    """``_scrub_tokens`` over ``cols``' free-text columns, in place, so a column holds the
    fingerprint the raw text holds, never the token: in the rows ``where`` says (a boolean mask,
    the records the pre-filter flagged; a column's token is in its record's text too), or in
    all."""
    rows = None
    if where is not None:
        rows = pc.indices_nonzero(where)
        if not len(rows):
            return
    for name in FREE_TEXT_COLUMNS:
        values = cols[name]
        some = values if rows is None else values.take(rows)
        hint = pc.fill_null(pc.match_substring_regex(some, _COLUMN_HINT, ignore_case=True), False)
        if not pc.any(hint).as_py():
            continue
        hit = pc.indices_nonzero(hint) if rows is None else rows.filter(hint)
        scrubbed = [_scrub_tokens(v) for v in values.take(hit).to_pylist()]
        mask = np.zeros(len(values), np.bool_)
        mask[hit.to_numpy()] = True
        cols[name] = pc.replace_with_mask(values, pa.array(mask), pa.array(scrubbed, values.type))


def redact(obj: Any) -> Any:
    """A copy of a decoded JSON value with secrets replaced by fingerprints."""
    if isinstance(obj, dict):
        return {key: _member(key, value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    if isinstance(obj, str):
        return _redact_string(obj)
    return obj


def _member(key: str, value: Any) -> Any:
    """A member's value, redacted as its key says (``secretkeys.kind``)."""
    kind = secretkeys.kind(key)
    if kind is None or value is None or value == "":
        return redact(value)
    if kind is Kind.STRONG:
        return fingerprint(value if isinstance(value, str) else orjson.dumps(value, option=0))
    if kind is Kind.WEAK:
        return _weak(value)
    return _query(value)


def _weak(value: Any) -> Any:
    """Under a WEAK key: strings are secrets, except access key ids; objects are searched key by
    key."""
    if isinstance(value, str):
        if not value or urlparams.ACCESS_KEY_ID.match(value):
            return value
        return fingerprint(value)
    if isinstance(value, list):
        return [_weak(v) for v in value]
    return redact(value)


def _query(value: Any) -> Any:
    """Under a QUERY key: a query string without its "?", or parameters as an object (of
    values or, as API Gateway logs multi-value parameters, of lists of values)."""
    if isinstance(value, str):
        return _redact_string(urlparams.scrub_query(value))
    if isinstance(value, list):
        return [_query(v) for v in value]
    if isinstance(value, dict):
        return {name: _param(name, v) for name, v in value.items()}
    return value


def _param(name: str, value: Any) -> Any:
    if secretkeys.kind(name) is not None:
        return _member(name, value)
    if isinstance(value, str):
        return fingerprint(value) if urlparams.secret_param(name, value) else _redact_string(value)
    if isinstance(value, list):
        return [_param(name, v) for v in value]
    return redact(value)


def _redact_string(value: str) -> str:
    """A string value with its secrets fingerprinted. One that holds a quote and that the
    pre-filter flags may hold secret keys: a JSON object or array (a request delivered as a JSON
    string) is redacted as a record is and, when that changed it, re-serialised by orjson, so its
    spelling (spaces, escapes) may change; other text has its secret pairs scrubbed by pattern
    (``_scrub_pairs``). Then URL secrets and secrets of a known shape (``_scrub_tokens``)."""
    if '"' in value and prefilter.flagged(value.encode("utf-8", "surrogatepass")):
        nested = _json_container(value)
        if nested is not None:
            redacted = redact(nested)
            return value if redacted == nested else orjson.dumps(redacted).decode()
        text = value.encode("utf-8", "surrogatepass")
        value = _scrub_pairs(text).decode("utf-8", "surrogatepass")
    return _scrub_tokens(value)


def _json_container(value: str) -> Any:
    """The object or array ``value`` spells as JSON, or None."""
    if value.lstrip()[:1] not in ("{", "["):
        return None
    try:
        return jsonnum.loads(value)
    except orjson.JSONDecodeError:
        return None


def redact_raw(raw: bytes) -> bytes:
    """Redacted JSON bytes for one record (unchanged bytes when no secret can be in it)."""
    if not prefilter.flagged(raw):
        return raw
    try:
        return orjson.dumps(redact(jsonnum.loads(raw)))
    except (orjson.JSONDecodeError, orjson.JSONEncodeError, RecursionError):
        return scrub_bytes(raw)


def redact_many(raws: Sequence[bytes]) -> list[bytes]:
    """``redact_raw`` of each record (JSON, as every record that reaches here has been parsed),
    faster for AssumeRole credentials: the result decodes to the same value.

    A record whose only secrets are sessionToken / secretAccessKey strings has them replaced in
    its own bytes, with no parse and no re-serialisation (``credential_spans`` finds them and
    proves nothing else would change; the compiled module does the same search, ``native``);
    the rest take ``redact_raw``. (Bytes that are not JSON lose their secrets too, though not
    always as ``redact_raw``'s.)
    """
    raws = list(raws)
    found = native.credential_spans(raws, _CREDENTIAL_KEYS)
    if found is None:
        found = credential_spans(raws)
    return [
        redact_raw(raw) if spans is None else _fingerprinted(raw, spans)
        for raw, spans in zip(raws, found, strict=True)
    ]


def _fingerprinted(raw: bytes, spans: tuple[int, ...]) -> bytes:
    """``raw`` with the string values at ``spans`` (start, end, start, end, ...) fingerprinted."""
    out: list[bytes] = []
    pos = 0
    for start, end in zip(spans[::2], spans[1::2], strict=True):
        out += (raw[pos:start], _fingerprint_json_string(raw[start:end]))
        pos = end
    out.append(raw[pos:])
    return b"".join(out)


def credential_spans(raws: list[bytes]) -> list[tuple[int, ...] | None]:
    """Per record: where its sessionToken / secretAccessKey string values are (start, end, ...,
    between their quotes), or None when the full redaction must take it: no such values, a record
    that is not ASCII or not JSON, or anything outside them the full redaction might change (the
    doubt pattern; one RE2 pass over all records at once, since a Python search per record and key
    costs as much as the full redaction it saves). The reference for ``_credentials.c``."""
    out: list[tuple[int, ...] | None] = [None] * len(raws)
    found: list[tuple[int, tuple[int, ...], bytes]] = []  # (index, spans, the bytes outside)
    for i, raw in enumerate(raws):
        # No pre-filter first: a record with a credential holds a secret, and redact_raw asks
        # it of the others.
        located = _credentials_only(raw)
        if located is not None:
            found.append((i, *located))
    if found:
        outside = _binary([f[2] for f in found])
        doubt = pc.match_substring_regex(outside, _DOUBT_PATTERN)
        for (i, spans, _), doubtful in zip(found, doubt.to_pylist(), strict=True):
            out[i] = None if doubtful else spans
    return out


def _binary(parts: list[bytes]) -> pa.Array:
    """A binary array over the parts laid end to end: ``pa.array`` on a list of kilobyte-long
    bytes costs several microseconds a part, this one join."""
    offsets = pa.array(accumulate(map(len, parts), initial=0), pa.int64())
    data = pa.py_buffer(b"".join(parts))
    return pa.Array.from_buffers(pa.large_binary(), len(parts), [None, offsets.buffers()[1], data])


def _credentials_only(raw: bytes) -> tuple[tuple[int, ...], bytes] | None:
    """The spans of ``raw``'s sessionToken / secretAccessKey string values (start, end, ...), and
    the bytes outside those keys and values (for the doubt pattern); None when there are none,
    when a value does not end (not JSON), or when the record is not ASCII (str.lower() folds
    some non-ASCII letters onto ASCII key letters)."""
    if not raw.isascii():
        return None
    spans: list[tuple[int, int, int]] = []  # (where the key starts, its value starts, ends)
    try:
        for key in _CREDENTIAL_KEYS:
            at = raw.find(key)
            while at > 0:
                start = at + len(key)
                end = _string_end(raw, start)
                # Only a key that opens or follows a member; any other stays in the bytes
                # outside, where the doubt pattern sends the record to the full redaction.
                if raw[at - 1] in b"{,":
                    spans.append((at, start, end))
                at = raw.find(key, end)
    except ValueError:  # a string that does not end: not JSON
        return None
    if not spans:
        return None
    spans.sort()
    rest: list[bytes] = []
    pos = 0
    for key_start, _, end in spans:
        rest.append(raw[pos:key_start])
        pos = end
    rest.append(raw[pos:])
    outside = b"\x00".join(rest).replace(_WEB_IDENTITY_SUBJECT, b'"":')
    return tuple(x for _, start, end in spans for x in (start, end)), outside


def _string_end(raw: bytes, start: int) -> int:
    """Where the JSON string whose text starts at ``start`` ends: the first quote not escaped by
    an odd run of backslashes (ValueError when there is none)."""
    end = raw.index(b'"', start)
    while raw[end - 1] == 0x5C:  # a backslash: count the run
        back = end - 1
        while raw[back - 1] == 0x5C:
            back -= 1
        if (end - back) % 2 == 0:
            break
        end = raw.index(b'"', end + 1)
    return end


def _fingerprint_json_string(body: bytes) -> bytes:
    """The fingerprint of a JSON string literal's decoded text, given the bytes between its
    quotes; an empty string stays empty, as in ``redact``."""
    if not body:
        return body
    text = orjson.loads(b'"' + body + b'"') if b"\\" in body else body.decode("ascii")
    return fingerprint(text).encode()


def scrub_bytes(raw: bytes) -> bytes:
    """Best effort for bytes that may not be JSON (quarantined records): the string values of
    secret keys (``_scrub_pairs``), URL secrets, then secrets of a known shape, fingerprinted by
    pattern as the full redaction would. Scrubbing twice changes nothing, as a record the full
    redaction redacted may come here."""
    if not prefilter.flagged(raw):
        return raw
    raw = shapes.scrub_settings_bytes(_scrub_pairs(raw))
    return shapes.scrub_bytes(urlparams.scrub_bytes(raw))


def scrub_text(text: str) -> str:
    """``scrub_bytes`` for text: a quarantine entry's detail, which may quote its record."""
    return scrub_bytes(text.encode("utf-8", "surrogatepass")).decode("utf-8", "surrogatepass")


def _scrub_pairs(data: bytes) -> bytes:
    """``data`` with the string value of every key ``_PAIR`` finds that holds a secret
    fingerprinted (to the end of the text when the value does not end: a truncated line keeps
    no part of it), and the parameters of every query key's string value scrubbed."""
    out: list[bytes] = []
    pos = at = 0
    while (m := _PAIR.search(data, at)) is not None:
        escape, start = len(m.group(1)), m.end()
        # The next key may start at this value's opening quote ("a": "b": "c" is no JSON, but
        # text): search on from there.
        at = start - escape - 1
        kind = secretkeys.kind(_key_text(m.group(2)))
        if kind is None:
            continue
        if m.group(3) is not None:
            at = start
            if kind is Kind.WEAK and m.group(3) == b"{":
                continue  # key by key, as the full redaction does: the search goes on inside
            found, stop = _scrub_container(data, start, escape, kind)
            out += (data[pos:start], found)
            pos = at = stop
            continue
        end = _value_end(data, start, escape)
        body = data[start : len(data) if end is None else end]
        if kind is Kind.QUERY:
            found = urlparams.scrub_bytes(b"?" + body)[1:]
        elif kind is Kind.WEAK and urlparams.ACCESS_KEY_ID.match(body.decode("latin-1")):
            continue
        else:
            found = _fingerprint_found(body, escape, end is not None)
        out += (data[pos:start], found)
        pos = at = start + len(body)
    out.append(data[pos:])
    return b"".join(out)


def _scrub_container(data: bytes, start: int, escape: int, kind: Kind) -> tuple[bytes, int]:
    """The list or object whose text starts at ``start`` (after its bracket) under a secret or query
    key, with the string values the full redaction would not leave fingerprinted, and where it ends
    (the end of the text when it does not). The full redaction fingerprints a STRONG key's list or
    object whole, as orjson spells it; bytes spelled otherwise cannot give that fingerprint, so here
    each string in it gets its own: the secret is gone either way."""
    out: list[bytes] = []
    pos = start
    for body_start, body_end, name in _container_values(data, start, escape):
        body = data[body_start:body_end]
        text = shapes.decoded_once(body)
        if kind is Kind.QUERY:
            named = secretkeys.kind(name) is not None
            if not (named or urlparams.secret_param(name, text)):
                continue
        if kind is not Kind.STRONG and urlparams.ACCESS_KEY_ID.match(text):
            continue
        out += (data[pos:body_start], _fingerprint_found(body, escape, body_end < len(data)))
        pos = body_end
    stop = _container_end(data, start, escape)
    out.append(data[pos:stop])
    return b"".join(out), stop


def _container_values(data: bytes, start: int, escape: int) -> Iterator[tuple[int, int, str]]:
    """(start, end, key) of each string value (not a key) of the list or object whose text
    starts at ``start``, at any depth inside it; key is the last key read before it ("" in a
    list of the top). A value that does not end runs to the end of the text."""
    depth, at, name = 1, start, ""
    while depth and (m := _QUOTE_OR_BRACKET.search(data, at)) is not None:
        if m.group(1) is None:
            depth += 1 if data[m.start()] in b"[{" else -1
            at = m.end()
            continue
        if len(m.group(1)) != escape:  # a quote of a deeper string: no value of this level
            at = m.end()
            continue
        end = _value_end(data, m.end(), escape)
        stop = len(data) if end is None else end
        after = stop + escape + 1
        if _COLON_AFTER.match(data, after):
            name = _key_text(data[m.end() : stop])
        else:
            yield m.end(), stop, name
        if end is None:
            return
        at = after


def _container_end(data: bytes, start: int, escape: int) -> int:
    """Where the list or object whose text starts at ``start`` ends (after its closing
    bracket), or the end of the text."""
    depth, at = 1, start
    while depth and (m := _QUOTE_OR_BRACKET.search(data, at)) is not None:
        if m.group(1) is None:
            depth += 1 if data[m.start()] in b"[{" else -1
            at = m.end()
        elif len(m.group(1)) == escape:
            end = _value_end(data, m.end(), escape)
            if end is None:
                return len(data)
            at = end + escape + 1
        else:
            at = m.end()
    return at if not depth else len(data)


def _key_text(spelled: bytes) -> str:
    """A key's text as _PAIR found it, its \\u escapes (at any depth) undone."""
    text = _KEY_ESCAPE.sub(
        lambda m: chr(int(m.group(1), 16)).encode("utf-8", "surrogatepass"), spelled
    )
    # Bytes that are no UTF-8 (a quarantined line may hold any) spell no ASCII letter of a word.
    return text.decode("utf-8", "replace")


def _value_end(data: bytes, start: int, escape: int) -> int | None:
    """Where the string value whose text starts at ``start`` ends, its quotes escaped by
    ``escape`` backslashes (0 at the top level, 1 in a string, 3 in a string in a string): before
    the first quote that is not escaped at every level of nesting, i.e. whose run of r
    backslashes is not r % (2·escape + 2) == 2·escape + 1, and before the ``escape`` backslashes
    that belong to that quote. None when there is no such quote."""
    at = data.find(b'"', start)
    while at >= 0:
        back = at
        while back > start and data[back - 1] == 0x5C:  # a backslash
            back -= 1
        run = at - back
        if run % (2 * escape + 2) != 2 * escape + 1:
            return at - min(run, escape)
        at = data.find(b'"', at + 1)
    return None


def _fingerprint_found(body: bytes, escape: int, ended: bool) -> bytes:
    """The fingerprint a value found by pattern gets: the full redaction's, of its text decoded once
    per level of nesting (``escape`` backslashes: 0 once, 1 twice, 3 three times); of its bytes when
    it does not end or does not decode. An empty value, or one that already is a fingerprint, stays
    as it is."""
    if not body or _FINGERPRINT.fullmatch(body):
        return body
    secret = body
    if ended:
        try:
            for _ in range((escape + 1).bit_length()):
                secret = orjson.loads(b'"' + secret + b'"').encode()
        except orjson.JSONDecodeError:
            secret = body
    return fingerprint(secret).encode()
