"""msgspec's validation errors as the one-line messages the configuration gives: the key's path,
then what was expected, in plain words (``tenancy.actor[1].pattern: expected a string, got an
integer``)."""

from __future__ import annotations

import re

_MSGSPEC_TYPES = {
    "`str`": "a string",
    "`int`": "an integer",
    "`float`": "a number",
    "`bool`": "true or false",
    "`array`": "a list",
    "`object`": "a table",
    "`datetime`": "a date-time with a time zone",
    "`null`": "nothing",
}


def describe(msg: str) -> str:
    """Turn msgspec's ``Expected `int`, got `str` - at `$.a.b` `` into ``a.b: expected ...``."""
    path = ""
    m = re.search(r" - at `\$\.?(.*)`$", msg)
    if m:
        path, msg = m.group(1), msg[: m.start()]
    m2 = re.match(r"Expected (.+?), got (.+)$", msg)
    if m2:
        expected = " or ".join(_MSGSPEC_TYPES.get(t, t) for t in m2.group(1).split(" | "))
        msg = f"expected {expected}, got {_MSGSPEC_TYPES.get(m2.group(2), m2.group(2))}"
    m3 = re.match(r"Object contains unknown field `(.+)`$", msg)
    if m3:
        path = f"{path}.{m3.group(1)}" if path else m3.group(1)
        msg = "unknown key"
    m4 = re.match(r"Object missing required field `(.+)`$", msg)
    if m4:
        path = f"{path}.{m4.group(1)}" if path else m4.group(1)
        msg = "required key is missing"
    m5 = re.match(r"Invalid value '(.+)'$", msg)
    if m5 and path.endswith("kind"):
        msg = f"unknown kind {m5.group(1)!r}"
    return f"{path}: {msg}" if path else msg
