"""Containment: the first step after the page. An entry in a DynamoDB table turns part of the
SaaS off for one subject until it expires, and the SaaS's Lambda authorizer obeys it
(``infra/authorizer/``: the reference one).

An entry names its **subject** as ``<kind>#<value>``: a tenant (``tenant#t0042``), a principal
(an ARN or an API principal id), a token by its fingerprint (``token#sha256:<16 hex>``, the first
16 hex digits of the SHA-256 of the bearer token, as ``pipeline.ingest.fingerprint`` makes them;
never the token) or a source address (``address#203.0.113.7``). Its **mode** is ``suspend``
(every request denied) or ``read-only`` (only GET, HEAD and OPTIONS allowed). It **expires** at a
time given as ISO text (``expires``) and as epoch seconds (``expires_at``, the table's TTL
attribute); DynamoDB deletes expired items within a day or two, not at the second, so readers
(``list_entries``, the authorizer) judge ``expires`` themselves.

The table's key is the subject (partition) and the containment id (sort): one subject can be
contained for several incidents at once, and an authorizer finds all of a subject's entries with
one Query. A containment id is a hash of its incident and subject (``containment_id``): contained
again for the same incident, a subject's entry is rewritten (a new mode or expiry), and automatic
containment run again for an incident finds the entry it wrote rather than adding one.

Every action, a containment or its lift, is recorded in the lake as a row of
``schema.CONTAINMENT`` (``incidents/containment/``, beside the incident's verdicts), written
after the table took it: a row says what was done, never what was only tried. ``tenantwatch
incident show`` lists an incident's rows.

Automatic containment (``[containment] auto``, off by default) runs as the alert stage opens an
incident (``auto_contain``): an entry per rule that matches and subject it names, written only if
none with its id was ever recorded and none is in the table (a conditional write), so a re-run
of the stage writes nothing twice, and an entry people lifted is not written again. A write that
fails is reported in the stage's summary; the stage goes on.

A tenant named on the command line must be one the project knows (``check_tenant``): named by the
configuration (its ``[[relationships]]`` and break-glass tickets, or a ``[[tenancy.lookup]]``
table's tenants), one of the incident's tenants, or an actor or target tenant of an event in the
lake. A misspelt tenant would otherwise be contained to no effect while the real one goes on.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn

import pyarrow as pa

from pipeline import aws, schema
from pipeline.config import BreakGlass, Config, Consultant, Organisation, Reseller
from pipeline.errors import AwsSetupError, InputError, TenantwatchError
from pipeline.lake import CONTAINMENT, Lake, containment_file

if TYPE_CHECKING:
    pass

MODES = schema.CONTAINMENT_MODES
KINDS = schema.CONTAINMENT_KINDS
# What ``read-only`` still allows.
READS = ("GET", "HEAD", "OPTIONS")
# Who acted, in the lake's records of automatic containment.
AUTO_ACTOR = "tenantwatch"
# A token subject as given: its fingerprint, with or without the lake's prefixes.
TOKEN = re.compile(r"(?:redacted:)?(?:sha256:)?(?P<hex>[0-9a-f]{16})")


class ContainmentTableError(TenantwatchError):
    """The containment table could not be read or written: it does not exist, AWS refused, or
    the network failed. Nothing was contained (or lifted)."""

    exit_code = 1


# --- subjects and entries ------------------------------------------------------------------------


@dataclass(frozen=True)
class Subject:
    """What an entry contains: ``kind`` (one of ``KINDS``) and its value, in canonical form."""

    kind: str
    value: str

    @property
    def key(self) -> str:
        """The entry's partition key: ``<kind>#<value>``."""
        return f"{self.kind}#{self.value}"

    @classmethod
    def of(cls, kind: str, value: str) -> Subject:
        """A subject from what a person or an incident gives, canonical (a token's fingerprint
        as ``sha256:<16 hex>`` whichever way it was written, an address as ``ipaddress`` writes
        it); ``InputError`` (exit code 2) for a value of the wrong shape."""
        text = value.strip()
        if kind not in KINDS:
            raise InputError(f"{kind!r}: expected one of {', '.join(KINDS)}")
        if not text:
            raise InputError(f"--{kind}: expected a value")
        if kind == "token":
            m = TOKEN.fullmatch(text.lower())
            if not m:
                raise InputError(
                    f"--token: expected a token fingerprint, sha256:<16 hex digits> (as an "
                    f"incident's session entity shows it), got {value!r}"
                )
            text = f"sha256:{m['hex']}"
        elif kind == "address":
            try:
                text = str(ipaddress.ip_address(text))
            except ValueError:
                raise InputError(f"--address: expected an IP address, got {value!r}") from None
        return cls(kind, text)

    @classmethod
    def parse(cls, key: str) -> Subject:
        """A subject from its key, ``<kind>#<value>``."""
        kind, sep, value = key.partition("#")
        if not sep:
            raise InputError(f"{key!r}: expected <kind>#<value> ({', '.join(KINDS)})")
        return cls.of(kind, value)


