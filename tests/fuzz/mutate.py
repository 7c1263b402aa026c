"""Delivery files made from real records by structure-aware and byte-level mutation.

A record is held as a tree whose objects are ``Obj``s (their members as (key, value) pairs, in
order), so a mutation can write what a dict cannot hold: a key twice, and a value spelled exactly
as given (``Verbatim``: 1e400, a lone surrogate escape, nesting deeper than Python recurses).
``Mutator.render`` writes a file's records with a spelling chosen per file (spaces, indentation,
escapes, raw UTF-8 or \\u escapes); byte-level mutations may follow. Everything is drawn from one
``random.Random``, so a seed gives the same cases again.
"""

from __future__ import annotations

import gzip
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class Obj(list):  # type: ignore[type-arg]
    """A JSON object: its members as (key, value) pairs, in order; a key may come twice."""


@dataclass(frozen=True)
class Verbatim:
    """JSON text written exactly as it is (valid or not)."""

    text: str


def tree(value: Any) -> Any:
    """A decoded JSON value as a mutable tree."""
    if isinstance(value, dict):
        return Obj((k, tree(v)) for k, v in value.items())
    if isinstance(value, list):
        return [tree(v) for v in value]
    return value


def copy_tree(node: Any) -> Any:
    if isinstance(node, Obj):
        return Obj((k, copy_tree(v)) for k, v in node)
    if isinstance(node, list):
        return [copy_tree(v) for v in node]
    return node


def load_seeds(repo: Path, real_logs: Path | None, per_event: int = 6) -> list[dict[str, Any]]:
    """Records to start from: up to ``per_event`` of each event name in sample_logs/AWSLogs, and
    every record of the third-party corpus (``real_logs``, when it is there)."""
    out: list[dict[str, Any]] = []
    taken: dict[Any, int] = {}
    trail = repo / "sample_logs" / "AWSLogs"
    for path in sorted(trail.rglob("*.json.gz")):
        if "CloudTrail-Digest" in str(path):
            continue
        for rec in json.loads(gzip.decompress(path.read_bytes())).get("Records", []):
            name = rec.get("eventName") if isinstance(rec, dict) else None
            if taken.get(name, 0) < per_event:
                taken[name] = taken.get(name, 0) + 1
                out.append(rec)
    if real_logs is not None and real_logs.is_dir():
        for path in sorted(real_logs.glob("*/normalized_records.json.gz")):
            doc = json.loads(gzip.decompress(path.read_bytes()))
            out += [r for r in doc.get("Records", []) if isinstance(r, dict)]
    return out


