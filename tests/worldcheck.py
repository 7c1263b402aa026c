"""A simulated world read back from its files, and its configuration applied record by record.

``reference_tenants`` is a deliberately plain reading of what each strategy kind, lookup and field
mapping of ``tenantwatch.toml`` means (one record at a time, Python ``re``, no session expiry),
independent of the ingestion engine. The simulator's tests use it to check that a world's logs,
its configuration and its ground truth (``truth.parquet``) agree: every event that the truth
gives a tenant is resolved to exactly that tenant, and no other event gets one.
"""

from __future__ import annotations

import csv
import gzip
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pipeline import config as c
from pipeline import fieldpath

Key = tuple[str, str]  # (source, event id)
_ASSUMED = re.compile(r"^arn:[\w-]+:sts::\d*:assumed-role/(?P<role>[^/]+)/(?P<session>.+)$")
_METHOD_ARN = re.compile(r"^arn:[\w-]+:execute-api:[^:]*:[^:]*:[^/]+/[^/]+/[A-Z*]+(/.*)?$")


@dataclass
class World:
    """Every record a world wrote, by source, with the id the lake gives it."""

    root: Path
    cfg: c.Config
    cloudtrail: list[dict[str, Any]] = field(default_factory=list)
    apigateway: list[dict[str, Any]] = field(default_factory=list)
    authorizer: list[dict[str, Any]] = field(default_factory=list)
    ct_files: list[str] = field(default_factory=list)

    def event_id(self, source: str, rec: dict[str, Any]) -> str | None:
        if source == "cloudtrail":
            return rec.get("eventID")
        fields = getattr(self.cfg.sources, source)
        paths = fieldpath.parse_many(
            fields.request_id if source == "apigateway" else fields.event_id
        )
        return fieldpath.first_of(paths, rec)

    def records(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for source in ("cloudtrail", "apigateway", "authorizer"):
            for rec in getattr(self, source):
                yield source, rec

    def by_id(self) -> dict[Key, dict[str, Any]]:
        return {(s, str(self.event_id(s, r))): r for s, r in self.records()}

    def truth(self) -> dict[Key, tuple[str | None, str | None]]:
        t = pq.read_table(self.root / "truth.parquet").to_pylist()
        return {(r["source"], r["event_id"]): (r["actor_tenant"], r["target_tenant"]) for r in t}


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    for line in gzip.decompress(path.read_bytes()).decode().splitlines():
        message = line.split(" ", 1)[1]
        if message.startswith("{"):
            yield json.loads(message)


def read_world(root: Path) -> World:
    w = World(root, c.load_config(root / "tenantwatch.toml", environ={}))
    for p in sorted(root.glob("AWSLogs/**/*.json.gz")):
        rel = p.relative_to(root).as_posix()
        if "/CloudTrail/" in rel:
            w.ct_files.append(rel)
            w.cloudtrail += json.loads(gzip.decompress(p.read_bytes()))["Records"]
    w.apigateway = [m for p in sorted(root.glob("apigateway/**/*.gz")) for m in _lines(p)]
    w.authorizer = [m for p in sorted(root.glob("authorizer/**/*.gz")) for m in _lines(p)]
    return w


# --- lookups ---------------------------------------------------------------------------------


def load_lookups(cfg: c.Config) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for lk in cfg.tenancy.lookup:
        if lk.values:
            out[lk.name] = dict(lk.values)
            continue
        text = Path(lk.file).read_text()
        rows = (
            json.loads(text)
            if lk.file.endswith(".json")
            else list(csv.DictReader(text.splitlines()))
        )
        out[lk.name] = {str(r[lk.key]): str(r[lk.tenant]) for r in rows}
    return out


# --- strategies --------------------------------------------------------------------------------


class Resolver:
    def __init__(self, cfg: c.Config) -> None:
        self.cfg = cfg
        self.lookups = load_lookups(cfg)
        self.tags: dict[str, dict[str, str]] = {}  # access key id -> session tags
        self.origin: dict[str, str] = {}  # access key id -> tenant of whoever assumed it

    def _candidate(self, value: str | None, pattern: str, lookup: str) -> str | None:
        if value is None:
            return None
        if pattern:
            m = re.search(pattern, value)
            if not m or not m.group("tenant"):
                return None
            value = m.group("tenant")
        return self.lookups[lookup].get(value) if lookup else value

    def _field(self, s: c.Field, source: str, rec: dict[str, Any]) -> str | None:
        if s.source != source:
            return None
        for path, allowed in s.when.items():
            if fieldpath.parse(path).first(rec) not in allowed:
                return None
        for value in fieldpath.parse(s.path).values(rec):
            got = self._candidate(value, s.pattern, s.lookup)
            if got is not None:
                return got
        return None

    def actor(self, source: str, rec: dict[str, Any], hints: dict[str, str | None]) -> str | None:
        ident = rec.get("userIdentity") or {}
        key = ident.get("accessKeyId")
        arn = ident.get("arn") or ""
        m = _ASSUMED.match(arn)
        issuer = ((ident.get("sessionContext") or {}).get("sessionIssuer") or {}).get("arn")
        for s in self.cfg.tenancy.actor:
            got: str | None = None
            if isinstance(s, c.Field):
                got = self._field(s, source, rec)
            elif source != "cloudtrail":
                if isinstance(s, c.AuthorizerContext):
                    got = hints.get("claim")
            elif isinstance(s, c.SessionTag):
                got = self.tags.get(key, {}).get(s.key) if key else None
            elif isinstance(s, c.SessionOrigin):
                got = self.origin.get(key) if key else None
            elif isinstance(s, c.RoleSessionName) and m:
                if not s.roles or m.group("role") in s.roles:
                    got = self._candidate(m.group("session"), s.pattern, s.lookup)
            elif isinstance(s, c.RoleArn):
                got = self._candidate(issuer or arn or None, s.pattern, s.lookup)
            if got is not None:
                return got
        return None

    def target(self, source: str, rec: dict[str, Any], hints: dict[str, str | None]) -> str | None:
        p = rec.get("requestParameters") or {}
        if not isinstance(p, dict):
            p = {}
        for s in self.cfg.tenancy.target:
            got: str | None = None
            if isinstance(s, c.Field):
                got = self._field(s, source, rec)
            elif source != "cloudtrail":
                if isinstance(s, c.ApiPath):
                    got = self._candidate(hints.get("path"), s.pattern, s.lookup)
                elif isinstance(s, c.Subdomain):
                    got = self._candidate(hints.get("host"), s.pattern, s.lookup)
            elif isinstance(s, c.S3Key) and (not s.buckets or p.get("bucketName") in s.buckets):
                key = p.get("key") if isinstance(p.get("key"), str) else p.get("prefix")
                got = self._candidate(key or None, s.pattern, s.lookup)
            elif isinstance(s, c.S3Bucket):
                got = self._candidate(p.get("bucketName"), s.pattern, s.lookup)
            elif isinstance(s, c.DynamoDBKey) and (not s.tables or p.get("tableName") in s.tables):
                key = p.get("key") if isinstance(p.get("key"), dict) else {}
                first = next((v.get("S") for v in key.values() if isinstance(v, dict)), None)
                got = self._candidate(first, s.pattern, s.lookup)
            elif isinstance(s, c.DynamoDBTable):
                got = self._candidate(p.get("tableName"), s.pattern, s.lookup)
            if got is not None:
                return got
        return None

    def learn(self, rec: dict[str, Any], actor: str | None) -> None:
        """What an AssumeRole* teaches about the session it starts."""
        creds = (rec.get("responseElements") or {}).get("credentials") or {}
        new_key = creds.get("accessKeyId")
        if not new_key:
            return
        params = rec.get("requestParameters") or {}
        tags = {t["key"]: t["value"] for t in params.get("tags") or ()}
        self.tags.setdefault(new_key, {}).update(tags)
        if actor is not None:
            self.origin.setdefault(new_key, actor)


def _hints(cfg: c.Config, source: str, rec: dict[str, Any]) -> dict[str, str | None]:
    if source == "apigateway":
        f = cfg.sources.apigateway
        claim_paths = f.tenant_claim or tuple(
            spelling
            for s in cfg.tenancy.actor
            if isinstance(s, c.AuthorizerContext)
            for spelling in (
                f"authorizer{s.key[:1].upper()}{s.key[1:]}",
                f"authorizer.{s.key}",
                f"authorizer_{s.key}",
            )
        )
        path = fieldpath.first_of(fieldpath.parse_many(f.path), rec)
        stage = fieldpath.first_of(fieldpath.parse_many(f.stage), rec)
        if path and stage and path.startswith(f"/{stage}/"):
            path = path[len(stage) + 1 :]
        return {
            "claim": _claim(rec, claim_paths),
            "path": path,
            "host": fieldpath.first_of(fieldpath.parse_many(f.domain), rec),
        }
    if source == "authorizer":
        a = cfg.sources.authorizer
        arn = fieldpath.first_of(fieldpath.parse_many(a.method_arn), rec)
        m = _METHOD_ARN.match(arn or "")
        return {
            "claim": fieldpath.first_of(fieldpath.parse_many(a.tenant_claim), rec),
            "path": m.group(1) if m else None,
            "host": None,
        }
    return {}


def _claim(rec: dict[str, Any], paths: str | tuple[str, ...]) -> str | None:
    return fieldpath.first_of(fieldpath.parse_many(paths), rec)


def reference_tenants(w: World) -> dict[Key, tuple[str | None, str | None]]:
    """(actor tenant, target tenant) of every record, by the configuration's plain meaning."""
    r = Resolver(w.cfg)
    out: dict[Key, tuple[str | None, str | None]] = {}
    # Sessions first, in time order (a chain of roles learns its origin hop by hop): a session's
    # first calls may be logged a second before the AssumeRole that started it.
    assumes = [x for x in w.cloudtrail if x["eventName"].startswith("AssumeRole")]
    for rec in sorted(assumes, key=lambda x: x["eventTime"]):
        r.learn(rec, r.actor("cloudtrail", rec, {}))
    for rec in w.cloudtrail:
        key = ("cloudtrail", rec["eventID"])
        out[key] = (r.actor("cloudtrail", rec, {}), r.target("cloudtrail", rec, {}))
    for source in ("apigateway", "authorizer"):
        for rec in getattr(w, source):
            hints = _hints(w.cfg, source, rec)
            key = (source, str(w.event_id(source, rec)))
            out[key] = (r.actor(source, rec, hints), r.target(source, rec, hints))
    return out
