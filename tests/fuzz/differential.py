"""Both decoders over the same files, what they disagree on, and the smallest file that shows it.

``compare`` decodes a batch of files twice, with the C decoder on and off
(``TENANTWATCH_NATIVE``), through ``decode.decode_batch`` exactly as ingestion calls it, and
names the first thing that differs: the count of records read, the quarantine (reasons, details,
raw text), the sessions, a row column (raw text, hashes and hints included), or an exception.
An exception is a finding even when both decoders raise the same one: bad input must end in the
quarantine, never in a crash. ``shrink`` cuts a file down, keeping the same finding, so that it
reads as a regression test.
"""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.config import parse_config
from pipeline.ingest import formats, native, prefilter, redact
from pipeline.ingest.decode import Batch, Decoded, decode_batch
from pipeline.ingest.reading import Reading
from pipeline.ingest.sources import InputRef
from tests.fuzz.mutate import Mutator, load_seeds

# A field strategy over a few paths, so that the path columns are compared too.
_CFG = parse_config(
    {
        "tenancy": {
            "actor": [{"kind": "field", "source": "cloudtrail", "path": "userIdentity.accountId"}],
            "target": [
                {"kind": "field", "source": "cloudtrail", "path": "resources[*].accountId"},
                {"kind": "field", "source": "cloudtrail", "path": "requestParameters.*"},
            ],
        }
    },
    environ={},
)
INGEST = _CFG.ingest
READING = Reading.of(_CFG)


@dataclass(frozen=True)
class Finding:
    kind: str  # what differs ("rows.resource", "quarantine", ...) or "crash: <decoder> <error>"
    detail: str  # the two sides, shortened
    files: tuple[bytes, ...]


_last_batch: Path | None = None


def record_batches_in(folder: Path) -> None:
    """Write each batch to ``folder`` before decoding it: a sanitizer stops the process at
    once, and the batch it stopped on is then there to replay."""
    global _last_batch
    folder.mkdir(parents=True, exist_ok=True)
    _last_batch = folder


def decode(files: list[bytes] | tuple[bytes, ...], compiled: bool) -> Decoded | BaseException:
    if _last_batch is not None and compiled:
        for old in _last_batch.glob("*.json"):
            old.unlink()
        for i, f in enumerate(files):
            (_last_batch / f"{i:03d}.json").write_bytes(f)
    refs = tuple(InputRef(f"mem://fuzz/{i:03d}.json", len(f), data=f) for i, f in enumerate(files))
    before = os.environ.get("TENANTWATCH_NATIVE")
    os.environ["TENANTWATCH_NATIVE"] = "1" if compiled else "0"
    try:
        return decode_batch(Batch(refs), INGEST, READING)
    except (Exception, RecursionError) as exc:
        return exc
    finally:
        if before is None:
            del os.environ["TENANTWATCH_NATIVE"]
        else:
            os.environ["TENANTWATCH_NATIVE"] = before


def _short(value: Any) -> str:
    if isinstance(value, Decoded):
        reasons = sorted({q.reason for q in value.quarantine})
        text = f"{value.records_in} records, {value.rows.num_rows} rows, quarantine {reasons}"
    else:
        text = repr(value)
    return text if len(text) <= 300 else text[:300] + f"... ({len(text):,} chars)"


