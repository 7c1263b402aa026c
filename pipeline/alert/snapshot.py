"""Forensic snapshots: an incident's evidence events, written once, verifiable later.

A snapshot is a folder ``<root>/<incident id>/<content hash>/`` holding

- ``events.parquet``: the normalized events (``schema.EVENTS`` without ``raw``),
- ``raw.parquet``: ``event_id``, ``event_time``, ``source`` and the original record (``raw``,
  secrets already replaced by fingerprints at ingestion),
- ``manifest.json``: the query that selected them, row counts, the time span, and the SHA-256 and
  size of each file. It is written last, so a folder without one is an interrupted write.

The notification carries the manifest's location and its SHA-256; since the manifest pins every
file's hash, that one hash vouches for the whole snapshot. When an incident's story grows (a later
signal), a new part is written beside the first: the whole story's evidence so far, its manifest
naming the earlier part's folder and SHA-256 (``previous``, ``part``). So the latest hash vouches
for every part before it, and ``verify`` follows the chain back to the first part. There is no
wall-clock time in a manifest: the same evidence gives the same bytes, so a re-run after a crash
finds its own files and goes on.

Written once: on S3 every object is put with ``IfNoneMatch="*"`` (the PUT fails if the key
exists) and, when the bucket has Object Lock, under retention; locally files are linked into
place, which fails if the name exists. An existing file with other bytes is never replaced: the
content hash in the folder name means different evidence goes to a different folder.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import posixpath
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline import aws
from pipeline.alert.incidents import Incident
from pipeline.alert.query import evidence_query
from pipeline.errors import TenantwatchError
from pipeline.lake import SNAPSHOTS, Lake, read_events

MANIFEST = "manifest.json"
INCOMING = ".incoming"  # local stores: files being written, beside the incidents' folders
FORMAT = "tenantwatch-snapshot/1"
RAW_COLUMNS = ["event_id", "event_time", "source", "raw"]


class SnapshotError(TenantwatchError):
    """A snapshot cannot be written without overwriting, or cannot be read."""


@dataclass(frozen=True)
class Written:
    manifest_uri: str
    sha256: str  # of manifest.json
    rows: int


# --- where snapshots go ------------------------------------------------------------------------


class Store(Protocol):
    def uri(self, rel: str) -> str: ...
    def put_new(self, rel: str, data: bytes, sha256: str) -> None: ...
    def get(self, rel: str) -> bytes: ...
    def list(self, rel: str) -> list[str]: ...


class LocalStore:
    def __init__(self, root: str) -> None:
        self.root = Path(root).resolve()

    def uri(self, rel: str) -> str:
        return str(self.root / rel)

    def put_new(self, rel: str, data: bytes, sha256: str) -> None:
        dest = self.root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        # Written beside the snapshots, not in one: every file in a snapshot's folder is
        # accounted for by ``verify``, and a crash must not leave one there.
        incoming = self.root / INCOMING
        incoming.mkdir(parents=True, exist_ok=True)
        tmp = incoming / f"{uuid.uuid4().hex}.tmp"
        tmp.write_bytes(data)
        try:
            # link() fails if ``dest`` exists: atomic create-if-absent, never a replace.
            os.link(tmp, dest)
        except FileExistsError:
            _same_or_fail(self.uri(rel), dest.read_bytes(), sha256)
        finally:
            tmp.unlink()
        if rel.endswith(MANIFEST):
            # Read-only: a careless ``open(..., "w")`` fails. (Not tamper-proof: that is
            # what S3 Object Lock is for.)
            for f in dest.parent.iterdir():
                f.chmod(0o444)

    def get(self, rel: str) -> bytes:
        try:
            return (self.root / rel).read_bytes()
        except FileNotFoundError:
            raise SnapshotError(f"{self.uri(rel)}: not found") from None

    def list(self, rel: str) -> list[str]:
        base = self.root / rel
        if not base.is_dir():
            return []
        # Every file below, hidden ones and those in sub-folders too: anything added counts.
        return sorted(p.relative_to(base).as_posix() for p in base.rglob("*") if not p.is_dir())


class S3Store:
    def __init__(self, uri: str, region: str = "", lock: tuple[str, int] = ("GOVERNANCE", 365)):
        bucket, _, prefix = uri[len("s3://") :].partition("/")
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.client = aws.client("s3", region)
        self.lock_mode, self.lock_days = lock
        self._lock: dict[str, Any] | None = None

    def _key(self, rel: str) -> str:
        return posixpath.join(self.prefix, rel) if self.prefix else rel

    def uri(self, rel: str) -> str:
        return f"s3://{self.bucket}/{self._key(rel)}"

    def _lock_args(self) -> dict[str, Any]:
        """Retention for a new object: none if the bucket has no Object Lock; the bucket's own
        default rule if it has one (an explicit, weaker retention would override it); ours if
        Object Lock is on without a default rule."""
        if self._lock is None:
            try:
                conf = self.client.get_object_lock_configuration(Bucket=self.bucket)
            except Exception as exc:
                if aws.error_code(exc) != "ObjectLockConfigurationNotFoundError":
                    raise
                conf = {}
            olc = conf.get("ObjectLockConfiguration", {})
            if olc.get("ObjectLockEnabled") != "Enabled" or olc.get("Rule", {}).get(
                "DefaultRetention"
            ):
                self._lock = {}
            else:
                until = datetime.now(UTC) + timedelta(days=self.lock_days)
                self._lock = {"ObjectLockMode": self.lock_mode, "ObjectLockRetainUntilDate": until}
        return self._lock

    def put_new(self, rel: str, data: bytes, sha256: str) -> None:
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=self._key(rel),
                Body=data,
                IfNoneMatch="*",
                # S3 checks the bytes it received against our hash and keeps it with the object
                # (Object Lock also requires a checksum on every PUT).
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=base64.b64encode(bytes.fromhex(sha256)).decode(),
                **self._lock_args(),
            )
        except Exception as exc:
            # 412: the key exists. 409: a concurrent conditional PUT won the race.
            if aws.error_code(exc) not in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise
            _same_or_fail(self.uri(rel), self.get(rel), sha256)

    def get(self, rel: str) -> bytes:
        try:
            body: bytes = self.client.get_object(Bucket=self.bucket, Key=self._key(rel))[
                "Body"
            ].read()
        except Exception as exc:
            if aws.error_code(exc) in ("NoSuchKey", "404"):
                raise SnapshotError(f"{self.uri(rel)}: not found") from None
            raise
        return body

    def list(self, rel: str) -> list[str]:
        prefix = self._key(rel).rstrip("/") + "/"
        names = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        ):
            names += [o["Key"][len(prefix) :] for o in page.get("Contents", [])]
        return sorted(n for n in names if n)


def _same_or_fail(uri: str, existing: bytes, sha256: str) -> None:
    if hashlib.sha256(existing).hexdigest() != sha256:
        raise SnapshotError(f"{uri}: exists with other content; a snapshot is never overwritten")


def open_store(root: str, region: str = "", lock: tuple[str, int] = ("GOVERNANCE", 365)) -> Store:
    if root.startswith("s3://"):
        return S3Store(root, region, lock)
    if "://" in root:
        raise SnapshotError(f"snapshot location {root!r}: expected a folder or s3://bucket/prefix")
    return LocalStore(root)


def default_root(lake: Lake, configured: str) -> str:
    return configured or lake.uri(SNAPSHOTS).rstrip("/")


# --- writing -----------------------------------------------------------------------------------


def _parquet(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def evidence(
    lake: Lake, inc: Incident, margin: timedelta, max_rows: int
) -> tuple[pa.Table, dict[str, Any]]:
    """The evidence events (full ``EVENTS`` rows, in time order) and the query that chose them."""
    q = evidence_query(inc, margin)
    table = read_events(lake, q.since, q.until, tenants=q.tenants or None, where=q.arrow_filter())
    table = table.sort_by([("event_time", "ascending"), ("event_id", "ascending")])
    matched = table.num_rows
    if matched > max_rows:
        table = table.slice(0, max_rows)
    found = 0
    if q.event_ids:
        found = pc.sum(pc.is_in(pa.array(list(q.event_ids)), table["event_id"])).as_py() or 0
    info = {
        **q.as_dict(),
        "rows_matched": matched,
        "rows_written": table.num_rows,
        "truncated": matched > max_rows,
        "sample_event_ids": {"listed": len(q.event_ids), "found": found},
    }
    return table, info


def take(
    lake: Lake,
    store: Store,
    inc: Incident,
    margin: timedelta,
    max_rows: int,
    sql: str,
    previous: tuple[str, str] | None = None,
) -> Written:
    """Write the snapshot of ``inc`` (idempotent for the same evidence; never overwrites).

    ``previous``: the manifest URI and SHA-256 of the incident's latest part, when the story has
    grown since. The new part's manifest records that part's folder and hash (a chain: each part
    vouches for the one before), unless the evidence is what that part already holds: then no
    part is added and the previous one is returned.
    """
    table, info = evidence(lake, inc, margin, max_rows)
    normalized = table.drop_columns(["raw"])
    files = {
        "events.parquet": _parquet(normalized),
        "raw.parquet": _parquet(table.select(RAW_COLUMNS)),
    }
    hashes = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    chain: dict[str, Any] | None = None
    part = 1
    if previous is not None:
        prev_folder, prev = _previous(store, *previous)
        if sorted(x["sha256"] for x in prev["files"]) == sorted(hashes.values()):
            return Written(previous[0], previous[1], table.num_rows)
        part = int(prev.get("part") or 1) + 1
        chain = {"folder": prev_folder, "sha256": previous[1], "part": part - 1}
    basis = "".join(hashes[n] for n in sorted(hashes)) + (chain["sha256"] if chain else "")
    content = hashlib.sha256(basis.encode()).hexdigest()
    folder = f"{inc.incident_id}/{content[:16]}"
    times = table["event_time"]
    manifest = {
        "format": FORMAT,
        "incident_id": inc.incident_id,
        "detector": inc.detector,
        "dedup_key": inc.dedup_key,
        "revision": inc.revision,
        "part": part,
        "previous": chain,
        "signals": [
            {"detector": x.detector, "kind": x.kind, "dedup_key": x.dedup_key} for x in inc.signals
        ],
        "lake": lake.uri(""),
        "query": {**info, "sql": sql},
        "time_span": {
            "first_event": _iso(pc.min(times).as_py()) if len(table) else None,
            "last_event": _iso(pc.max(times).as_py()) if len(table) else None,
        },
        "files": [
            {
                "name": name,
                "rows": table.num_rows,
                "bytes": len(data),
                "sha256": hashes[name],
            }
            for name, data in sorted(files.items())
        ],
    }
    for name, data in sorted(files.items()):
        store.put_new(f"{folder}/{name}", data, hashes[name])
    body = (json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n").encode()
    digest = hashlib.sha256(body).hexdigest()
    store.put_new(f"{folder}/{MANIFEST}", body, digest)
    return Written(store.uri(f"{folder}/{MANIFEST}"), digest, table.num_rows)


def _previous(store: Store, uri: str, sha256: str) -> tuple[str, dict[str, Any]]:
    """The folder (relative to the store) and manifest of the part at ``uri``, checked against
    the hash the incident recorded: a chain is never extended from a part that changed."""
    base = store.uri(MANIFEST)[: -len(MANIFEST)]
    if not uri.startswith(base) or not uri.endswith(f"/{MANIFEST}"):
        raise SnapshotError(f"{uri}: the earlier part is not in the snapshot store {base}")
    folder = uri[len(base) : -len(MANIFEST) - 1]
    raw = store.get(f"{folder}/{MANIFEST}")
    if hashlib.sha256(raw).hexdigest() != sha256:
        raise SnapshotError(f"{uri}: SHA-256 is not the {sha256} the incident recorded")
    manifest: dict[str, Any] = json.loads(raw)
    return folder, manifest


def _iso(ts: Any) -> str | None:
    return None if ts is None else ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- verifying ---------------------------------------------------------------------------------


@dataclass
class Verified:
    manifest_uri: str
    manifest_sha256: str
    ok: bool = True
    files: list[dict[str, Any]] = field(default_factory=list)  # name, status, expected, actual
    problems: list[str] = field(default_factory=list)
    part: int = 1
    # The earlier parts, newest first, each checked against the hash the later one recorded.
    earlier: list[Verified] = field(default_factory=list)


MAX_PARTS = 1000  # a chain longer than this is not ours (or loops): stop following it


def verify(uri: str, expect_sha256: str | None = None, region: str = "") -> Verified:
    """Re-hash a snapshot: ``uri`` is its ``manifest.json`` or its folder.

    Reports each file as ``ok``, ``changed`` (other bytes), ``missing``, or ``unexpected`` (in the
    folder or below it but not in the manifest: hidden files and sub-folders count); and the
    manifest itself as changed when ``expect_sha256`` (the hash the notification carried)
    differs. A part of a story's snapshot names the part before it and that part's hash: each
    earlier part is verified too, its manifest against the recorded hash (``earlier``).
    """
    folder_uri = uri[: -len(MANIFEST)].rstrip("/") if uri.endswith(MANIFEST) else uri.rstrip("/")
    out, prev = _verify_part(folder_uri, expect_sha256, region)
    root = folder_uri.rsplit("/", 2)[0]  # parts are folders of one store: <root>/<incident>/<hash>
    seen, later = {folder_uri}, out
    while prev is not None:
        prev_uri = f"{root}/{prev['folder']}"
        if prev_uri in seen or len(out.earlier) >= MAX_PARTS:
            out.ok = False
            out.problems.append(f"part {later.part}: the chain of earlier parts loops")
            break
        seen.add(prev_uri)
        try:
            part, nxt = _verify_part(prev_uri, str(prev.get("sha256") or "-"), region)
        except SnapshotError as exc:
            out.ok = False
            out.problems.append(f"part {later.part}: the earlier part cannot be read: {exc}")
            break
        out.earlier.append(part)
        out.ok = out.ok and part.ok
        later, prev = part, nxt
    return out


def _verify_part(
    folder_uri: str, expect_sha256: str | None, region: str
) -> tuple[Verified, dict[str, Any] | None]:
    """One part, and the earlier part its manifest names (None: the first)."""
    store = open_store(folder_uri, region)
    raw = store.get(MANIFEST)
    digest = hashlib.sha256(raw).hexdigest()
    out = Verified(store.uri(MANIFEST), digest)
    if expect_sha256 and expect_sha256.lower() != digest:
        out.ok = False
        out.problems.append(f"{MANIFEST}: SHA-256 {digest} is not the expected {expect_sha256}")
    try:
        manifest = json.loads(raw)
        entries = manifest["files"]
    except (ValueError, KeyError, TypeError):
        out.ok = False
        out.problems.append(f"{MANIFEST}: not a tenantwatch snapshot manifest")
        return out, None
    part = manifest.get("part")
    out.part = part if isinstance(part, int) and not isinstance(part, bool) else 1
    prev = manifest.get("previous")
    if prev is not None and not (
        isinstance(prev, dict)
        and re.fullmatch(r"[0-9a-f]{32}/[0-9a-f]{16}", str(prev.get("folder")))
    ):
        # Only a sibling snapshot folder is followed: never a path someone wrote in.
        out.ok = False
        out.problems.append(f"{MANIFEST}: the earlier part it names is not a snapshot folder")
        prev = None
    listed = set()
    for e in entries:
        name = str(e["name"])
        listed.add(name)
        try:
            data = store.get(name)
        except SnapshotError:
            out.files.append(
                {"name": name, "status": "missing", "expected": e["sha256"], "actual": None}
            )
            out.ok = False
            continue
        actual = hashlib.sha256(data).hexdigest()
        status = "ok" if actual == e["sha256"] and len(data) == e["bytes"] else "changed"
        out.files.append(
            {"name": name, "status": status, "expected": e["sha256"], "actual": actual}
        )
        if status != "ok":
            out.ok = False
    for name in store.list(""):
        if name not in listed and name != MANIFEST:
            out.files.append(
                {"name": name, "status": "unexpected", "expected": None, "actual": None}
            )
            out.ok = False
    return out, prev
