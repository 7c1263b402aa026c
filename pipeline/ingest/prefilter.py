"""Which records might hold a secret: the pre-filter over a record's bytes.

Most records carry no secret, so the redactor decodes and redacts only those this says might: a
record holds none of the secret keys (``secretkeys``) nor a secret of a known shape (``shapes``) nor
a URL secret (``urlparams``) unless it holds, in ASCII letters of any case,

- one of ``WORDS``: every secret key holds one whole (``token``, ``secret``, ``pass``,
  ``authorization``, ``private``, ``cookie``, ``credential``), and so do a Bearer or Basic
  credential, a PEM private key (``PRIVATE KEY``) and a JWT (``eyJ``, base64 of '{"', wherever
  it is: a path, a principalId);
- ``api`` then ``key`` (``apiKey``, ``x-api-key``), or ``access`` then ``key`` not followed by
  ``id`` (``accessKeyId`` is in nearly every CloudTrail record and names an identifier), with
  separators between the words as keys have them (``secretkeys.SEP``);
- ``pwd`` in a key or a setting: the rest of the key, its closing quote and its colon follow,
  or the rest of the name and "=" (``Pwd=...;``); ``query`` then ``string`` or ``param`` in a
  key (``pwd`` is common in random base64, and ``Query`` and ``QueryString`` are an event name
  and an S3 authentication method);
- a ``\\u`` escape, which can spell a key's letters its bytes do not show (``p\\u0061ssword``);
- a URL parameter (``urlparams.HINT``) or a password in a URL (``urlparams.USERINFO_HINT``);
- a JSON string of 40 base64 characters (an AWS secret access key's shape: slashes maybe
  escaped, the opening quote not escaped).

``might_hold_secret`` is the reference. ``flag_secrets`` asks the same of a column in one RE2
pass (a multi-literal DFA reads each byte once, where Python's ``re`` with IGNORECASE costs
~70 us per 1.8 KB record); RE2's case folding is Unicode's, a superset of ASCII's, so it may flag
a record that ``might_hold_secret`` then clears, never the other way round. The compiled decoder
(``_secrets.c``) copies the needles and must flag exactly the records ``might_hold_secret`` does.
"""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.ingest import native, urlparams
from pipeline.ingest.secretkeys import SEP

WORDS = (
    b"token",
    b"secret",
    b"pass",
    b"authorization",
    b"bearer",
    b"basic",
    b"private",
    b"cookie",
    b"credential",
    b"eyj",
)
_KEY_END = r'[^"]*"[ \t\n\r]*:'  # the rest of a key: its closing quote, white space, a colon
API_KEY = "api" + SEP + "key"
ACCESS_KEY = "access" + SEP + "key(?!" + SEP + "id)"
_SETTING_END = r"[\w.-]*[ \t]*="  # the rest of a setting's name, blanks, "="
PWD_KEY = "pwd(?:" + _KEY_END + "|" + _SETTING_END + ")"
QUERY_KEY = "query" + SEP + "(?:string|param)" + _KEY_END
# RE2 has no lookahead: "not followed by id" spelled out (end of text, a letter other than i,
# an i that ends the text or is followed by no d), in any case.
_ACCESS_KEY_RE2 = "access" + SEP + "key(?:$|[^-_. i]|[-_. ]+(?:$|[^-_. i])|" + SEP + "i(?:$|[^d]))"
# A JSON string of 40 base64 characters whose opening quote no backslash escapes.
AWS_SECRET_KEY = r'(?:^|[^\\])(?:\\\\)*"(?:[A-Za-z0-9+/]|\\/){40}"'  # noqa: S105 (a pattern)

_PATTERNS = [re.compile(p.encode()) for p in (API_KEY, ACCESS_KEY, PWD_KEY, QUERY_KEY)]
# Each pattern with the literal that must be there first (a cheap `in` before the search).
_GATED = list(zip((b"api", b"access", b"pwd", b"query"), _PATTERNS, strict=True))
# Zero width after the quote, so that overlapping candidates are all tried; the backslashes
# before the quote are counted apart (an even run: the quote is not escaped).
_AWS_SECRET_KEY_AFTER_QUOTE = re.compile(rb'"(?=(?:[A-Za-z0-9+/]|\\/){40}")')


def might_hold_secret(raw: bytes) -> bool:
    low = raw.lower()
    return (
        any(w in low for w in WORDS)
        or any(lit in low and p.search(low) is not None for lit, p in _GATED)
        or b"\\u" in raw
        or _url_param(raw)
        or urlparams.holds_userinfo(raw)
        or _aws_secret_key(raw)
    )


def _url_param(raw: bytes) -> bool:
    """Might ``raw`` hold a URL parameter (urlparams.HINT)? Every one has an "=": most records
    have none, and ``in`` costs less than a search."""
    return b"=" in raw and urlparams.holds_param(raw)


def _aws_secret_key(raw: bytes) -> bool:
    for m in _AWS_SECRET_KEY_AFTER_QUOTE.finditer(raw):
        at = m.start()
        back = at
        while back > 0 and raw[back - 1] == 0x5C:  # a backslash
            back -= 1
        if (at - back) % 2 == 0:
            return True
    return False


PATTERN = (
    "(?i:"
    + "|".join(w.decode() for w in WORDS)
    + "|"
    + "|".join((API_KEY, _ACCESS_KEY_RE2, PWD_KEY, QUERY_KEY))
    + ")|\\\\u|"
    + urlparams.HINT
    + "|"
    + urlparams.USERINFO_HINT
    + "|"
    + AWS_SECRET_KEY
)


def flag_secrets(raw: pa.Array) -> pa.Array:
    """Per record of a string column: might it hold a secret (might_hold_secret, vectorised)."""
    return pc.match_substring_regex(raw, PATTERN)


def flagged(raw: bytes) -> bool:
    """``might_hold_secret``, compiled when the C decoder is on (``native``): the redactor
    asks it of every access-log and authorizer line and of every record it is given."""
    return native.might_hold_secret(raw, might_hold_secret)