def difference(fast: Decoded | BaseException, slow: Decoded | BaseException) -> tuple[str, str]:
    """('', '') when the two are the same, else (what differs, the two sides)."""
    a, b = (type(x).__name__ if isinstance(x, BaseException) else "" for x in (fast, slow))
    if a or b:
        named = [
            f"{decoder} {error}" for decoder, error in (("compiled", a), ("python", b)) if error
        ]
        kind = f"crash: both {a}" if a == b else "crash: " + ", ".join(named)
        return kind, f"compiled: {_short(fast)}; python: {_short(slow)}"
    assert isinstance(fast, Decoded) and isinstance(slow, Decoded)
    if fast.records_in != slow.records_in:
        return "records_in", f"{fast.records_in} != {slow.records_in}"
    if fast.quarantine != slow.quarantine:
        a = [(q.position, q.reason) for q in fast.quarantine]
        b = [(q.position, q.reason) for q in slow.quarantine]
        ra, rb = {r for _, r in a}, {r for _, r in b}
        kind = "quarantine"  # the same reasons, other records, details or text
        if ra - rb:
            kind += f", compiled only {sorted(ra - rb)}"
        if rb - ra:
            kind += f", python only {sorted(rb - ra)}"
        return kind, f"compiled {_short(a)}; python {_short(b)}"
    if fast.sessions != slow.sessions:
        a, b = fast.sessions.to_pylist(), slow.sessions.to_pylist()
        return "sessions", f"compiled {_short(a)}; python {_short(b)}"
    if fast.digests != slow.digests:
        return "digests", f"{_short(fast.digests)} != {_short(slow.digests)}"
    if fast.rows.schema != slow.rows.schema or fast.rows.num_rows != slow.rows.num_rows:
        return "rows", f"{fast.rows.num_rows} rows != {slow.rows.num_rows} rows"
    for name in fast.rows.column_names:
        a, b = fast.rows[name].to_pylist(), slow.rows[name].to_pylist()
        if a != b:
            i = next(i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y)
            return f"rows.{name}", f"row {i}: compiled {_short(a[i])}; python {_short(b[i])}"
    return "", ""


def compare(files: list[bytes] | tuple[bytes, ...]) -> Finding | None:
    fast = decode(files, True)
    kind, detail = difference(fast, decode(files, False))
    if not kind:
        kind, detail = helpers_differ(files, fast)
    return Finding(kind, detail, tuple(files)) if kind else None


def helpers_differ(files: list[bytes] | tuple[bytes, ...], decoded: Any) -> tuple[str, str]:
    """The extension's other entry points against their Python references, on this batch's
    bytes: credential spans of the files and of the records kept, and picking raw text out of
    a chunked column (what writing the lake does). ('', '') when they agree."""
    rows = decoded.rows if isinstance(decoded, Decoded) else None
    raws = [*files, *(r.encode() for r in rows["raw"].to_pylist()[:64])] if rows else [*files]
    got = native._ctscan.credential_spans(raws, redact._CREDENTIAL_KEYS)
    want = redact.credential_spans(raws)
    if got != want:
        i = next(i for i, (a, b) in enumerate(zip(got, want, strict=True)) if a != b)
        return "credential_spans", f"text {i}: compiled {got[i]}; python {want[i]}"
    for i, raw in enumerate(raws):
        flag, python = native._ctscan.might_hold_secret(raw), prefilter.might_hold_secret(raw)
        if flag != python:
            return "might_hold_secret", f"text {i}: compiled {flag}; python {python}"
    if rows is not None and rows.num_rows:
        raw = rows["raw"].combine_chunks()
        cut = len(raw) // 2
        column = pa.chunked_array([raw.slice(0, cut), raw.slice(cut)], pa.string())
        picked = np.arange(len(raw))[::-1].copy()
        if native.take_strings(column, picked).to_pylist() != column.take(picked).to_pylist():
            return "take_strings", f"{len(raw)} rows, cut at {cut}"
    return "", ""


def taken(data: bytes) -> bool:
    """Would the C decoder take this file (as ``rows.CFiles.accepts`` asks it)?"""
    body = formats.delivery_body(data)
    if native._ctscan is None or body is None:
        return False
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return native._ctscan.Builder().add(body) is not None


# ---- shrinking ---------------------------------------------------------------------------

_TOKEN = re.compile(
    rb'"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null|[{}\[\]:,]|\s+|.',
    re.DOTALL,
)


def _tokens(data: bytes) -> list[bytes]:
    return [m.group(0) for m in _TOKEN.finditer(data)]


