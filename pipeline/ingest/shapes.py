"""Secrets known by their shape, wherever they are in a text.

- a ``Bearer`` or ``Basic`` credential (the scheme in any letter case, as HTTP allows): the scheme
  stays, the fingerprint is that of scheme and credential together;
- a JWT (``eyJ`` and three dot-separated base64url parts);
- the body of a PEM private key (``-----BEGIN RSA PRIVATE KEY-----`` ... ``-----END ...``): the
  markers stay, so a reader sees what was there;
- a string that is, whole, an AWS secret access key: 40 characters of base64 with upper- and
  lower-case letters and digits that read as random (``urlparams.looks_random``), as no id or
  hash spelled in hex does;
- a setting whose name is a secret key, as connection strings and configuration text spell
  them (``Server=db;User Id=app;Password=...;``, ``Pwd = ...``, ``db.password=...``): the value,
  to a ";", "&", quote, backslash or the end of the line (``scrub_settings``, which the redactor
  runs before ``urlparams``: a password may hold a space, which ends a URL parameter's value);
- an HTTP header line whose name is a secret key (``Authorization: Token ...``,
  ``x-api-key: ...``, ``Cookie: ...`` in an error message or a curl command line): the value,
  to the end of the line.

A value already fingerprinted is not matched again, so scrubbing twice changes nothing (the
quarantine scrubs records the full redaction has redacted). ``scrub_text`` and ``scrub_settings``
work on decoded text (the strings of a decoded record, the normalized columns), ``scrub_bytes`` and
``scrub_settings_bytes`` on bytes that may not be JSON (the
quarantine), where a value is fingerprinted as its text decoded once: the same fingerprint as
the full redaction (``redact.redact_raw``) gives it.
"""

from __future__ import annotations

import re

import orjson

from pipeline.ingest import secretkeys
from pipeline.ingest.fingerprint import FINGERPRINT, FINGERPRINT_BYTES, fingerprint
from pipeline.ingest.urlparams import looks_random

_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+(?!redacted:sha256:)[A-Za-z0-9._~+/=-]{8,}")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
_BYTES_BEARER = re.compile(_BEARER.pattern.encode())
_BYTES_JWT = re.compile(_JWT.pattern.encode())
_PEM_BEGIN = r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
_PEM_END = r"-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
# The body runs to the end marker, or to the end of the text when it was cut short.
_PEM = re.compile(f"({_PEM_BEGIN})(.*?)(?={_PEM_END}|\\Z)", re.S)
# In bytes the body also ends at a quote no backslash escapes (the end of its JSON string).
_BYTES_PEM = re.compile(f'({_PEM_BEGIN})((?:[^"\\\\]|\\\\.)*?)(?={_PEM_END}|"|\\Z)'.encode(), re.S)
AWS_SECRET_KEY = re.compile(r"[A-Za-z0-9+/]{40}")
_UPPER, _LOWER, _DIGIT = re.compile("[A-Z]"), re.compile("[a-z]"), re.compile("[0-9]")
# As a JSON string in bytes (slashes maybe escaped), its opening quote not escaped.
_BYTES_AWS_SECRET_KEY = re.compile(rb'(?<!\\)((?:\\\\)*")((?:[A-Za-z0-9+/]|\\/){40})"')
# A header line: a name, ":" and white space (none in an ARN's "secret:prod/db"), and a value
# to the end of the line, a quote or a backslash (where a header quoted in JSON text ends).
_HEADER_NAME = re.compile(r"(?<![\w:/-])([A-Za-z][\w-]*):[ \t]+(?=[^\s\"\\])")
_HEADER_VALUE = re.compile(r"[^\r\n\"\\]*")
_BYTES_HEADER_NAME = re.compile(_HEADER_NAME.pattern.encode())
_BYTES_HEADER_VALUE = re.compile(_HEADER_VALUE.pattern.encode())
# What a header name must hold to be a secret key (a cheap test before the search).
_HEADER_WORDS = re.compile(
    "(?i)(?:token|secret|pass|pwd|authorization|cookie|credential|private|api"
    + secretkeys.SEP
    + "key|access"
    + secretkeys.SEP
    + r"key)[\w-]*:"
)


# A setting: a name (not the tail of a longer name, nor a URL parameter's: urlparams judges
# those), "=" maybe between blanks, and its value without the blanks that end it (none of it a
# fingerprint already). Settings are scrubbed before URL parameters: a password may hold
# spaces, which end a parameter's value.
_SETTING = re.compile(
    r"(?<![\w.?#&-])([A-Za-z][\w.-]*)[ \t]*=[ \t]*([^;&\"\\\r\n]*?)[ \t]*(?=[;&\"\\\r\n]|\Z)"
)
_BYTES_SETTING = re.compile(_SETTING.pattern.encode())
# What a setting's name must hold to be a secret key's, to its "=" (a cheap test before the
# search; redact's doubt pattern asks it too): every STRONG word holds one of these.
SETTING_WORD = r"(?i:token|secret|pass|pwd|authorization|cookie|private|api[-_.]*key)[\w.-]*[ \t]*="
_SETTING_WORDS = re.compile(SETTING_WORD)


def is_aws_secret_key(value: str) -> bool:
    """Is ``value``, whole, shaped as an AWS secret access key?"""
    return (
        len(value) == 40
        and AWS_SECRET_KEY.fullmatch(value) is not None
        and all(p.search(value) for p in (_UPPER, _LOWER, _DIGIT))
        and looks_random(value)
    )


