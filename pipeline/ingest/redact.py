"""Secrets never reach the lake: tokens and credentials become fingerprints.

A fingerprint (``redacted:sha256:<16 hex>``) still lets an analyst see that two records carried
the same secret, without the secret. Access key ids are kept: CloudTrail logs them everywhere as
identifiers and tenant attribution joins on them; what unlocks them (secret key, session token)
does not survive.

Most records carry no secret at all, so the fast path is a search for a few key names; only a
record that contains one is parsed and walked. Over a chunk of records that search is one RE2 pass
per record in Arrow (``flag_secrets``): a multi-literal DFA reads each byte once, where Python's
``re`` with IGNORECASE costs ~70 us per 1.8 KB record and seven ``bytes.find`` calls ~5 us.

The commonest flagged record is an ``AssumeRole`` whose response carries a session token and a
secret key. Walking its decoded tree in Python costs ~25 us; ``_credentials_only`` instead edits
the two values in the record's own bytes and proves, with one RE2 pass per chunk, that the walk
would have changed nothing else, falling back to the walk whenever it cannot (``redact_many``).
The edited record keeps its original spelling (spaces, escapes) where the walk would re-spell it
as orjson does: the two decode to the same value, and that is what the tests hold it to.

Secrets also hide inside string values: some pipelines deliver ``requestParameters`` as a JSON
string, and free text can quote ``"key": "value"`` pairs. The walk looks inside a string that
holds a quote and a needle (``_redact_string``). Records that are not JSON at all (the
quarantine) only get patterns (``scrub_bytes``), which fingerprint a value as the walk does, so an
analyst can match one secret across the lake and the quarantine.

URLs carry secrets in their query and fragment parameters (an OAuth token, a presigned URL's
signature): every string the walk looks at, every free-text column and the quarantine's bytes
have those fingerprinted by ``urlparams``, which also says what a record holding one looks like
to the pre-filter.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from itertools import accumulate
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.ingest import jsonnum, native, urlparams
from pipeline.ingest.fingerprint import FINGERPRINT_BYTES, fingerprint

# Keys whose values are secrets wherever they appear (compared lower-case), as one word or with
# "_" or "-" between the words (access_token, x-amz-security-token, set-cookie). Every one holds a
# pre-filter needle (_NEEDLES), so a record holding one is always looked at.
_SECRET_KEY_WORDS = (
    ("session", "token"),
    ("secret", "access", "key"),
    ("password",),
    ("new", "password"),
    ("old", "password"),
    ("password", "hash"),
    ("authorization",),
    ("token",),
    ("id", "token"),
    ("access", "token"),
    ("refresh", "token"),
    ("auth", "token"),
    ("client", "secret"),
    ("private", "key"),
    ("secret", "string"),
    ("secret", "binary"),
    ("x", "amz", "security", "token"),
    ("cookie",),
    ("set", "cookie"),
)
SECRET_KEYS = frozenset(sep.join(words) for words in _SECRET_KEY_WORDS for sep in ("", "_", "-"))
# Cheap pre-filter over raw bytes: a record containing none of these, nor a \u escape, nor a URL
# parameter (urlparams.HINT), holds none of the keys above nor a bearer token nor a JWT nor a
# secret in a URL (compared on the lower-cased bytes). "eyj" is how every JWT starts (base64 of
# '{"'), wherever it is, under a secret word or not (a path, a principalId); a \u escape can spell
# a key's letters ("p\u0061ssword") that its bytes do not show. "private" and not "privatekey":
# private_key and private-key hold it too.
_NEEDLES = (
    b"token",
    b"secret",
    b"password",
    b"authorization",
    b"bearer",
    b"private",
    b"cookie",
    b"eyj",
)
# RE2's case folding is Unicode's, a superset of bytes.lower(): it may flag a record for a closer
# look that might_hold_secret then clears, never the other way round.
_NEEDLE_PATTERN = "|".join(n.decode() for n in _NEEDLES) + r"|\\u|" + urlparams.HINT
# The same, for a string value the walk looks into (_redact_string).
_TEXT_NEEDLES = tuple(n.decode() for n in _NEEDLES)
# A token already fingerprinted is not matched again: the quarantine scrubs records the walk has
# redacted (one with no eventTime), and must leave their fingerprints as the walk wrote them.
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+(?!redacted:sha256:)[A-Za-z0-9._~+/=-]{8,}")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
_BYTES_BEARER = re.compile(_BEARER.pattern.encode())
_BYTES_JWT = re.compile(_JWT.pattern.encode())
_FINGERPRINT = FINGERPRINT_BYTES
# Credentials as compact JSON spells them (as CloudTrail and orjson write them). A key starts
# right after "{" or "," (inside a string every quote is escaped, so neither pair occurs there).
_CREDENTIAL_KEYS = (b'"sessionToken":"', b'"secretAccessKey":"')
# What, outside the credentials, sends a record to the walk: any secret key, whatever the spaces
# before its colon (RE2's case folding is a superset of str.lower()'s on ASCII); text
# _scrub_tokens might rewrite (a scheme, a JWT, a URL parameter); any \u escape, the one way a
# key or value can spell letters its bytes do not show ("\u0074oken" is a token key once
# decoded); and any escaped quote: only a string holding a quote can be one _redact_string
# rewrites (a JSON request, "key": "value" text), and \" is how JSON spells that quote (\u0022 is
# caught as a \u). One RE2 pass does it all: bytes.find costs more per literal than RE2 for the
# lot.
_SECRET_KEY_BYTES = tuple(k.encode() for k in sorted(SECRET_KEYS))
_DOUBT_PATTERN = (
    '(?i:"(?:'
    + "|".join(re.escape(k) for k in sorted(SECRET_KEYS))
    + r')"[ \t\n\r]*:)|(?i:earer|asic)|eyJ|\\[u"]|'
    + urlparams.HINT
)


def _spelled(key: str) -> bytes:
    """A pattern for ``key`` as JSON may spell it: each character itself or its \\u escape,
    behind any run of backslashes (a string inside a string escapes its escapes)."""
    out = []
    for c in key:
        escapes = (rb"\\+u00%02x" % ord(x) for x in sorted({c.lower(), c.upper()}))
        out.append(b"(?:" + re.escape(c).encode() + b"|" + b"|".join(escapes) + b")")
    return b"".join(out)


# A secret key and the opening quote of its string value, in text that is not (or no longer) a
# JSON document: in any letter case, letters maybe escaped, and at any depth of nesting, the
# quotes of key and value escaped by the same run of backslashes (group 1, the whole run: trying
# it from inside a run would cost time quadratic in its length). Where the value ends is
# _value_end's to say: no regex can count the backslash runs. Compiled on first use: spelling
# every key with escapes makes a pattern of some 13 KB, ~60 ms to compile, which most processes
# (and a Lambda's cold start) never need.
_SPACE = rb"(?:\s|\\+[nrt])*"


@functools.cache
def _pair() -> re.Pattern[bytes]:
    return re.compile(
        rb'(?i)(?<!\\)(\\*)"(?:'
        + b"|".join(_spelled(k) for k in sorted(SECRET_KEYS))
        + rb')\1"'
        + _SPACE
        + b":"
        + _SPACE
        + rb'\1"'
    )


def might_hold_secret(raw: bytes) -> bool:
    low = raw.lower()
    return any(n in low for n in _NEEDLES) or b"\\u" in raw or _url_param(raw)


def _url_param(raw: bytes) -> bool:
    """Might ``raw`` hold a URL parameter (urlparams.HINT)? Every one has an "=": most records
    have none, and ``in`` costs less than a search."""
    return b"=" in raw and urlparams.holds_param(raw)


def flag_secrets(raw: pa.Array) -> pa.Array:
    """Per record of a string column: might it hold a secret (might_hold_secret, vectorised)."""
    return pc.match_substring_regex(raw, _NEEDLE_PATTERN, ignore_case=True)


def _scrub_tokens(value: str) -> str:
    """Secret URL parameters (``urlparams``), then Bearer and Basic credentials (the scheme in any
    letter case, as HTTP allows) and JWTs."""
    value = urlparams.scrub_text(value)
    if "eyJ" in value or "earer" in (low := value.lower()) or "asic" in low:
        value = _BEARER.sub(lambda m: f"{m.group(1)} {fingerprint(m.group(0))}", value)
        value = _JWT.sub(lambda m: fingerprint(m.group(0)), value)
    return value


# The normalized columns that copy free text out of a record (a path with its query, an
# authorizer's reason, a principalId, a User-Agent): a JWT, a bearer token or a URL with a secret
# parameter can sit in any of them, as in the raw text.
FREE_TEXT_COLUMNS = ("action", "actor_principal", "resource", "error_code", "user_agent")
# What _scrub_tokens can rewrite, and more (any case).
_SCHEME_OR_JWT = r"(?:bearer|basic)\s|eyj|" + urlparams.HINT + "|" + urlparams.ESCAPED_HINT


def scrub_token_columns(cols: dict[str, pa.Array], where: pa.Array | None = None) -> None:
    """``_scrub_tokens`` over ``cols``' free-text columns, in place, so a column holds the
    fingerprint the raw text holds, never the token: in the rows ``where`` says (a boolean mask,
    the records the needles flagged; a column's token is in its record's text too), or in all."""
    rows = None
    if where is not None:
        rows = pc.indices_nonzero(where)
        if not len(rows):
            return
    for name in FREE_TEXT_COLUMNS:
        values = cols[name]
        some = values if rows is None else values.take(rows)
        hint = pc.fill_null(pc.match_substring_regex(some, _SCHEME_OR_JWT, ignore_case=True), False)
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
        out: dict[str, Any] = {}
        for key, value in obj.items():
            if isinstance(key, str) and key.lower() in SECRET_KEYS and value not in (None, ""):
                out[key] = fingerprint(
                    value if isinstance(value, str) else orjson.dumps(value, option=0)
                )
            else:
                out[key] = redact(value)
        return out
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    if isinstance(obj, str):
        return _redact_string(obj)
    return obj


def _redact_string(value: str) -> str:
    """A string value with its secrets fingerprinted. One that holds a quote and a needle (or a
    \\u escape) may hold secret keys: a JSON object or array (a request delivered as a JSON
    string) is redacted as a record is and, when that changed it, re-serialised by orjson, so its
    spelling (spaces, escapes) may change; other text has its secret pairs scrubbed by pattern
    (``_scrub_pairs``). Then bearer tokens and JWTs."""
    if '"' in value and ("\\u" in value or any(n in value.lower() for n in _TEXT_NEEDLES)):
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
    if not might_hold_secret(raw):
        return raw
    try:
        return orjson.dumps(redact(jsonnum.loads(raw)))
    except (orjson.JSONDecodeError, orjson.JSONEncodeError, RecursionError):
        return scrub_bytes(raw)


def redact_many(raws: Sequence[bytes]) -> list[bytes]:
    """``redact_raw`` of each record (JSON, as every record that reaches here has been parsed),
    faster for AssumeRole credentials: the result decodes to the same value.

    A record whose only secrets are sessionToken / secretAccessKey strings has them replaced in
    its own bytes, with no parse and no re-serialisation (``_credential_spans`` finds them and
    proves nothing else would change; the compiled module does the same search, ``native``);
    the rest take ``redact_raw``. (Bytes that are not JSON lose their secrets too, though not
    always as ``redact_raw``'s.)
    """
    raws = list(raws)
    found = native.credential_spans(raws, _CREDENTIAL_KEYS, _SECRET_KEY_BYTES)
    if found is None:
        found = _credential_spans(raws)
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


def _credential_spans(raws: list[bytes]) -> list[tuple[int, ...] | None]:
    """Per record: where its sessionToken / secretAccessKey string values are (start, end, ...,
    between their quotes), or None when the walk must take it: no such values, a record that is
    not ASCII or not JSON, or anything outside them the walk might change (the doubt pattern;
    one RE2 pass over all records at once, since a Python search per record and key costs as
    much as the walk it saves). The reference for ``_credentials.c``."""
    out: list[tuple[int, ...] | None] = [None] * len(raws)
    found: list[tuple[int, tuple[int, ...], bytes]] = []  # (index, spans, the bytes outside)
    for i, raw in enumerate(raws):
        # No might_hold_secret first: a record with a credential holds a secret, and redact_raw
        # asks it of the others.
        located = _credentials_only(raw)
        if located is not None:
            found.append((i, *located))
    if found:
        outside = _binary([f[2] for f in found])
        doubt = pc.match_substring_regex(outside, _DOUBT_PATTERN)
        for (i, spans, _), walk in zip(found, doubt.to_pylist(), strict=True):
            out[i] = None if walk else spans
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
                # outside, where the doubt pattern sends the record to the walk.
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
    return tuple(x for _, start, end in spans for x in (start, end)), b"\x00".join(rest)


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
    secret keys (``_scrub_pairs``), then bearer tokens and JWTs, fingerprinted by pattern as the
    walk would (``might_hold_secret`` looks for \\u escapes and JWTs too). Scrubbing twice
    changes nothing, as a record the walk redacted may come here."""
    if not might_hold_secret(raw):
        return raw
    raw = urlparams.scrub_bytes(_scrub_pairs(raw))
    raw = _BYTES_BEARER.sub(lambda m: m.group(1) + b" " + fingerprint(m.group(0)).encode(), raw)
    return _BYTES_JWT.sub(lambda m: fingerprint(m.group(0)).encode(), raw)


def scrub_text(text: str) -> str:
    """``scrub_bytes`` for text: a quarantine entry's detail, which may quote its record."""
    return scrub_bytes(text.encode("utf-8", "surrogatepass")).decode("utf-8", "surrogatepass")


def _scrub_pairs(data: bytes) -> bytes:
    """``data`` with the string value of every secret key ``_pair`` finds fingerprinted: to the
    end of the text when the value does not end (a truncated line keeps no part of it)."""
    out: list[bytes] = []
    pos = 0
    pair = _pair()
    while (m := pair.search(data, pos)) is not None:
        escape, start = len(m.group(1)), m.end()
        end = _value_end(data, start, escape)
        body = data[start : len(data) if end is None else end]
        out += (data[pos:start], _fingerprint_found(body, escape, end is not None))
        pos = start + len(body)
    out.append(data[pos:])
    return b"".join(out)


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
    """The fingerprint a value found by pattern gets: the walk's, of its text decoded once per
    level of nesting (``escape`` backslashes: 0 once, 1 twice, 3 three times); of its bytes when
    it does not end or does not decode. An empty value, or one that already is a fingerprint,
    stays as it is."""
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
