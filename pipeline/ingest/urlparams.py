"""Secrets in URLs: query and fragment parameters fingerprinted by name and by shape.

A URL carries secrets in its parameters: OAuth tokens and authorization codes (in the fragment
too, where the implicit flow returns them), the signature and session token of a presigned URL,
API keys, passwords. Wherever a URL is written (a path with its query in an access log, a
referer, a presigned URL in a CloudTrail response, a user agent, an error message), a parameter
is a name and a value after ``?``, ``&``, ``;`` or ``#``, and its value becomes a fingerprint
(``fingerprint.fingerprint`` of the value as written) when

- its name says it is a secret: ``SECRET_NAMES``, or a name holding one of ``SECRET_WORDS``
  (compared in lower case, percent-decoded, without ``-`` and ``_``: ``X-Amz-Security-Token``,
  ``access_token``, ``client_secret``, ``sig``, ``code``);
- or its value looks like one, whatever its name: a ``Bearer``/``Basic`` credential, a JWT, a
  URL whose own parameters hold a secret (``redirect=https%3A%2F%2F...%3Ftoken%3D...``), or
  random text (``looks_random``): an AWS secret key, a session token, a hex signature.

A URL's user information (``https://user:password@host/``, and connection strings such as
``postgres://app:password@db:5432/x``) has its password fingerprinted and its user kept.
Parameters logged without their URL, as a query string without its ``?`` or as an object of
names and values, are judged the same way (``scrub_query``, ``secret_param``).

Everything else stays readable (``?page=2&sort=name``), and so do the ids the product joins and
searches on: an access key id (``AKIA...``/``ASIA...``, also as ``X-Amz-Credential``, whose value
is the key id and the signing scope: date, region, service, neither a secret), UUIDs (request and
event ids), resource ids (``i-0abc...``), ARNs, dates, words.

The patterns that find a parameter (``HINT``) and a password in a URL (``USERINFO_HINT``) in a
record's bytes are the pre-filter's share of it: ``prefilter.might_hold_secret`` and the compiled
decoder (``_secrets.c``) send a record to the redactor when it holds one, so a parameter this
module could rewrite is never left unseen. Their classes take in every byte a name or password
found here can be written with in JSON (a ``\\u`` escape is flagged on its own).
"""

from __future__ import annotations

import re
from urllib.parse import unquote

import orjson

from pipeline.ingest.fingerprint import FINGERPRINT, FINGERPRINT_BYTES, fingerprint

# A separator, a name and "=": what the pre-filters look for (RE2 and Python alike; \x0b is the
# vertical tab, which Python's \s holds and RE2's does not).
_NAME_THEN_EQUALS = r'[^"\t\n\x0b\f\r ?#&;=]*='
HINT = "[?#&;]" + _NAME_THEN_EQUALS
# A separator or "=" spelled as a JSON escape, in text (the raw pre-filters flag any \u escape).
ESCAPED_HINT = r"\\u00(?:3[fFbBdD]|2[36])"
_NAME_THEN_EQUALS_BYTES = re.compile(_NAME_THEN_EQUALS.encode())
# "://", a user, ":", a password and "@" (slashes maybe escaped, as some JSON writers do): the
# user information ends at the first "/", "?", "#", "@", quote, backslash or white space.
_USERINFO_CHAR = r'[^/?#@"\\\t\n\x0b\f\r ]'
USERINFO_HINT = r":(?:\\?/){2}" + _USERINFO_CHAR + "*:" + _USERINFO_CHAR + "*@"
_USERINFO_HINT_BYTES = re.compile(USERINFO_HINT.encode())
# The user (no ":") and the password (the rest, up to "@").
_USERINFO = re.compile(
    r"(:(?:\\?/){2}" + _USERINFO_CHAR.replace("[^", "[^:") + "*:)(" + _USERINFO_CHAR + "*)@"
)
_USERINFO_BYTES = re.compile(_USERINFO.pattern.encode())


def holds_param(raw: bytes) -> bool:
    """Does ``raw`` match ``HINT``? As the compiled decoder asks it: each separator found by
    ``bytes.find`` (memchr), the name after it read by an anchored match. A search for HINT itself
    costs ~16 us on a 2 KB record, where most records hold a "#" or two (a user agent's
    "Botocore#1.34") and no parameter."""
    for sep in b"?#&;":
        at = raw.find(sep)
        while at >= 0:
            if _NAME_THEN_EQUALS_BYTES.match(raw, at + 1):
                return True
            at = raw.find(sep, at + 1)
    return False


