"""``tenantwatch tenancy report``: what tenant resolution made of the events in a lake.

Read while writing ``[tenancy]``: per source, service and action, how many events have an actor
tenant and a target tenant, which strategies resolved them (``actor_tenant_source``,
``target_tenant_source``) and how many carry a conflict; then the actors and resources left
without a tenant, busiest first, with sample values and the field they came from, which is where
a strategy has to look (``tenancy_counts`` reads and groups them, in bounded memory).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa

from pipeline import schema, tenancy_counts, tenancy_sample
from pipeline.config import Config
from pipeline.errors import InputError
from pipeline.lake import EVENTS, Lake
from pipeline.tenancy_sample import StrategySample

# Where each normalized column comes from in the raw record. CloudTrail's names are AWS's; the
# per-line sources read through ``[sources.<source>]``, named by that key.
_CLOUDTRAIL_ACTOR = {
    "actor_session": "userIdentity.accessKeyId",
    "source_ip": "sourceIPAddress",
}
_MAPPED = {
    ("apigateway", "actor_principal"): "principal",
    ("apigateway", "source_ip"): "source_ip",
    ("apigateway", "resource"): "path",
    ("authorizer", "actor_principal"): "principal",
    ("authorizer", "actor_session"): "token_fingerprint",
    ("authorizer", "source_ip"): "source_ip",
    ("authorizer", "resource"): "method_arn",
}


@dataclass(frozen=True)
class Counts:
    """Events of one source, or of one action of a source."""

    events: int
    actor_tenant: int  # events with an actor tenant
    target_tenant: int
    conflicts: int  # events with ``tenant_conflict`` set
    # How many events each strategy kind resolved, busiest first.
    actor_tenant_source: dict[str, int] = field(default_factory=dict)
    target_tenant_source: dict[str, int] = field(default_factory=dict)

    @property
    def actor_share(self) -> float:
        return self.actor_tenant / self.events if self.events else 0.0

    @property
    def target_share(self) -> float:
        return self.target_tenant / self.events if self.events else 0.0


@dataclass(frozen=True)
class Action:
    source: str
    service: str | None
    action: str | None
    counts: Counts


@dataclass(frozen=True)
class Unresolved:
    """Events whose actor (or target) has no tenant, grouped by what names it."""

    source: str
    column: str  # the normalized column the value is in
    field: str  # where that column comes from in the raw record
    value: str  # the group: a value, or its shape with ``*`` / ``{}``
    events: int
    # Of these events, how many resolved the other side (a tenant-scoped event left half done).
    other_side: int
    samples: tuple[str, ...]


@dataclass(frozen=True)
class TenancyReport:
    lake: str
    since: datetime | None
    until: datetime | None
    sources: dict[str, Counts]
    actions: list[Action]  # by source, busiest first
    unresolved_actors: list[Unresolved]  # busiest first
    unresolved_resources: list[Unresolved]
    unresolved_left_off: dict[str, int]  # groups beyond ``top`` not listed, per list
    # What each configured strategy made of a sample of the records (None: not asked for).
    strategies: StrategySample | None = None

    @property
    def events(self) -> int:
        return sum(c.events for c in self.sources.values())

    def as_dict(self) -> dict[str, Any]:
        """One JSON-able object (``--json``)."""

        def counts(c: Counts) -> dict[str, Any]:
            out = asdict(c)
            out["actor_share"] = round(c.actor_share, 6)
            out["target_share"] = round(c.target_share, 6)
            return out

        return {
            "lake": self.lake,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "events": self.events,
            "sources": {s: counts(c) for s, c in self.sources.items()},
            "actions": [
                {"source": a.source, "service": a.service, "action": a.action, **counts(a.counts)}
                for a in self.actions
            ],
            "unresolved_actors": [_unresolved(u, "target_tenant") for u in self.unresolved_actors],
            "unresolved_resources": [
                _unresolved(u, "actor_tenant") for u in self.unresolved_resources
            ],
            "unresolved_left_off": self.unresolved_left_off,
            "strategies": self.strategies.as_dict() if self.strategies else None,
        }


def _unresolved(u: Unresolved, other: str) -> dict[str, Any]:
    out = asdict(u)
    out[f"with_{other}"] = out.pop("other_side")
    out["samples"] = list(u.samples)
    return out


# --- reading the lake -----------------------------------------------------------------------


def build(
    lake_root: str,
    cfg: Config,
    since: datetime | None = None,
    until: datetime | None = None,
    top: int = 20,
    sample: int = tenancy_sample.SAMPLE,
) -> TenancyReport:
    """The report over the events of ``lake_root`` with ``since <= event_time < until`` (either
    open: to the lake's first or last event); ``top`` groups per list of unresolved values;
    the strategies evaluated on up to ``sample`` records per source (0: not at all)."""
    lake = Lake(lake_root)
    if not lake.exists(EVENTS):
        raise InputError(f"lake {lake.root}: no events (run tenantwatch ingest first)")
    actions_t, actors_t, resources_t = tenancy_counts.count(lake, since, until)
    actions = _actions(actions_t)
    sources: dict[str, Counts] = {}
    for src in schema.SOURCES:
        mine = [a.counts for a in actions if a.source == src]
        if mine:
            sources[src] = _sum(mine)
    actors = _groups(actors_t, cfg)
    resources = _groups(resources_t, cfg)
    return TenancyReport(
        lake=lake.root,
        since=since,
        until=until,
        sources=sources,
        actions=actions,
        unresolved_actors=actors[:top],
        unresolved_resources=resources[:top],
        unresolved_left_off={
            "unresolved_actors": max(0, len(actors) - top),
            "unresolved_resources": max(0, len(resources) - top),
        },
        strategies=tenancy_sample.sample(lake, cfg, since, until, sample) if sample else None,
    )


# --- shaping the counts ----------------------------------------------------------------------


def _actions(t: pa.Table) -> list[Action]:
    merged: dict[tuple[str, str | None, str | None], dict[str, Any]] = {}
    for r in t.to_pylist():  # one row per action and strategy pair: hundreds, not events
        key = (r["source"], r["service"], r["action"])
        m = merged.setdefault(
            key, {"events": 0, "actor": 0, "target": 0, "conflicts": 0, "a_src": {}, "t_src": {}}
        )
        m["events"] += r["events"]
        m["actor"] += r["has_actor"]
        m["target"] += r["has_target"]
        m["conflicts"] += r["conflict"]
        for col, name in (("actor_tenant_source", "a_src"), ("target_tenant_source", "t_src")):
            if r[col] is not None:
                m[name][r[col]] = m[name].get(r[col], 0) + r["events"]
    out = [
        Action(
            source=k[0],
            service=k[1],
            action=k[2],
            counts=Counts(
                events=m["events"],
                actor_tenant=m["actor"],
                target_tenant=m["target"],
                conflicts=m["conflicts"],
                actor_tenant_source=_busiest(m["a_src"]),
                target_tenant_source=_busiest(m["t_src"]),
            ),
        )
        for k, m in merged.items()
    ]
    order = {s: i for i, s in enumerate(schema.SOURCES)}
    out.sort(
        key=lambda a: (
            order.get(a.source, len(order)),
            -a.counts.events,
            a.service or "",
            a.action or "",
        )
    )
    return out


def _busiest(counts: dict[str, int]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _sum(counts: list[Counts]) -> Counts:
    a_src: dict[str, int] = {}
    t_src: dict[str, int] = {}
    for c in counts:
        for k, v in c.actor_tenant_source.items():
            a_src[k] = a_src.get(k, 0) + v
        for k, v in c.target_tenant_source.items():
            t_src[k] = t_src.get(k, 0) + v
    return Counts(
        events=sum(c.events for c in counts),
        actor_tenant=sum(c.actor_tenant for c in counts),
        target_tenant=sum(c.target_tenant for c in counts),
        conflicts=sum(c.conflicts for c in counts),
        actor_tenant_source=_busiest(a_src),
        target_tenant_source=_busiest(t_src),
    )


def _groups(t: pa.Table, cfg: Config) -> list[Unresolved]:
    rows = t.to_pylist()
    rows.sort(key=lambda r: (-r["events"], r["source"], r["column"], r["value"]))
    out = []
    for r in rows:
        samples = tuple(dict.fromkeys((r["sample_first"], r["sample_last"])))
        out.append(
            Unresolved(
                source=r["source"],
                column=r["column"],
                field=origin(r["source"], r["column"], r["value"], cfg),
                value=r["value"],
                events=r["events"],
                other_side=r["other"],
                samples=samples,
            )
        )
    return out


def origin(source: str, column: str, value: str, cfg: Config) -> str:
    """Where ``column`` of a ``source`` event (``value``: one of its values or groups) comes from
    in the raw record."""
    if source == "cloudtrail":
        if column == "actor_principal":
            if value.startswith("arn:"):
                return "userIdentity.arn"
            if value.startswith("aws-account:"):  # another account calling: named by it
                return "userIdentity.accountId (and the session in userIdentity.principalId)"
            if value.endswith(".amazonaws.com"):
                return "userIdentity.invokedBy"
            return "userIdentity.principalId"
        if column == "resource":
            if value.startswith("s3://"):
                return "requestParameters.bucketName, requestParameters.key (or resources[*].ARN)"
            if value.startswith("dynamodb:"):
                return "requestParameters.tableName, requestParameters.key"
            return "resources[*].ARN"
        return _CLOUDTRAIL_ACTOR.get(column, column)
    key = _MAPPED.get((source, column))
    if key is None:
        return column
    paths = getattr(getattr(cfg.sources, source), key)
    shown = ", ".join((paths,) if isinstance(paths, str) else paths)
    return f"sources.{source}.{key} ({shown})" if shown else f"sources.{source}.{key}"


# --- for people ------------------------------------------------------------------------------


def render(report: TenancyReport, top: int = 20, width: int = 160) -> None:
    """The report as rich tables on stdout; at most ``top`` actions per source."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from pipeline.alert.sanitize import clean

    def safe(value: object, limit: int = 100) -> str:
        # Values come from logs: control characters shown, not obeyed; "[x]" stays text.
        return escape(clean(value, limit))

    def share(n: int, c: Counts) -> str:
        return f"{n:,} ({n / c.events:.1%})" if c.events else "0"

    def by(kinds: dict[str, int]) -> str:
        return ", ".join(f"{k} {v:,}" for k, v in kinds.items()) or "-"

    def cells(c: Counts) -> tuple[str, ...]:
        return (
            f"{c.events:,}",
            share(c.actor_tenant, c),
            share(c.target_tenant, c),
            f"{c.conflicts:,}",
            by(c.actor_tenant_source),
            by(c.target_tenant_source),
        )

    console = Console(width=width)
    window = (
        f"{report.since.isoformat() if report.since else 'first event'} .. "
        f"{report.until.isoformat() if report.until else 'last event'}"
    )
    console.print(f"tenancy of {safe(report.lake)}, {window}: {report.events:,} events")

    t = Table(title="per source", title_justify="left")
    for name in ("source", "events", "actor tenant", "target tenant", "conflicts"):
        t.add_column(name, justify="left" if name == "source" else "right")
    t.add_column("actor tenant from", overflow="fold")
    t.add_column("target tenant from", overflow="fold")
    for source, c in report.sources.items():
        t.add_row(source, *cells(c))
    console.print(t)

    t = Table(title=f"per action (the {top} busiest of each source)", title_justify="left")
    t.add_column("source")
    t.add_column("service and action", overflow="fold")
    for name in ("events", "actor tenant", "target tenant", "conflicts"):
        t.add_column(name, justify="right", no_wrap=True)
    t.add_column("actor tenant from", overflow="fold")
    t.add_column("target tenant from", overflow="fold")
    shown: dict[str, int] = {}
    for a in report.actions:
        shown[a.source] = shown.get(a.source, 0) + 1
        if shown[a.source] > top:
            continue
        c = a.counts
        service = (a.service or "-").removesuffix(".amazonaws.com")  # the JSON keeps it whole
        t.add_row(a.source, safe(f"{service} {a.action or '-'}", 100), *cells(c))
    console.print(t)
    for source, n in shown.items():
        if n > top:
            console.print(f"  ... {n - top} more actions of {source} (--json lists every one)")

    for title, rows, other, left in (
        (
            "actors without a tenant",
            report.unresolved_actors,
            "with target tenant",
            report.unresolved_left_off["unresolved_actors"],
        ),
        (
            "resources without a tenant",
            report.unresolved_resources,
            "with actor tenant",
            report.unresolved_left_off["unresolved_resources"],
        ),
    ):
        t = Table(title=f"{title}, busiest first", title_justify="left")
        for name in ("source", "field", "value", "events", other, "samples"):
            t.add_column(
                name, overflow="fold", justify="right" if name in ("events", other) else "left"
            )
        for u in rows:
            t.add_row(
                u.source,
                safe(f"{u.column} <- {u.field}", 200),
                safe(u.value),
                f"{u.events:,}",
                f"{u.other_side:,}",
                "\n".join(safe(s) for s in u.samples),
            )
        console.print(t)
        if left:
            console.print(f"  ... {left} more (--top to list more)")
    if report.strategies is not None:
        _render_strategies(console, report.strategies, safe)


def _render_strategies(console: Any, sample: StrategySample, safe: Any) -> None:
    from rich.table import Table

    sampled = ", ".join(f"{s} {n:,}" for s, n in sample.sampled.items())
    t = Table(title=f"strategies, over sampled records ({sampled})", title_justify="left")
    for name in ("strategy", "records", "filtered out", "field present", "matched", "tenant"):
        t.add_column(name, overflow="fold", justify="left" if name == "strategy" else "right")
    t.add_column("notes", overflow="fold")
    for s in sample.strategies:
        notes = []
        if s.never_present:
            notes.append(f"never present in {s.records - s.filtered:,} sampled records")
        if s.session_unknown:
            notes.append(f"session unknown in {s.session_unknown:,} (no AssumeRole* seen for it)")
        if s.unmatched:
            notes.append("not matched: " + ", ".join(safe(v, 60) for v in s.unmatched))
        if s.not_in_lookup:
            notes.append("not in its lookup: " + ", ".join(safe(v, 60) for v in s.not_in_lookup))
        t.add_row(
            safe(s.label, 120),
            f"{s.records:,}",
            f"{s.filtered:,}",
            f"{s.present:,}",
            f"{s.matched:,}",
            f"{s.resolved:,}",
            "\n".join(notes) or "-",
        )
    console.print(t)
    for m in sample.missing_fields:
        console.print(
            f"  sources.{m.source}.{m.key} ({safe(', '.join(m.paths), 120)}): "
            f"in none of {m.records:,} sampled {m.source} records"
        )