def containment_id(incident_id: str, subject: Subject) -> str:
    """The id of the entry containing ``subject`` for the incident: the same for the same pair,
    whoever writes it and however often."""
    digest = hashlib.sha256(f"{incident_id}\x1f{subject.key}".encode()).hexdigest()
    return f"c-{digest[:20]}"


@dataclass(frozen=True)
class Entry:
    """One item of the containment table."""

    containment_id: str
    subject: Subject
    mode: str
    expires: datetime
    reason: str
    incident_id: str
    created_by: str
    created_at: datetime
    origin: str = "cli"  # "cli" or "auto"

    def expired(self, now: datetime) -> bool:
        return self.expires <= now

    def _texts(self) -> dict[str, str]:
        """Its fields as text, as the table item and ``--json`` both give them."""
        return {
            "subject": self.subject.key,
            "containment_id": self.containment_id,
            "kind": self.subject.kind,
            "value": self.subject.value,
            "mode": self.mode,
            "expires": _iso(self.expires),
            "reason": self.reason,
            "incident_id": self.incident_id,
            "created_by": self.created_by,
            "created_at": _iso(self.created_at),
            "origin": self.origin,
        }

    def item(self) -> dict[str, Any]:
        """The item as DynamoDB takes it (typed attribute values)."""
        item: dict[str, Any] = {k: {"S": v} for k, v in self._texts().items()}
        item["expires_at"] = {"N": str(int(self.expires.timestamp()))}
        return item

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Entry:
        def s(name: str) -> str:
            return str(item.get(name, {}).get("S", ""))

        subject = s("subject")
        kind, _, value = subject.partition("#")
        return cls(
            containment_id=s("containment_id"),
            subject=Subject(s("kind") or kind, s("value") or value),
            mode=s("mode"),
            expires=_time(s("expires"), item.get("expires_at", {}).get("N")),
            reason=s("reason"),
            incident_id=s("incident_id"),
            created_by=s("created_by"),
            created_at=_time(s("created_at"), None),
            origin=s("origin") or "cli",
        )

    def as_dict(self, now: datetime | None = None) -> dict[str, Any]:
        """JSON-able, for ``--json`` (with ``expired`` when ``now`` is given)."""
        texts = self._texts()
        out: dict[str, Any] = {"containment_id": texts.pop("containment_id"), **texts}
        if now is not None:
            out["expired"] = self.expired(now)
        return out


def utcnow() -> datetime:
    """The clock containment is judged by: when an entry is written or lifted, and whether it
    has expired (``tenantwatch contain``, ``--list``, ``--lift``, ``incident show``, automatic
    containment). One function, so that a test moves time past an expiry instead of waiting."""
    return datetime.now(UTC)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _time(text: str, epoch: str | None) -> datetime:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        # An item written by other hands: its TTL is what DynamoDB goes by; else long past.
        return datetime.fromtimestamp(int(epoch or 0), UTC)