# Numbers at the edges of what a double, an int64 and a uint64 hold, and spellings JSON allows
# but parsers may not like; then some that JSON does not allow at all.
NUMBERS = [
    "0", "-0", "-0.0", "0.0", "1", "-1", "2.5e-3", "1E+9", "1e400", "-1e400", "1E400", "1e-400",
    "5e-324", "4.9e-325", "1.7976931348623157e308", "1.7976931348623159e308",
    "-1.7976931348623159e308", "1e309", "1e0400", "9223372036854775807", "9223372036854775808",
    "-9223372036854775808", "-9223372036854775809", "18446744073709551615",
    "18446744073709551616", "123456789012345678901234567890", "1" + "0" * 400,
    "-1" + "0" * 400, "1" + "0" * 400 + ".5", "0." + "0" * 400 + "1",
    "3.141592653589793238462643383279502884197169399375105820974944",
]  # fmt: skip
PAST_A_DOUBLE = [n for n in NUMBERS if float(n) in (float("inf"), float("-inf"))]
BAD_NUMBERS = [
    "NaN", "Infinity", "-Infinity", "01", "-01", "1.", ".5", "+1", "1e", "1e+", "-", "0x10",
    "1_000", "--1", "1.e3", "nul", "tru", "NULL", "True",
]  # fmt: skip
STRINGS = [
    "", "-", " ", "x", "\x00", "\x1f", "\x7f", "é", "ß", "İ", "\u212a", "ſ", "☃", "😀", "\u2028",
    "\ufeff", "\n", "\r\n", "\t", 'a"b', "a\\b", "/", "\\u0041", "tenants/t0001/x",
    "TENANT#t0002", "arn:aws:s3:::bkt", "arn:aws:s3:::bkt/key", "arn:aws:s3:::bkt/",
    "arn:aws:s3:::/k", "arn:aws:s3:::bkt/k\n", "arn:aws-cn:s3:::b/ключ", "arn:aws:s3:::b/k\r",
    "arn:aws:sts::1:assumed-role/r/s", "arn:aws:sts::1:assumed-role/r/s\n",
    "arn:aws:sts::1:assumed-role//s", "arn:aws:sts::1:assumed-role/r/", "arn:aws:iam::1:role/r",
    "arn:a_b-c:sts::1:assumed-role/r/ſ", "Failure", "Success", "AssumeRole",
    "AssumeRoleWithWebIdentity", "AwsApiCall", "AwsConsoleSignIn", "AccessDenied",
    "2026-11-16T10:00:00Z", "2026-11-16T10:00:00.123456789+05:30", "2026-13-45T99:99:99Z",
    "1700000000", "Bearer abcdefghijklmnopqrstuvwxyz012345", "bearer x", "BEARER  y",
    "Basic dXNlcjpwYXNzd29yZA==", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ0MDAwMSJ9.c2lnbmF0dXJl",
    "password=hunter2", "token", "SeCrEt", "cookie: a=b", "PrivateKey", '{"password": "hunter2"}',
    '{"sessionToken": "IQoJb3JpZ2lu", "a": 1e400}', '["token", {"secret": 1}]',
    "IQoJb3JpZ2luX2VjSECRET", "AKIAIOSFODNN7EXAMPLE", "ASIAEXAMPLE0000001",
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "https://u:p4ss@h.example/x", ":\\/\\/u:p@h",
    "postgres://app:pw@db:5432/x", "mongodb+srv://a:b@c.example/d", "Server=db;Password=pw;",
    "Pwd = x ;", "db.password=x", "api.key=y", "x-api-key: k", "page=2&api_key=k",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----",
    "-----BEGIN PRIVATE KEY-----", '{"code": ["a", "b"]}',
]  # fmt: skip
# String literals as JSON text: escapes a Python string cannot carry, and broken ones.
JSON_STRINGS = [
    '"\\ud800"', '"x\\udc00y"', '"\\ud83d\\ude00"', '"\\ud83d"', '"\\ud800\\u0041"', '"\\u0000"',
    '"\\u0041"', '"\\/"', '"\\uD83D\\uDE00"', '"\\uffff"', '"\\ufffe"', '"\\b\\f\\n\\r\\t"',
    '"\\x41"', '"\\u12"', '"\\U0001F600"', '"\t"', '"a\\"', '"\\u0074oken"', '"\\ud800\\ud800"',
    '"\\udbff\\udfff"', '"\\u00e9"', '"\\"\\\\"',
]  # fmt: skip
KEYS = [
    "eventID", "eventTime", "@timestamp", "eventName", "eventSource", "eventType", "errorCode",
    "awsRegion", "sourceIPAddress", "userAgent", "recipientAccountId", "requestID",
    "sourceIdentity", "userIdentity", "requestParameters", "responseElements", "resources",
    "eventVersion", "network", "http", "insightDetails", "awslogs", "logEvents", "Events",
    "CloudTrailEvent", "jsonPayload", "detail", "detail-type", "Records", "type", "arn",
    "invokedBy", "principalId", "accountId", "accessKeyId", "sessionContext", "sessionIssuer",
    "bucketName", "prefix", "tableName", "key", "expressionAttributeValues", "tags",
    "principalTags", "ConsoleLogin", "credentials", "sessionToken", "secretAccessKey",
    "expiration", "ARN", "S", "N", "value", "Key", "Value", "password", "token",
    "Authorization", "privateKey", "x-amz-security-token", "PASSWORD", "client", "ip",
    "useragent", "request_id", "state", "x-api-key", "apiKey", "API_KEY", "passwd", "pwd",
    "accessKey", "access_key_id", "credential", "queryStringParameters", "querystring",
    "multiValueQueryStringParameters", "subjectFromWebIdentityToken", "nextToken", "context",
]  # fmt: skip
DEPTHS = [60, 126, 127, 128, 129, 130, 200, 253, 254, 255, 256, 500, 997, 1000, 1022, 1023, 1024,
          1025, 1100]  # fmt: skip
