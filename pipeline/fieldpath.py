"""Field paths: where a value lives inside one log record, as the configuration names it.

A path is keys separated by dots, ``[*]`` for every element of an array, ``[N]`` for one, and
``*`` for every member of an object: ``userIdentity.accountId``, ``resources[*].accountId``,
``requestParameters.exclusiveStartKey.*.S``. Log formats often use literal keys that contain dots
(an API Gateway access log may log ``"authorizer.tenantId"`` as one key), so at each level the
longest run of dotted names that is a key of the object wins before the path is split further:
``authorizer.claims.account`` tries ``rec["authorizer.claims.account"]``, then
``rec["authorizer"]["claims.account"]``, then ``rec["authorizer"]["claims"]["account"]``. A key
that is present wins even when its value is null (then the path has no value): the record said
where the value is.

A value found is turned into text by ``text`` (numbers as written, objects and arrays as compact
JSON); null, ``""`` and the access-log placeholder ``"-"`` are no value. Parsing happens once, when
the configuration is read, so a malformed path is a configuration error naming its key.

Paths are evaluated two ways, with the same results: on a decoded record (``FieldPath.values``,
for the per-line sources, whose lines are decoded anyway), and on many records' JSON text at once
(``Extractor``, for CloudTrail): the set of paths a run needs is compiled into a tree of msgspec
structs holding just those fields, so decoding a record skips everything else without making a
Python object of it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
import orjson

# One step of a path: a name (which may later join its neighbours into a dotted literal key),
# every member of an object ("*"), or an index into an array (None: every element).
_NAME = re.compile(r"[^.\[\]]+")
_INDEX = re.compile(r"\[(\*|\d+)\]")
_MEMBERS = "*"
_ABSENT = object()


@dataclass(frozen=True)
class Step:
    name: str | None = None  # a key, or None for an index or members step
    index: int | None = None  # with name None: the element, or None for every element
    members: bool = False  # every member value of an object


@dataclass(frozen=True)
class FieldPath:
    text: str
    steps: tuple[Step, ...]

    @property
    def many(self) -> bool:
        """Whether the path can yield more than one value (it has a ``[*]`` or ``*``)."""
        return any(s.members or (s.name is None and s.index is None) for s in self.steps)

    def nodes(self, record: Any) -> Iterator[Any]:
        """The JSON values at this path in ``record``, as decoded, in document order."""
        return _walk(record, self.steps, 0)

    def values(self, record: Any) -> list[str]:
        """The values at this path in ``record``, as text, in document order (no blanks)."""
        return _texts(_walk(record, self.steps, 0))

    def first(self, record: Any) -> str | None:
        if len(self.steps) == 1 and self.steps[0].name is not None:
            # The common case (a top-level key), without the walk's generator.
            return text(record.get(self.steps[0].name)) if isinstance(record, dict) else None
        for v in _walk(record, self.steps, 0):
            t = text(v)
            if t is not None:
                return t
        return None

    def present(self, record: Any) -> bool:
        """Whether ``record`` has this path at all (its value may be null or blank)."""
        if len(self.steps) == 1 and self.steps[0].name is not None:
            return isinstance(record, dict) and self.steps[0].name in record
        return next(_walk(record, self.steps, 0), _ABSENT) is not _ABSENT

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
            name = m.group(0)
            if name == _MEMBERS and not steps:
                raise PathError(f"{path!r} starts with '*' (a record is one object)")
            steps.append(Step(members=True) if name == _MEMBERS else Step(name))
            i = m.end()
            expect_name = False
    if expect_name:
        raise PathError(f"{path!r} ends with '.'")
    return FieldPath(path, tuple(steps))


def literal(key: str) -> FieldPath:
    """A path of one key taken as it is, dots and brackets included (a logged header's name)."""
    return FieldPath(key, (Step(key),))


def parse_many(paths: str | tuple[str, ...]) -> tuple[FieldPath, ...]:
    return tuple(parse(p) for p in ((paths,) if isinstance(paths, str) else paths))


def first_of(paths: tuple[FieldPath, ...], record: Any) -> str | None:
    """The value of the first of ``paths`` present in ``record`` (the mapping's fallbacks)."""
    for p in paths:
        v = p.first(record)
        if v is not None:
            return v
    return None


def json_text(value: Any) -> str | None:
    """Any JSON value as text; None for null, "" and the access-log placeholder "-". An object or
    array is its JSON text; one nested past what orjson writes (254 levels) raises
    ``orjson.JSONEncodeError``."""
    if value is None or value == "" or value == "-":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return orjson.dumps(value).decode()


def text(value: Any) -> str | None:
    """``json_text``, with None for a value nested past what a record may hold."""
    try:
        return json_text(value)
    except (TypeError, orjson.JSONEncodeError):
        return None


def _texts(found: Iterable[Any]) -> list[str]:
    out: list[str] = []
    for v in found:
        t = text(v)
        if t is not None:
            out.append(t)
    return out


def _run_end(steps: tuple[Step, ...], at: int) -> int:
    """The last step of the run of names starting at ``at`` (they may form one dotted key)."""
    end = at
    while end + 1 < len(steps) and steps[end + 1].name is not None:
        end += 1
    return end


def _key(steps: tuple[Step, ...], at: int, last: int) -> str:
    return ".".join(s.name for s in steps[at : last + 1] if s.name is not None)


def _walk(node: Any, steps: tuple[Step, ...], at: int) -> Iterator[Any]:
    if at == len(steps):
        yield node
        return
    step = steps[at]
    if step.members:
        if isinstance(node, dict):
            for item in node.values():
                yield from _walk(item, steps, at + 1)
        return
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
    for last in range(_run_end(steps, at), at - 1, -1):
        key = _key(steps, at, last)
        if key in node:
            yield from _walk(node[key], steps, last + 1)
            return


# --- many records' JSON text at once ---------------------------------------------------------


def _number(text: str) -> Any:
    from pipeline.ingest import jsonnum  # numbers past a double, kept as written

    return jsonnum.number(text)


_SCALARS = str | int | float | bool | None
_UNSET = msgspec.UNSET


class _Nothing(msgspec.Struct, frozen=True, gc=False):
    """An object none of whose members is wanted: decoding skips them all."""


@dataclass
class _Need:
    """What the paths need of one JSON value: itself (``whole``: some path ends here, or goes on
    through every member, which only the generic walk does), some members of it as an object
    (``keys``), or its elements as an array (``items``)."""

    whole: bool = False
    keys: dict[str, _Need] = field(default_factory=dict)
    items: _Need | None = None
    attrs: dict[str, str] = field(default_factory=dict)  # key -> struct attribute
    struct: type | None = None  # the struct type decoding ``keys``

    def add(self, steps: tuple[Step, ...], at: int) -> None:
        if at == len(steps) or steps[at].members:
            self.whole = True
            return
        step = steps[at]
        if step.name is None:
            self.items = self.items or _Need()
            self.items.add(steps, at + 1)
            return
        for last in range(at, _run_end(steps, at) + 1):
            self.keys.setdefault(_key(steps, at, last), _Need()).add(steps, last + 1)

    def type(self, names: Iterator[int]) -> Any:
        """The msgspec type that decodes just what is needed, and anything else without fail."""
        if self.whole:
            return Any
        obj: Any = _Nothing
        if self.keys:
            fields = []
            for i, (key, need) in enumerate(sorted(self.keys.items())):
                self.attrs[key] = f"f{i}"
                fields.append((f"f{i}", need.type(names), _UNSET))
            rename = {attr: key for key, attr in self.attrs.items()}
            obj = msgspec.defstruct(
                f"_Fields{next(names)}", fields, rename=rename, frozen=True, gc=False
            )
            self.struct = obj
        arr = list[self.items.type(names)] if self.items else list[msgspec.Raw]  # type: ignore[misc]
        return obj | arr | _SCALARS


# Appends the values (as ``text``) a path reaches from a value decoded by its ``_Need``'s type.
_Getter = Callable[[Any, list[str]], None]


def _leaf(node: Any, out: list[str]) -> None:
    if type(node) is str:  # the common case, by text()'s rule
        if node and node != "-":
            out.append(node)
        return
    t = text(node)
    if t is not None:
        out.append(t)


def _getter(need: _Need, steps: tuple[Step, ...], at: int) -> _Getter:
    """``_walk`` for one path, compiled against the struct tree: the keys to try at each level,
    longest first, looked up once here rather than for every record."""
    if at == len(steps):
        return _leaf
    if need.whole:
        rest = steps[at:]

        def generic(node: Any, out: list[str]) -> None:
            out.extend(_texts(_walk(node, rest, 0)))

        return generic
    step = steps[at]
    if step.name is None:
        if need.items is None:  # pragma: no cover - add() gives every index step its items
            return lambda node, out: None
        inner = _getter(need.items, steps, at + 1)
        index = step.index

        def elements(node: Any, out: list[str]) -> None:
            if type(node) is list:
                if index is None:
                    for item in node:
                        inner(item, out)
                elif index < len(node):
                    inner(node[index], out)

        return elements
    struct = need.struct
    tries = [
        (
            need.attrs[_key(steps, at, last)],
            _getter(need.keys[_key(steps, at, last)], steps, last + 1),
        )
        for last in range(_run_end(steps, at), at - 1, -1)
    ]

    def member(node: Any, out: list[str]) -> None:
        if type(node) is struct:  # anything else (text, a number, an array) has no members
            for attr, inner in tries:
                value = getattr(node, attr)
                if value is not _UNSET:
                    inner(value, out)
                    return

    return member


class Extractor:
    """The values at ``paths`` in many records' JSON texts (``extract``): the same as
    ``FieldPath.values`` on each record decoded.

    The struct tree is compiled on first use in each process: classes made at run time do not
    pickle, and an ``Extractor`` travels to the ingest workers. A record the tree cannot decode
    (a number past a double where an object is expected) is decoded generically, to the same
    values."""

    def __init__(self, paths: tuple[FieldPath, ...]) -> None:
        self.paths = paths
        self._compiled: tuple[msgspec.json.Decoder[Any], list[_Getter]] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"paths": self.paths}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["paths"])  # type: ignore[misc]

    def _compile(self) -> tuple[msgspec.json.Decoder[Any], list[_Getter]]:
        if self._compiled is None:
            root = _Need()
            for p in self.paths:
                root.add(p.steps, 0)
            decoder = msgspec.json.Decoder(root.type(iter(range(1 << 30))), float_hook=_number)
            self._compiled = decoder, [_getter(root, p.steps, 0) for p in self.paths]
        return self._compiled

    def extract(self, texts: Iterable[bytes | memoryview | str]) -> list[list[list[str]]]:
        """Per path, per record: its values (``FieldPath.values``)."""
        decoder, getters = self._compile()
        out: list[list[list[str]]] = [[] for _ in self.paths]
        generic = msgspec.json.Decoder(float_hook=_number)
        jobs = list(zip(self.paths, getters, out, strict=True))
        for raw in texts:
            try:
                rec = decoder.decode(raw)
            except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
                try:
                    rec = generic.decode(raw)
                except (msgspec.DecodeError, RecursionError):
                    rec = None  # not JSON: no value at any path
                for path, _, values in jobs:
                    values.append(path.values(rec))
                continue
            for _, get, values in jobs:
                found: list[str] = []
                get(rec, found)
                values.append(found)
        return out
