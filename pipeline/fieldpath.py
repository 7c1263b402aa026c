"""Field paths: where a value lives inside one log record, as the configuration names it.

A path is keys separated by dots, ``[*]`` for every element of an array and ``[N]`` for one:
``userIdentity.accountId``, ``resources[*].accountId``, ``requestParameters.key.pk.S``. Log
formats often use literal keys that contain dots (an API Gateway access log may log
``"authorizer.tenantId"`` as one key), so at each level the longest run of dotted names that is a
key of the object wins before the path is split further: ``authorizer.claims.account`` tries
``rec["authorizer.claims.account"]``, then ``rec["authorizer"]["claims.account"]``, then
``rec["authorizer"]["claims"]["account"]``.

A value found is turned into text by ``text`` (numbers as written, objects as compact JSON);
null, ``""`` and the access-log placeholder ``"-"`` are no value. Parsing happens once, when the
configuration is read, so a malformed path is a configuration error naming its key.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

# One step of a path: a name (which may later join its neighbours into a dotted literal key), or
# an index into an array (None: every element).
_NAME = re.compile(r"[^.\[\]]+")
_INDEX = re.compile(r"\[(\*|\d+)\]")


@dataclass(frozen=True)
class Step:
    name: str | None = None  # a key, or None for an index step
    index: int | None = None  # with name None: the element, or None for every element


@dataclass(frozen=True)
class FieldPath:
    text: str
    steps: tuple[Step, ...]

    @property
    def many(self) -> bool:
        """Whether the path can yield more than one value (it has a ``[*]``)."""
        return any(s.name is None and s.index is None for s in self.steps)

    def values(self, record: Any) -> list[str]:
        """The values at this path in ``record``, as text, in document order (no blanks)."""
        out: list[str] = []
        for v in _walk(record, self.steps, 0):
            t = text(v)
            if t is not None:
                out.append(t)
        return out

    def first(self, record: Any) -> str | None:
        for v in _walk(record, self.steps, 0):
            t = text(v)
            if t is not None:
                return t
        return None

    def __str__(self) -> str:
        return self.text


class PathError(ValueError):
    pass


def parse(path: str) -> FieldPath:
    """``path`` as a ``FieldPath``; ``PathError`` saying what is wrong with it."""
    if not path or path != path.strip():
        raise PathError("expected a field path such as userIdentity.accountId")
    steps: list[Step] = []
    i = 0
    expect_name = True
    while i < len(path):
        if path[i] == "[":
            m = _INDEX.match(path, i)
            if not m or not steps:
                raise PathError(f"bad index at character {i + 1} of {path!r} (use [*] or [0])")
            steps.append(Step(None, None if m.group(1) == "*" else int(m.group(1))))
            i = m.end()
            expect_name = False
        elif path[i] == ".":
            if expect_name:
                raise PathError(f"empty key at character {i + 1} of {path!r}")
            i += 1
            expect_name = True
        else:
            if not expect_name:
                raise PathError(f"expected '.' or '[' at character {i + 1} of {path!r}")
            m = _NAME.match(path, i)
            if not m:
                raise PathError(f"unexpected {path[i]!r} at character {i + 1} of {path!r}")
            steps.append(Step(m.group(0)))
            i = m.end()
            expect_name = False
    if expect_name:
        raise PathError(f"{path!r} ends with '.'")
    return FieldPath(path, tuple(steps))


def parse_many(paths: str | tuple[str, ...]) -> tuple[FieldPath, ...]:
    return tuple(parse(p) for p in ((paths,) if isinstance(paths, str) else paths))


def first_of(paths: tuple[FieldPath, ...], record: Any) -> str | None:
    """The value of the first of ``paths`` present in ``record`` (the mapping's fallbacks)."""
    for p in paths:
        v = p.first(record)
        if v is not None:
            return v
    return None


def text(value: Any) -> str | None:
    """Any JSON value as text; None for null, "" and the access-log placeholder "-"."""
    if value is None or value == "" or value == "-":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    try:
        return orjson.dumps(value).decode()
    except (TypeError, orjson.JSONEncodeError):
        return None  # nested past what a record may hold: no usable value


def _walk(node: Any, steps: tuple[Step, ...], at: int) -> Iterator[Any]:
    if at == len(steps):
        yield node
        return
    step = steps[at]
    if step.name is None:
        if not isinstance(node, list):
            return
        if step.index is None:
            for item in node:
                yield from _walk(item, steps, at + 1)
        elif step.index < len(node):
            yield from _walk(node[step.index], steps, at + 1)
        return
    if not isinstance(node, dict):
        return
    # The longest run of names from here that is a literal key wins (``"authorizer.tenantId"``).
    end = at
    while end + 1 < len(steps) and steps[end + 1].name is not None:
        end += 1
    for last in range(end, at - 1, -1):
        key = ".".join(s.name for s in steps[at : last + 1] if s.name is not None)
        if key in node:
            yield from _walk(node[key], steps, last + 1)
            return