def holds_userinfo(raw: bytes) -> bool:
    """Does ``raw`` match ``USERINFO_HINT`` (a password in a URL)? Every one has an "@"."""
    return b"@" in raw and _USERINFO_HINT_BYTES.search(raw) is not None


# Names (lower case, percent-decoded, "-" and "_" dropped) whose value is a secret, whole...
SECRET_NAMES = frozenset(
    {
        "key",
        "sig",
        "code",  # an OAuth authorization code
        "auth",
        "session",
        "sid",
        "pass",
        "pwd",
        "jwt",
        "otp",
        "assertion",
        "samlresponse",
        "ticket",
        "hmac",
    }
)
# ... or holding one of these.
SECRET_WORDS = (
    "token",
    "secret",
    "passw",
    "signature",
    "apikey",
    "privatekey",
    "authorization",
    "sessionid",
    "sessid",
)
# Names that hold a word above and are not secrets.
PLAIN_NAMES = frozenset({"tokentype"})  # OAuth's "Bearer"

# A parameter in decoded text: a name holds no quote, white space, backslash or separator; a
# value runs to the next separator, white space, quote, angle bracket or backslash (what ends a
# URL in prose, JSON and HTML) and may hold "=" (base64 padding). A value that ran on would only
# fingerprint more; one that stopped short would leave the rest of a secret.
_PARAM = re.compile(r"([?#&;])([^\"'<>\\\s?#&;=]*)=([^\"'<>\\\s?#&;]*)")
# The same in bytes that may not be JSON (the quarantine), where the separators and "=" may be
# \u escapes (Go's encoder writes "&" as \u0026) and a slash may be escaped, at any depth.
_B_SEP = rb"(?:[?#&;]|\\u00(?:3[fFbB]|2[36]))"
_B_VALUE = rb"(?:[^\"'<>\\\s?#&;]|\\+/|\\+u(?!00(?:3[fFbB]|2[36]))[0-9a-fA-F]{4})*"
_B_PARAM = re.compile(
    b"(" + _B_SEP + rb")((?:[^\"'<>\\\s?#&;=]|\\+/)*)(=|\\u003[dD])(" + _B_VALUE + b")"
)

_SCHEME = re.compile(r"(?i)\s*(?:bearer|basic)\s+\S{8}")
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.")
_TOKEN_TEXT = re.compile(r"[A-Za-z0-9+/=_.~-]+")
_HEX = re.compile(r"[0-9a-fA-F]+")
# An access key id (or another IAM unique id), alone or leading a signing scope as in
# X-Amz-Credential: an identifier, whatever name it is logged under.
ACCESS_KEY_ID = re.compile(
    r"(?:AKIA|ASIA|AROA|AIDA|AGPA|ANPA|ANVA|APKA|ABIA|ACCA)[A-Z0-9]{12,}(?:/|\Z)"
)
# Ids that look random and are not secrets: UUIDs, AWS resource ids, access key ids.
_KEPT_ID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z"
    r"|[a-z]+-[0-9a-f]{8,32}\Z"
    r"|" + ACCESS_KEY_ID.pattern
)
# A word or a number: camelCase and Title words are one run each.
_RUN = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[0-9]+")
_MIN_RANDOM = 20  # characters: shorter values are page numbers, codes, names
_MAX_DEPTH = 4  # URLs in URLs in URLs...: past this, a value with a nested URL is a secret


def scrub_text(text: str, depth: int = 0) -> str:
    """``text`` with the value of every secret parameter fingerprinted (``depth``: how many URLs
    this one is nested in). Text that spells separators as JSON escapes (a message quoting
    escaped JSON: ``/x\\u003fsig=...``) is read as bytes are."""
    if "\\u00" in text:
        text = scrub_bytes(text.encode("utf-8", "surrogatepass")).decode("utf-8", "surrogatepass")
    if "@" in text:
        text = _USERINFO.sub(_replace_password, text)
    if "=" not in text:
        return text

    def replace(m: re.Match[str]) -> str:
        sep, name, value = m.groups()
        if not _is_secret(name, value, depth):
            return m.group(0)
        return f"{sep}{name}={fingerprint(value)}"

    return _PARAM.sub(replace, text)