BYTES = [
    b"{", b"}", b"[", b"]", b'"', b":", b",", b"\\", b" ", b"u", b"0", b"9", b"e", b"-", b".",
    b"n", b"\n", b"\t", b"\r", b"\x00", b"\x0b", b"\x7f", b"\x80", b"\xff", b"\xc0\xaf",
    b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xef\xbb\xbf", b"\xc3", b"\xe2\x82", b"\\u",
    b"\\ud800", b"1e400", b"\xc2\xa0",
]  # fmt: skip


@dataclass
class Style:
    """How one file spells its JSON."""

    item_sep: str = ", "
    key_sep: str = ": "
    indent: str | None = None
    ascii: bool = True
    fancy: float = 0.0  # chance a string is escaped character by character
    spaces: float = 0.0  # chance of extra white space around a token


class Mutator:
    def __init__(self, rng: random.Random, seeds: list[dict[str, Any]]) -> None:
        if not seeds:
            raise ValueError("no seed records")
        self.rng = rng
        self.seeds = [tree(s) for s in seeds]

    # ---- files -------------------------------------------------------------------------

    def fresh(self) -> list[Any]:
        """One to four seed records, as they are."""
        n = self.rng.choice([1, 1, 1, 2, 3, 4])
        return [copy_tree(self.rng.choice(self.seeds)) for _ in range(n)]

    def mutate(self, records: list[Any], ops: int | None = None) -> list[Any]:
        """A copy of ``records`` with some of them mutated (and sometimes one more, or one less);
        ``ops``: exactly so many mutations, in one record."""
        rng = self.rng
        out = [copy_tree(r) for r in records]
        if rng.random() < 0.1:
            out.insert(rng.randrange(len(out) + 1), copy_tree(rng.choice(self.seeds)))
        if len(out) > 1 and rng.random() < 0.05:
            del out[rng.randrange(len(out))]
        if ops is not None:
            i = rng.randrange(len(out))
            for _ in range(ops):
                out[i] = self.op(out[i])
            return out
        touched = False
        for i in range(len(out)):
            if not touched or rng.random() < 0.3:
                for _ in range(rng.choice([1, 1, 2, 3, 4])):
                    out[i] = self.op(out[i])
                touched = True
        return out

    def render(self, records: list[Any]) -> bytes:
        """A delivery file (mostly) of ``records``, spelled in a style drawn for it, with
        byte-level mutations now and then."""
        rng = self.rng
        style = Style(
            item_sep=rng.choice([", ", ",", ",\n"]),
            key_sep=rng.choice([": ", ":", " : "]),
            indent=rng.choice([None, None, None, "  ", "\t"]),
            ascii=rng.random() < 0.5,
            fancy=rng.choice([0.0, 0.0, 0.05, 0.5]),
            spaces=rng.choice([0.0, 0.0, 0.0, 0.1]),
        )
        body = "[" + style.item_sep.join(self.emit(r, style, 1) for r in records) + "]"
        r = rng.random()
        if r < 0.86:
            text = '{"Records"' + style.key_sep + body + "}"
        elif r < 0.89:
            text = '{"a": {"b": [1, "x", 1e400]}, "Records": ' + body + ', "z": null}'
        elif r < 0.91:
            text = '{"Records": ' + body + ', "Records": []}'
        elif r < 0.93:
            text = rng.choice(['{"Records": null}', '{"Records": {}}', '{"Records": []}', "{}"])
        elif r < 0.96:
            text = body  # a bare JSON array of records
        else:
            text = "\n".join(self.emit(r, Style(), 1) for r in records)  # one record a line
        if rng.random() < 0.03:
            text = "\ufeff" + text
        data = text.encode("utf-8", "surrogatepass")
        if rng.random() < 0.15:
            data = self.bytes_op(data)
        return data

    def bytes_op(self, data: bytes) -> bytes:
        rng = self.rng
        for _ in range(rng.choice([1, 1, 2, 3])):
            at = rng.randrange(len(data) + 1)
            r = rng.random()
            if r < 0.3 and at < len(data):
                data = data[:at] + rng.choice(BYTES) + data[at + 1 :]
            elif r < 0.6:
                data = data[:at] + rng.choice(BYTES) + data[at:]
            elif r < 0.8:
                data = data[:at] + data[at + rng.randint(1, 8) :]
            elif r < 0.9:
                data = data[:at] + data[at : at + rng.randint(1, 64)] + data[at:]
            else:
                data = data[:at]
        return data

    # ---- records -----------------------------------------------------------------------

    def op(self, rec: Any) -> Any:
        """One mutation somewhere in a record."""
        rng = self.rng
        slots: list[tuple[list[Any], int, str | None]] = []
        _slots(rec, slots)
        if not slots or rng.random() < 0.01:
            return self.value() if rng.random() < 0.5 else Obj()
        known = [s for s in slots if s[2] in _KNOWN]
        parent, i, key = rng.choice(known if known and rng.random() < 0.7 else slots)
        value = parent[i][1] if isinstance(parent, Obj) else parent[i]
        r = rng.random()
        if r < 0.22:
            new: Any = self.value()
        elif r < 0.34:
            new = self.edit_string(value)
        elif r < 0.42:
            new = self.number()
        elif r < 0.5:
            del parent[i]
            return rec
        elif r < 0.6 and isinstance(parent, Obj):
            twin = value if rng.random() < 0.3 else self.value()
            parent.insert(rng.randrange(len(parent) + 1), (key, twin))
            return rec
        elif r < 0.68 and isinstance(parent, Obj):
            parent[i] = (self.key(), value)
            return rec
        elif r < 0.76:
            target = value if isinstance(value, Obj) else parent
            if isinstance(target, Obj):
                target.insert(rng.randrange(len(target) + 1), (self.key(), self.value()))
            else:
                target.insert(rng.randrange(len(target) + 1), self.value())
            return rec
        elif r < 0.84:
            new = self.wrap(value)
        elif r < 0.9:
            new = self.retype(value)
        else:
            new = copy_tree(self.subtree())
        if isinstance(parent, Obj):
            parent[i] = (key, new)
        else:
            parent[i] = new
        return rec

    def key(self) -> str:
        rng = self.rng
        k = rng.choice(KEYS)
        if rng.random() < 0.05:
            k = k.upper() if rng.random() < 0.5 else k + rng.choice(["x", " ", "\x00", "é"])
        return k

    def value(self) -> Any:
        rng = self.rng
        r = rng.random()
        if r < 0.3:
            return rng.choice(STRINGS)
        if r < 0.42:
            return Verbatim(rng.choice(JSON_STRINGS))
        if r < 0.57:
            return self.number()
        if r < 0.65:
            return rng.choice([None, True, False, 0, "", "-"])
        if r < 0.75:
            return rng.choice(
                [
                    Obj(),
                    [],
                    Obj([(self.key(), rng.choice(STRINGS))]),
                    [rng.choice(STRINGS), Verbatim(rng.choice(NUMBERS))],
                    Obj([("S", rng.choice(STRINGS))]),
                    [Obj([("ARN", rng.choice(STRINGS))])],
                ]
            )
        if r < 0.9:
            return copy_tree(self.subtree())
        if r < 0.97:
            return self.long_string()
        return self.deep()

    def number(self) -> Verbatim:
        """Half the time one a double cannot hold (parsers differ most there)."""
        r = self.rng.random()
        pool = PAST_A_DOUBLE if r < 0.5 else NUMBERS if r < 0.9 else BAD_NUMBERS
        return Verbatim(self.rng.choice(pool))

    def long_string(self) -> str:
        rng = self.rng
        n = rng.choice([100, 4096, 70_000, 300_000, 1_100_000 if rng.random() < 0.1 else 5000])
        piece = rng.choice(STRINGS) or "x"
        return (piece * (n // len(piece) + 1))[:n]

    def deep(self) -> Verbatim:
        rng = self.rng
        n = rng.choice(DEPTHS)
        inner = rng.choice(["1", '"x"', "1e400", "{}", "[]", '"\\ud800"'])
        if rng.random() < 0.5:
            return Verbatim("[" * n + inner + "]" * n)
        return Verbatim('{"a":' * n + inner + "}" * n)

    def subtree(self) -> Any:
        slots: list[tuple[list[Any], int, str | None]] = []
        _slots(self.rng.choice(self.seeds), slots)
        if not slots:
            return None
        parent, i, _ = self.rng.choice(slots)
        return parent[i][1] if isinstance(parent, Obj) else parent[i]

    def edit_string(self, value: Any) -> Any:
        rng = self.rng
        if not isinstance(value, str):
            return rng.choice(STRINGS)
        at = rng.randint(0, len(value))
        r = rng.random()
        if r < 0.6:
            return value[:at] + rng.choice(STRINGS) + value[at:]
        if r < 0.8:
            return value[:at]
        return value + self.long_string()

    def wrap(self, value: Any) -> Any:
        rng = self.rng
        r = rng.random()
        if r < 0.3:
            return [value]
        if r < 0.5:
            return Obj([("S", value)])
        if r < 0.7:
            return Obj([(self.key(), value)])
        if r < 0.85:
            return self.deep()
        return Obj([(self.key(), value), (self.key(), self.value())])

    def retype(self, value: Any) -> Any:
        """The same content as another JSON type."""
        rng = self.rng
        if isinstance(value, Obj):
            return [v for _, v in value] if rng.random() < 0.5 else self.emit(value, Style(), 0)
        if isinstance(value, list):
            return Obj((str(i), v) for i, v in enumerate(value))
        if isinstance(value, str):
            return Verbatim(value) if rng.random() < 0.3 else [value]
        return self.emit(value, Style(), 0)

    # ---- spelling ----------------------------------------------------------------------

    def emit(self, node: Any, style: Style, depth: int) -> str:
        rng = self.rng
        pad = self._pad if style.spaces and rng.random() < style.spaces else ""
        if isinstance(node, Obj):
            if not node:
                return "{}"
            nl, inner = self._lines(style, depth)
            members = [
                nl + inner + pad + self.string(k, style, key=True) + style.key_sep + pad
                + self.emit(v, style, depth + 1)
                for k, v in node
            ]  # fmt: skip
            return "{" + style.item_sep.rstrip("\n").join(members) + nl + "}"
        if isinstance(node, list):
            if not node:
                return "[]"
            nl, inner = self._lines(style, depth)
            items = [nl + inner + pad + self.emit(v, style, depth + 1) for v in node]
            return "[" + style.item_sep.rstrip("\n").join(items) + nl + "]"
        if isinstance(node, Verbatim):
            return node.text
        if isinstance(node, str):
            return self.string(node, style)
        if isinstance(node, bool) or node is None:
            return json.dumps(node)
        return json.dumps(node) if isinstance(node, int | float) else json.dumps(str(node))

    @property
    def _pad(self) -> str:
        return self.rng.choice([" ", "\n", "\t", "\r\n", "  "])

    def _lines(self, style: Style, depth: int) -> tuple[str, str]:
        if style.indent is None:
            return "", ""
        return "\n", style.indent * (depth + 1)

    def string(self, s: str, style: Style, key: bool = False) -> str:
        rng = self.rng
        chance = style.fancy * (0.1 if key else 1.0) if len(s) < 2000 else 0.0
        if not chance or rng.random() >= chance:
            return json.dumps(s, ensure_ascii=style.ascii)
        out = ['"']
        for ch in s:
            o = ord(ch)
            if ch == '"':
                out.append('\\"')
            elif ch == "\\":
                out.append("\\\\")
            elif o < 0x20:
                short = {8: "\\b", 9: "\\t", 10: "\\n", 12: "\\f", 13: "\\r"}.get(o)
                out.append(short if short and rng.random() < 0.5 else f"\\u{o:04x}")
            elif ch == "/" and rng.random() < 0.5:
                out.append("\\/")
            elif (o >= 0x80 and (style.ascii or rng.random() < 0.5)) or rng.random() < 0.03:
                out.append(_u_escape(o, upper=rng.random() < 0.3))  # letters too, now and then
            else:
                out.append(ch)
        out.append('"')
        return "".join(out)


_KNOWN = frozenset(KEYS)


def _u_escape(o: int, upper: bool) -> str:
    if o >= 0x10000:
        o -= 0x10000
        units = [0xD800 + (o >> 10), 0xDC00 + (o & 0x3FF)]
    else:
        units = [o]
    return "".join(f"\\u{u:04X}" if upper else f"\\u{u:04x}" for u in units)


def _slots(node: Any, out: list[tuple[list[Any], int, str | None]]) -> None:
    """Every member and element under ``node``: (its container, its index, its key)."""
    if isinstance(node, Obj):
        for i, (k, v) in enumerate(node):
            out.append((node, i, k))
            _slots(v, out)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.append((node, i, None))
            _slots(v, out)
