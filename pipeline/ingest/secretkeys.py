"""Which JSON keys hold secrets: a key is judged by its last words.

A key names what its value is by its last words, whatever comes before them and however they
are joined (``apiKey``, ``x-api-key``, ``X_API_KEY``, ``api.key``): ``secret``, ``token``,
``password`` and so on, maybe followed by a word that says which form of it the value is
(``SecretString``, ``tokenValue``, ``passwordData``, ``private_key_pem``). Letters are compared
in ASCII lower case; words may be run together or parted by ``-``, ``_``, ``.`` or spaces (only
between words: the pre-filter looks for each word whole, so ``to-ken`` is no token).

- ``STRONG``: the value is a secret, whatever its type: a list of passwords or a JSON web key
  becomes one fingerprint.
- ``WEAK``: words that name a secret or a holder of secrets (``credentials``, ``accessKey``,
  ``cookies``, ``tokens``): a string (or each string of a list) is a secret, an object is
  searched key by key (AssumeRole's ``credentials`` holds the access key id, which tenant
  attribution joins on), and numbers and booleans stay (``maxTokens: 512``). An access key id
  under such a name stays too: it is an identifier, not what unlocks it.
- ``QUERY``: the value is URL query parameters, as an object (``queryStringParameters``,
  ``multiValueQueryStringParameters``) or as a query string without its ``?`` (an access log's
  ``querystring``): each parameter is judged as ``urlparams`` judges one in a URL.

Keys that end in a secret's word and are not secrets are named in ``PLAIN``: the ids and
cursors AWS writes under token names (``clientToken``, ``nextToken``), the subject of a web
identity token, an EC2 metadata setting. The product's own ``token_fingerprint`` and OAuth's
``token_type`` end in other words and need no exception.
"""

from __future__ import annotations

import enum
import functools
import re

SEP = "[-_. ]*"  # between two words of a key: run together or parted


class Kind(enum.Enum):
    STRONG = "strong"
    WEAK = "weak"
    QUERY = "query"


def _words(*phrases: str) -> str:
    """An alternation of phrases, each with its words joined by ``SEP``."""
    return "(?:" + "|".join(SEP.join(p.split()) for p in phrases) + ")"


# Longest first where one phrase ends another ("secret access key" before "access key").
STRONG_WORDS = (
    "secret access key",
    "secret key",
    "api key",
    "private key",
    "token",
    "secret",
    "password",
    "passwd",
    "pwd",
    "passphrase",
    "cookie",
    "authorization",
)
WEAK_WORDS = ("access key", "credential", "credentials", "tokens", "cookies", "passwords")
# A last word that says which form of the secret the value is.
FORMS = (
    "value",
    "data",
    "string",
    "binary",
    "hash",
    "plaintext",
    "pem",
    "material",
    "bytes",
    "blob",
    "text",
)
EXACT = frozenset({"pass"})
PLAIN_WORDS = (
    "client token",
    "client request token",
    "idempotency token",
    "next token",
    "next continuation token",
    "continuation token",
    "pagination token",
    "subject from web identity token",
    "http tokens",
)
QUERY_WORDS = ("query string", "query param")

_FORM = "(?:" + SEP + _words(*FORMS) + ")?"
_STRONG = re.compile(_words(*STRONG_WORDS) + _FORM + r"\Z")
_WEAK = re.compile(_words(*WEAK_WORDS) + _FORM + r"\Z")
_PLAIN = re.compile(_words(*PLAIN_WORDS) + r"\Z")
_QUERY = re.compile(_words(*QUERY_WORDS))
# ASCII letters only: str.lower() folds some other letters onto them (the Kelvin sign onto
# "k"), which neither pre-filter sees in a record's bytes.
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


@functools.lru_cache(maxsize=8192)
def kind(key: str) -> Kind | None:
    """What a value under ``key`` is: STRONG, WEAK, QUERY, or None (no secret by its key)."""
    low = key.translate(_ASCII_LOWER)
    if _STRONG.search(low) or low in EXACT:
        return None if _PLAIN.fullmatch(low) else Kind.STRONG
    if _WEAK.search(low):
        return None if _PLAIN.fullmatch(low) else Kind.WEAK
    if _QUERY.search(low):
        return Kind.QUERY
    return None