def _replace_password(m: re.Match[str]) -> str:
    user, password = m.groups()
    if not password or FINGERPRINT.fullmatch(password):
        return m.group(0)
    return f"{user}{fingerprint(password)}@"


def scrub_query(text: str) -> str:
    """A query string logged without its ``?`` (``a=1&token=...``), scrubbed as in a URL: its
    first parameter too. Text with white space is no query string (a SQL query, prose)."""
    if "=" not in text or any(c.isspace() for c in text):
        return text
    return scrub_text("?" + text)[1:]


def secret_param(name: str, value: str) -> bool:
    """Is ``value``, logged as the parameter ``name`` apart from its URL, a secret?"""
    return _is_secret(name, value, 0)


def scrub_bytes(data: bytes) -> bytes:
    """``scrub_text`` for bytes that may not be JSON, escapes and all. A value is fingerprinted
    as its text decoded once: the full redaction's fingerprint for a record's own strings."""
    if b"@" in data:
        data = _USERINFO_BYTES.sub(_replace_password_bytes, data)
    if b"=" not in data and b"\\u003" not in data:
        return data
    return _B_PARAM.sub(_replace_bytes, data)


def _replace_password_bytes(m: re.Match[bytes]) -> bytes:
    user, password = m.groups()
    if not password or FINGERPRINT_BYTES.fullmatch(password):
        return m.group(0)
    return user + fingerprint(password).encode() + b"@"


def _replace_bytes(m: re.Match[bytes]) -> bytes:
    sep, name, eq, value = m.groups()
    text = _decoded_once(value)
    if not _is_secret(name.replace(b"\\", b"").decode("utf-8", "replace"), text, 0):
        return m.group(0)
    return sep + name + eq + fingerprint(text).encode()


def _decoded_once(value: bytes) -> str:
    """A value's text with one level of JSON escapes undone, where it is valid JSON text."""
    if b"\\" in value:
        try:
            text: str = orjson.loads(b'"' + value + b'"')
            return text
        except orjson.JSONDecodeError:
            pass
    return value.decode("utf-8", "surrogateescape")


def _is_secret(name: str, value: str, depth: int) -> bool:
    """Is ``value``, under parameter ``name``, a secret? An empty value or a fingerprint is not:
    scrubbing twice changes nothing."""
    if not value or FINGERPRINT.fullmatch(value):
        return False
    return secret_name(name) or _secret_value(value, depth)


def secret_name(name: str) -> bool:
    key = unquote(name).lower().replace("-", "").replace("_", "")
    if key in PLAIN_NAMES:
        return False
    return key in SECRET_NAMES or any(w in key for w in SECRET_WORDS)


def _secret_value(value: str, depth: int) -> bool:
    text = unquote(value) if "%" in value else value
    if _SCHEME.match(text) or _JWT.search(text):
        return True
    if text != value and any(c in text for c in "?#&;"):
        # An encoded URL as a value (a redirect): a secret if its own parameters hold one.
        return depth >= _MAX_DEPTH or scrub_text(text, depth + 1) != text
    return looks_random(text)


def looks_random(text: str) -> bool:
    """At least ``_MIN_RANDOM`` characters of base64/URL-safe/hex text that are no id kept
    (``_KEPT_ID``) and that read as random, not as words: mostly letters and digits, in short
    runs of one kind (a run is a word, a Title or camelCase word, or a number). Random base64
    averages under 2 characters a run, identifiers such as ``createdAtDescending2024`` above
    3.5. Hex needs 40 characters (a SHA-1 and up), so a bare 32-digit UUID stays."""
    if len(text) < _MIN_RANDOM or not _TOKEN_TEXT.fullmatch(text):
        return False
    if _HEX.fullmatch(text):
        return len(text) >= 40
    if _KEPT_ID.match(text):
        return False
    runs = _RUN.findall(text)
    letters_digits = sum(map(len, runs))
    if not runs or letters_digits < 0.8 * len(text):
        return False
    return letters_digits / len(runs) < (3.0 if len(text) < 40 else 4.0)