def scrub_text(value: str) -> str:
    """``value`` with every secret of a shape above fingerprinted."""
    if is_aws_secret_key(value):
        return fingerprint(value)
    if "eyJ" in value or "earer" in (low := value.lower()) or "asic" in low:
        value = _BEARER.sub(lambda m: f"{m.group(1)} {fingerprint(m.group(0))}", value)
        value = _JWT.sub(lambda m: fingerprint(m.group(0)), value)
    if "PRIVATE KEY" in value:
        value = _PEM.sub(_pem, value)
    # A header's colon is followed by a blank; an ARN's, a time's and a URL's are not.
    if (": " in value or ":\t" in value) and _HEADER_WORDS.search(value):
        value = _headers(value)
    return value


def scrub_settings(value: str) -> str:
    """``value`` with the value of every setting whose name is a secret key fingerprinted."""
    if "=" in value and _SETTING_WORDS.search(value):
        value = _SETTING.sub(_setting, value)
    return value


def scrub_settings_bytes(raw: bytes) -> bytes:
    """``scrub_settings`` for bytes that may not be JSON (the quarantine)."""
    if b"=" in raw and _SETTING_WORDS.search(raw.decode("latin-1")):
        raw = _BYTES_SETTING.sub(_setting_bytes, raw)
    return raw


def _setting(m: re.Match[str]) -> str:
    name, found = m.groups()
    if not found or FINGERPRINT.search(found):
        return m.group(0)
    if secretkeys.kind(name) is not secretkeys.Kind.STRONG:
        return m.group(0)
    return m.group(0)[: m.start(2) - m.start()] + fingerprint(found)


def _setting_bytes(m: re.Match[bytes]) -> bytes:
    """``_setting`` for bytes: a value fingerprinted as written (it holds no escape)."""
    name, found = m.groups()
    if not found or FINGERPRINT_BYTES.search(found):
        return m.group(0)
    if secretkeys.kind(name.decode("latin-1")) is not secretkeys.Kind.STRONG:
        return m.group(0)
    return m.group(0)[: m.start(2) - m.start()] + fingerprint(found).encode()


def _pem(m: re.Match[str]) -> str:
    begin, body = m.groups()
    if not body.strip() or FINGERPRINT.fullmatch(body.strip()):
        return m.group(0)
    return f"{begin}{fingerprint(body)}"


def _headers(value: str) -> str:
    """``value`` with the value of every header line whose name is a secret key fingerprinted."""
    out: list[str] = []
    pos = 0
    for m in _HEADER_NAME.finditer(value):
        if m.start() < pos or not _secret_name(m.group(1)):
            continue
        end = _HEADER_VALUE.match(value, m.end()).end()  # type: ignore[union-attr]
        found = value[m.end() : end]
        if not FINGERPRINT.search(found):  # not a credential fingerprinted already (Bearer)
            out += (value[pos : m.end()], fingerprint(found))
            pos = end
    return "".join(out) + value[pos:] if out else value


def _secret_name(name: str | bytes) -> bool:
    text = name if isinstance(name, str) else name.decode("latin-1")
    return secretkeys.kind(text) in (secretkeys.Kind.STRONG, secretkeys.Kind.WEAK)


def scrub_bytes(raw: bytes) -> bytes:
    """``scrub_text`` for bytes that may not be JSON (the quarantine)."""
    raw = _BYTES_BEARER.sub(lambda m: m.group(1) + b" " + fingerprint(m.group(0)).encode(), raw)
    raw = _BYTES_JWT.sub(lambda m: fingerprint(m.group(0)).encode(), raw)
    if b"PRIVATE KEY" in raw:
        raw = _BYTES_PEM.sub(_pem_bytes, raw)
    if b'"' in raw:
        raw = _BYTES_AWS_SECRET_KEY.sub(_aws_secret_key_bytes, raw)
    if (b": " in raw or b":\t" in raw) and _HEADER_WORDS.search(raw.decode("latin-1")):
        raw = _headers_bytes(raw)
    return raw


def decoded_once(body: bytes) -> str:
    """The text of a JSON string's body (the bytes between its quotes), escapes undone where
    they are valid JSON; as it is where not."""
    if b"\\" in body:
        try:
            text: str = orjson.loads(b'"' + body + b'"')
            return text
        except orjson.JSONDecodeError:
            pass
    return body.decode("utf-8", "surrogateescape")


def _pem_bytes(m: re.Match[bytes]) -> bytes:
    begin, body = m.groups()
    if not body.strip() or FINGERPRINT_BYTES.fullmatch(body.strip()):
        return m.group(0)
    return begin + fingerprint(decoded_once(body)).encode()


def _aws_secret_key_bytes(m: re.Match[bytes]) -> bytes:
    quote, body = m.groups()
    text = body.replace(b"\\/", b"/").decode()
    if not is_aws_secret_key(text):
        return m.group(0)
    return quote + fingerprint(text).encode() + b'"'


def _headers_bytes(raw: bytes) -> bytes:
    """``_headers`` for bytes: a value fingerprinted as written (it holds no escape)."""
    out: list[bytes] = []
    pos = 0
    for m in _BYTES_HEADER_NAME.finditer(raw):
        if m.start() < pos or not _secret_name(m.group(1)):
            continue
        end = _BYTES_HEADER_VALUE.match(raw, m.end()).end()  # type: ignore[union-attr]
        found = raw[m.end() : end]
        if not FINGERPRINT_BYTES.search(found):
            out += (raw[pos : m.end()], fingerprint(found).encode())
            pos = end
    return b"".join(out) + raw[pos:] if out else raw