def _elements(tokens: list[bytes], deepest: int) -> list[tuple[int, int]]:
    """Token ranges that can go as a whole, in document order: each member of an object and
    element of an array nested at most ``deepest`` levels, with the comma that separates it
    from the next (or from the one before, if it is last)."""
    out: list[tuple[int, int]] = []
    stack: list[list[int]] = []  # per open container: [start of the current element, last comma]
    for i, t in enumerate(tokens):
        if t in (b"{", b"["):
            stack.append([i + 1, -1])
        elif t in (b"}", b"]") and stack:
            start, comma = stack.pop()
            if start < i and len(stack) < deepest:
                out.append((comma, i) if comma >= 0 else (start, i))
        elif t == b"," and stack:
            start, _ = stack[-1]
            if len(stack) <= deepest:
                out.append((start, i + 1))
            stack[-1] = [i + 1, i]
    return sorted(out)


def shrink(data: bytes, still: Callable[[bytes], bool], seconds: float = 60.0) -> bytes:
    """A smaller ``data`` for which ``still`` holds (it must hold for ``data``): whole members
    and elements removed (the outer ones first), then runs of tokens, then strings shortened.
    What it has when ``seconds`` run out."""
    deadline = time.monotonic() + seconds
    tokens = _tokens(data)

    def attempt(candidate: list[bytes]) -> bool:
        nonlocal tokens
        if time.monotonic() > deadline or candidate == tokens:
            return False
        if still(b"".join(candidate)):
            tokens = candidate
            return True
        return False

    for deepest in (2, 4, 8, 1 << 30):
        at = 0
        while time.monotonic() < deadline:
            todo = [r for r in _elements(tokens, deepest) if r[0] >= at]
            for start, end in todo:
                if attempt(tokens[:start] + tokens[end:]):
                    at = start
                    break
            else:
                break
    size = len(tokens) // 2
    while size >= 1 and time.monotonic() < deadline:
        at, cut = 0, False
        while at < len(tokens) and time.monotonic() < deadline:
            if attempt(tokens[:at] + tokens[at + size :]):
                cut = True
            else:
                at += size
        if not cut:
            size //= 2
    for i in range(len(tokens)):
        t = tokens[i] if i < len(tokens) else b""
        if t.startswith(b'"') and len(t) > 3:
            for cut_to in (b'"x"', t[: len(t) // 2] + b'"'):
                if len(cut_to) < len(t) and attempt([*tokens[:i], cut_to, *tokens[i + 1 :]]):
                    break
    return b"".join(tokens)


def minimal(finding: Finding, seconds: float = 60.0) -> Finding:
    """The finding on as few and as small files as keep it."""
    files = list(finding.files)

    def same(candidate: list[bytes]) -> bool:
        found = compare(candidate)
        return found is not None and found.kind == finding.kind

    for f in list(files):  # one file alone, if one shows it
        if len(files) > 1 and same([f]):
            files = [f]
            break
    i = 0
    while len(files) > 1 and i < len(files):
        if same(files[:i] + files[i + 1 :]):
            files = files[:i] + files[i + 1 :]
        else:
            i += 1
    share = seconds / len(files)
    for i in range(len(files)):
        files[i] = shrink(files[i], lambda d, i=i: same([*files[:i], d, *files[i + 1 :]]), share)
    found = compare(files)
    assert found is not None
    return found


# ---- the loop ----------------------------------------------------------------------------


@dataclass
class Report:
    cases: int = 0  # files decoded by both decoders
    batches: int = 0
    taken: int = 0  # files the C decoder took whole
    records_in: int = 0
    rows: int = 0
    quarantined: int = 0
    interesting: int = 0  # cases kept for reaching new edges (coverage: the sanitized build)
    findings: list[Finding] = field(default_factory=list)
    seconds: float = 0.0


def cases(mutator: Mutator, corpus: list[list[Any]]) -> Iterator[tuple[list[Any], bytes]]:
    """Endless (records, file) pairs: seed records, mutated (or not, a tenth of the time), or a
    kept case's records with one mutation more (stacking more would leave few files the
    compiled decoder takes, and its code for those is as much in question as its refusals)."""
    rng = mutator.rng
    while True:
        if corpus and rng.random() < 0.4:
            records = mutator.mutate(rng.choice(corpus), ops=1)
        else:
            records = mutator.fresh()
            if rng.random() < 0.9:
                records = mutator.mutate(records)
        yield records, mutator.render(records)


def run(
    seeds: list[dict[str, Any]],
    *,
    seed: int,
    max_cases: int | None = None,
    seconds: float | None = None,
    coverage: Callable[[], bytes] | None = None,
    log: Callable[[str], None] | None = None,
    shrink_seconds: float = 60.0,
    shrink_if: Callable[[str], bool] = lambda kind: True,
) -> Report:
    """Compare both decoders on mutated files until ``max_cases`` or ``seconds`` run out. With
    ``coverage`` (the edges the extension reached since the last call, ``__main__``), a case
    that reaches new edges joins the corpus that later cases mutate."""
    rng = random.Random(seed)
    mutator = Mutator(rng, seeds)
    report = Report()
    corpus: list[list[Any]] = []
    seen: set[int] = set()
    kinds: set[str] = set()
    started = time.monotonic()
    source = cases(mutator, corpus)
    next_log = started + 30
    while True:
        elapsed = time.monotonic() - started
        if (max_cases is not None and report.cases >= max_cases) or (
            seconds is not None and elapsed >= seconds
        ):
            break
        batch = [next(source) for _ in range(rng.choice([1, 1, 2, 4, 8]))]
        files = [f for _, f in batch]
        if coverage is not None:
            coverage()  # from here on: this batch's
        fast = decode(files, True)
        if coverage is not None:
            edges = _edges(coverage())
            if edges - seen:
                seen |= edges
                corpus += [records for records, _ in batch]
                report.interesting += len(batch)
        slow = decode(files, False)
        kind, detail = difference(fast, slow)
        if not kind:
            kind, detail = helpers_differ(files, fast)
        report.batches += 1
        report.cases += len(files)
        report.taken += sum(taken(f) for f in files)
        if isinstance(slow, Decoded):
            report.records_in += slow.records_in
            report.rows += slow.rows.num_rows
            report.quarantined += sum(q.records for q in slow.quarantine)
        if kind.startswith("crash: both") and len(files) > 1:
            # One file that crashes both decoders would hide what the others show: each alone.
            for f in files:
                found = compare([f])
                if found is not None and found.kind not in kinds:
                    kind, detail, files = found.kind, found.detail, [f]
                    break
        if kind and kind not in kinds:
            kinds.add(kind)
            found = Finding(kind, detail, tuple(files))
            if shrink_if(kind):
                found = minimal(found, shrink_seconds)
            report.findings.append(found)
            if log:
                log(f"FINDING {found.kind}: {found.detail}\n  files: {list(found.files)!r}")
        if log and time.monotonic() >= next_log:
            next_log += 30
            log(_progress(report, time.monotonic() - started, len(seen)))
    report.seconds = time.monotonic() - started
    return report


_BUCKETS = np.array([1, 2, 3, 7, 15, 31, 127])  # AFL's: 1, 2, 3, 4-7, 8-15, 16-31, 32-127, 128+


def _edges(counts: bytes) -> set[int]:
    """(edge, hit-count bucket) pairs, as 8 * edge + bucket, of an edge map."""
    c = np.frombuffer(counts, np.uint8)
    hit = np.flatnonzero(c)
    return set((hit * 8 + np.searchsorted(_BUCKETS, c[hit])).tolist())


def _progress(r: Report, elapsed: float, edges: int) -> str:
    return (
        f"{elapsed:6.0f} s  {r.cases:,} cases ({r.cases / max(elapsed, 1e-9):,.0f}/s), "
        f"{r.taken:,} taken by the C decoder, {r.records_in:,} records, "
        f"{r.quarantined:,} quarantined, {edges:,} edges, {len(r.findings)} findings"
    )


def default_seeds(repo: Path) -> list[dict[str, Any]]:
    real = repo.parent / "shared" / "real_logs"
    return load_seeds(repo, real if real.is_dir() else None)