def expiry(text: str, now: datetime) -> datetime:
    """``--expires``: a duration from now (``30m``, ``4h``, ``2d``) or an ISO date-time (UTC
    when it names no zone), which must lie in the future; ``InputError`` otherwise."""
    from pipeline.timeparse import as_time, duration

    try:
        when = now + duration(text)
    except ValueError:
        try:
            parsed = as_time(text)
        except ValueError:
            raise InputError(
                f"--expires: expected a duration such as 30m, 4h or 2d, or an ISO date-time, "
                f"got {text!r}"
            ) from None
        assert parsed is not None
        when = parsed
    if when <= now:
        raise InputError(f"--expires: {_iso(when)} is not in the future")
    return when


# --- the table ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    """The DynamoDB containment table, through ``pipeline.aws`` (``AWS_ENDPOINT_URL`` honoured).
    Every failure is a ``ContainmentTableError`` naming the table and what AWS said."""

    name: str
    region: str = ""

    def _client(self) -> Any:
        return aws.client("dynamodb", self.region)

    def _fail(self, doing: str, exc: Exception) -> NoReturn:
        if type(exc).__name__ in ("NoCredentialsError", "NoRegionError", "PartialCredentialsError"):
            raise AwsSetupError(f"containment table {self.name!r}: {exc}") from None
        said = " ".join(str(exc).split())
        raise ContainmentTableError(
            f"containment table {self.name!r} cannot be {doing}: {said}"
        ) from exc

    def put(self, entry: Entry, *, only_new: bool = False) -> bool:
        """Write ``entry``; with ``only_new``, only if no item has its key (False: one had)."""
        kwargs: dict[str, Any] = {"TableName": self.name, "Item": entry.item()}
        if only_new:
            kwargs["ConditionExpression"] = "attribute_not_exists(subject)"
        try:
            self._client().put_item(**kwargs)
        except Exception as exc:
            if only_new and aws.error_code(exc) == "ConditionalCheckFailedException":
                return False
            self._fail("written", exc)
        return True

    def entries(self) -> list[Entry]:
        """Every entry, expired ones included (DynamoDB has not deleted them all yet)."""
        return self._read("scan")

    def find(self, cid: str) -> list[Entry]:
        """The entry with this containment id (a list: none or one)."""
        return self._read(
            "scan",
            FilterExpression="containment_id = :c",
            ExpressionAttributeValues={":c": {"S": cid}},
        )

    def of_subject(self, subject: Subject) -> list[Entry]:
        """Every entry of ``subject`` (one Query, as an authorizer reads them)."""
        return self._read(
            "query",
            KeyConditionExpression="subject = :s",
            ExpressionAttributeValues={":s": {"S": subject.key}},
        )

    def delete(self, entry: Entry) -> bool:
        """Remove ``entry``; False when it was no longer there."""
        key = {"subject": {"S": entry.subject.key}, "containment_id": {"S": entry.containment_id}}
        try:
            got = self._client().delete_item(TableName=self.name, Key=key, ReturnValues="ALL_OLD")
        except Exception as exc:
            self._fail("written", exc)
        return bool(got.get("Attributes"))

    def _read(self, operation: str, **kwargs: Any) -> list[Entry]:
        """Every item a consistent ``query`` or ``scan`` gives, page after page."""
        try:
            pages = self._client().get_paginator(operation)
            return [
                Entry.from_item(item)
                for page in pages.paginate(TableName=self.name, ConsistentRead=True, **kwargs)
                for item in page.get("Items", [])
            ]
        except Exception as exc:
            self._fail("read", exc)


def table_of(cfg: Config, name: str | None = None) -> Table:
    """The table ``name`` (``--table``), else the configuration's (``[containment] table``, or
    ``TENANTWATCH_CONTAINMENT_TABLE``); ``InputError`` when none is named."""
    chosen = (name or cfg.containment.table).strip()
    if not chosen:
        raise InputError(
            "no containment table: give --table, set [containment] table in the configuration "
            "or TENANTWATCH_CONTAINMENT_TABLE"
        )
    return Table(chosen, cfg.containment.region)


# --- the record in the lake ----------------------------------------------------------------------


@dataclass(frozen=True)
class Action:
    """One row of ``schema.CONTAINMENT``: a containment or its lift."""

    action_id: str
    action: str  # "contain" or "lift"
    containment_id: str
    incident_id: str
    subject_kind: str
    subject_value: str
    mode: str | None
    expires: datetime | None
    reason: str
    acted_by: str
    acted_at: datetime
    origin: str
    table_name: str

    @property
    def subject(self) -> str:
        return f"{self.subject_kind}#{self.subject_value}"

    def as_row(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Action:
        return cls(**row)

    @classmethod
    def of(
        cls, action: str, e: Entry, reason: str, by: str, at: datetime, origin: str, table: str
    ) -> Action:
        contain = action == "contain"
        return cls(
            # Sorts in the order the actions were taken, even two taken at the same ``at``.
            action_id=f"{time.time_ns():020d}{uuid.uuid4().hex[:12]}",
            action=action,
            containment_id=e.containment_id,
            incident_id=e.incident_id,
            subject_kind=e.subject.kind,
            subject_value=e.subject.value,
            mode=e.mode if contain else None,
            expires=e.expires if contain else None,
            reason=reason,
            acted_by=by,
            acted_at=at,
            origin=origin,
            table_name=table,
        )


def record(lake: Lake, action: Action) -> None:
    path = containment_file(f"{action.acted_at.astimezone(UTC):%Y-%m-%d}", action.action_id)
    lake.write_table(path, pa.Table.from_pylist([action.as_row()], schema=schema.CONTAINMENT))


def read_actions(lake: Lake, incident_id: str | None = None) -> list[Action]:
    """Every recorded action (of one incident), oldest first."""
    from pipeline.alert import store

    rows = store.read_folder(lake, CONTAINMENT, schema.CONTAINMENT).to_pylist()
    actions = [Action.from_row(r) for r in rows]
    if incident_id is not None:
        actions = [a for a in actions if a.incident_id == incident_id]
    return sorted(actions, key=lambda a: (a.acted_at, a.action_id))


def record_after(lake: Lake, action: Action, table: Table) -> None:
    """Record what the table has just taken; a lake that cannot be written is said as such (the
    entry is in force, or gone, all the same)."""
    try:
        record(lake, action)
    except (OSError, TenantwatchError) as exc:
        done = "in force" if action.action == "contain" else "lifted"
        raise TenantwatchError(
            f"containment {action.containment_id} ({action.subject}) is {done} in table "
            f"{table.name!r}, but the lake could not record it: {exc}"
        ) from exc


# --- containing and lifting ----------------------------------------------------------------------


def contain(
    lake: Lake,
    table: Table,
    incident_id: str,
    subject: Subject,
    mode: str,
    expires: datetime,
    reason: str,
    by: str,
    *,
    now: datetime,
) -> Entry:
    """Write the entry containing ``subject`` for the incident (rewriting that incident's entry
    for it, if any), then record it in the lake."""
    if mode not in MODES:
        raise InputError(f"--mode: expected one of {', '.join(MODES)}, got {mode!r}")
    if not reason.strip():
        raise InputError("--reason: expected a non-empty text (why it is contained)")
    if not by.strip():
        raise InputError("--by: expected who contains it")
    if expires <= now:
        raise InputError(f"--expires: {_iso(expires)} is not in the future")
    entry = Entry(
        containment_id=containment_id(incident_id, subject),
        subject=subject,
        mode=mode,
        expires=expires,
        reason=reason,
        incident_id=incident_id,
        created_by=by,
        created_at=now,
        origin="cli",
    )
    table.put(entry)
    record_after(lake, Action.of("contain", entry, reason, by, now, "cli", table.name), table)
    return entry


@dataclass
class Lifted:
    """What ``lift`` did: the entries it removed now, and, when there was none to remove, the
    latest recorded action of each containment it names (already lifted, or expired)."""

    removed: list[Entry] = field(default_factory=list)
    before: list[Action] = field(default_factory=list)


def lift(lake: Lake, table: Table, target: str, reason: str, by: str, *, now: datetime) -> Lifted:
    """Remove the entry with the containment id ``target``, or every entry of the subject
    ``target`` (``<kind>#<value>``), recording each removal. Nothing to remove but the lake knows
    it: an empty ``removed`` and the latest actions (idempotent). Known nowhere: ``InputError``."""
    target = target.strip()
    if "#" in target:
        subject = Subject.parse(target)
        entries = table.of_subject(subject)
        known = [a for a in read_actions(lake) if a.subject == subject.key]
    else:
        entries = table.find(target)
        known = [a for a in read_actions(lake) if a.containment_id == target]
    out = Lifted()
    for e in entries:
        if table.delete(e):
            why = reason.strip() or "lifted"
            record_after(lake, Action.of("lift", e, why, by, now, "cli", table.name), table)
            out.removed.append(e)
    if out.removed:
        return out
    if not known:
        raise InputError(
            f"no containment {target!r}: not in table {table.name!r}, and none recorded in "
            f"{lake.root} (tenantwatch contain --list --all)"
        )
    latest: dict[str, Action] = {}
    for a in known:
        latest[a.containment_id] = a
    out.before = sorted(latest.values(), key=lambda a: (a.acted_at, a.action_id))
    return out


def list_entries(table: Table, now: datetime, *, include_expired: bool = False) -> list[Entry]:
    """The table's entries in force (with ``include_expired``, those past their ``expires`` that
    DynamoDB has not deleted yet as well), soonest to expire first."""
    entries = [e for e in table.entries() if include_expired or not e.expired(now)]
    return sorted(entries, key=lambda e: (e.expires, e.subject.key, e.containment_id))


# --- which tenants exist --------------------------------------------------------------------------


def _configured_tenants(cfg: Config) -> set[str]:
    out: set[str] = set()
    for rel in cfg.relationships:
        if isinstance(rel, Organisation):
            out |= {rel.parent, *rel.children}
        elif isinstance(rel, Reseller):
            out |= {rel.reseller, *rel.clients}
        elif isinstance(rel, Consultant):
            out |= set(rel.tenants)
        elif isinstance(rel, BreakGlass):
            out |= {t for ticket in rel.tickets for t in ticket.tenants}
    for lk in cfg.tenancy.lookup:
        out |= set(lk.values.values())
    return out


def check_tenant(cfg: Config, lake: Lake, tenant: str, incident_tenants: Iterable[str]) -> str:
    """How the project knows ``tenant`` (words for people), checked cheapest first: the
    configuration's relationships, tickets and inline lookups, the incident's tenants, the
    lake's events (actor or target tenant), then the lookup tables of files and DynamoDB.
    ``InputError`` (exit code 2) when none of them names it."""
    if tenant in _configured_tenants(cfg):
        return "named by the configuration"
    if tenant in set(incident_tenants):
        return "a tenant of the incident"
    from pipeline.lake import tenant_seen

    if tenant_seen(lake, tenant):
        return "seen in the lake's events"
    tables = [lk for lk in cfg.tenancy.lookup if lk.file or lk.dynamodb_table]
    if tables:
        from pipeline.ingest.lookups import load_lookups

        for t in load_lookups(cfg).tables:
            if tenant in set(t.tenants.to_pylist()):
                return f"a tenant of the lookup {t.name!r}"
    where = "[[relationships]], tickets or [[tenancy.lookup]] tables"
    raise InputError(
        f"--tenant: unknown tenant {tenant!r}: the configuration's {where} do not name it, it is "
        f"not one of the incident's tenants, and no event in {lake.root} has it as actor or "
        "target tenant"
    )
