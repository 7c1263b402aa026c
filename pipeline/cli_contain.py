"""``tenantwatch contain``: turn part of the SaaS off for a tenant, a principal, a token or an
address while an incident is looked into; list what is contained; lift it
(``pipeline.containment``).

Nothing is said to be contained unless the table took the entry: a table that is missing, refuses
(AccessDenied) or cannot be reached is a one-line error with exit code 1 and no ``contained``
line. An incident the lake does not hold, or a tenant the project does not know, is exit code 2,
before anything is written. Values shown come from logs and people (subjects, reasons): they are
cleaned of control characters, as everywhere the CLI prints them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click

from pipeline.schema import CONTAINMENT_KINDS, CONTAINMENT_MODES


def _when(t: datetime) -> str:
    return f"{t.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"


@click.command()
@click.argument("incident_id", required=False, metavar="INCIDENT")
@click.option("--tenant", default=None, help="Contain a tenant (one the project knows).")
@click.option("--principal", default=None, help="Contain a principal (an ARN or API principal).")
@click.option(
    "--token", default=None, help="Contain a token by its fingerprint (sha256:<16 hex digits>)."
)
@click.option("--address", default=None, help="Contain a source IP address.")
@click.option(
    "--mode",
    type=click.Choice(CONTAINMENT_MODES),
    default=None,
    help="suspend: every request denied; read-only: only GET, HEAD and OPTIONS allowed.",
)
@click.option(
    "--expires",
    default=None,
    metavar="DURATION|TIME",
    help="How long (30m, 4h, 2d) or until when (an ISO date-time); in the future.",
)
@click.option("--reason", default=None, help="Why (contain: required; lift: optional).")
@click.option("--by", default=None, help="Who acts (default: the login name).")
@click.option("--list", "list_", is_flag=True, help="List the entries in force.")
@click.option("--all", "show_all", is_flag=True, help="With --list: expired entries as well.")
@click.option(
    "--lift",
    default=None,
    metavar="CONTAINMENT_ID_OR_SUBJECT",
    help="Remove a containment: its id, or a subject as <kind>#<value> (all its entries).",
)
@click.option(
    "--table",
    default=None,
    help="The DynamoDB containment table (default: [containment] table, or "
    "TENANTWATCH_CONTAINMENT_TABLE).",
)
@click.option("--lake", default=None, help="Lake root: a folder or s3://bucket/prefix.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.pass_context
def contain(
    ctx: click.Context,
    incident_id: str | None,
    tenant: str | None,
    principal: str | None,
    token: str | None,
    address: str | None,
    mode: str | None,
    expires: str | None,
    reason: str | None,
    by: str | None,
    list_: bool,
    show_all: bool,
    lift: str | None,
    table: str | None,
    lake: str | None,
    as_json: bool,
) -> None:
    """Contain a subject of INCIDENT (its id, or the start of it) until it expires: an entry in
    the containment table that the SaaS's authorizer obeys, recorded in the lake and shown by
    incident show. With --list, the entries in force; with --lift, remove one. Exit code 2 for
    an unknown incident or tenant, 1 when the table cannot be read or written."""
    subjects = {
        k: v
        for k, v in zip(CONTAINMENT_KINDS, (tenant, principal, token, address), strict=True)
        if v is not None
    }
    if list_ and lift is not None:
        raise click.UsageError("--list and --lift: expected one of them")
    if show_all and not list_:
        raise click.UsageError("--all goes with --list")
    if list_ or lift is not None:
        given = [f"--{k}" for k in subjects]
        given += [o for o, v in (("--mode", mode), ("--expires", expires)) if v is not None]
        if incident_id is not None:
            given.insert(0, "INCIDENT")
        if list_ and reason is not None:
            given.append("--reason")
        if given:
            what = "--list" if list_ else "--lift"
            raise click.UsageError(f"{what} takes no {', '.join(given)}")
    from pipeline.config import Config

    cfg = ctx.find_object(Config)
    assert cfg is not None
    if list_:
        _list(cfg, table, show_all, as_json)
    elif lift is not None:
        _lift(ctx, cfg, lift, reason, by, table, lake, as_json)
    else:
        _contain(ctx, cfg, incident_id, subjects, mode, expires, reason, by, table, lake, as_json)


def _contain(
    ctx: click.Context,
    cfg: Any,
    incident_id: str | None,
    subjects: dict[str, str],
    mode: str | None,
    expires: str | None,
    reason: str | None,
    by: str | None,
    table_name: str | None,
    lake: str | None,
    as_json: bool,
) -> None:
    from pipeline import containment, verdicts
    from pipeline.alert.sanitize import clean
    from pipeline.cli_incident import _emit_json, _lake, _login

    if incident_id is None:
        raise click.UsageError("expected INCIDENT (or --list, or --lift)")
    if len(subjects) != 1:
        raise click.UsageError("expected exactly one of --tenant, --principal, --token, --address")
    missing = [
        o for o, v in (("--mode", mode), ("--expires", expires), ("--reason", reason)) if v is None
    ]
    if missing:
        raise click.UsageError(f"missing {', '.join(missing)}")
    assert mode is not None and expires is not None and reason is not None
    now = containment.utcnow()
    until = containment.expiry(expires, now)
    ((kind, value),) = subjects.items()
    subject = containment.Subject.of(kind, value)
    table = containment.table_of(cfg, table_name)
    who = by if by is not None else _login("contains it")
    lk = _lake(ctx, lake)
    rec = verdicts.find(verdicts.read_incidents(lk), incident_id)
    known = None
    if subject.kind == "tenant":
        known = containment.check_tenant(cfg, lk, subject.value, rec.tenants)
    entry = containment.contain(
        lk, table, rec.incident_id, subject, mode, until, reason, who, now=now
    )
    if as_json:
        _emit_json({**entry.as_dict(), "table": table.name, "tenant_known": known})
        return
    click.echo(
        f"contained {clean(subject.key, 500)} {mode} until {_when(until)}: containment "
        f"{entry.containment_id} for incident {rec.incident_id}, table {table.name}"
    )


def _list(cfg: Any, table_name: str | None, show_all: bool, as_json: bool) -> None:
    from pipeline import containment
    from pipeline.cli_incident import _emit_json

    table = containment.table_of(cfg, table_name)
    now = containment.utcnow()
    entries = containment.list_entries(table, now, include_expired=show_all)
    if as_json:
        _emit_json({"table": table.name, "entries": [e.as_dict(now) for e in entries]})
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from pipeline.alert.sanitize import clean

    shown = "entries" if show_all else "entries in force"
    out = Table(title=f"{len(entries)} {shown} in {table.name}", title_justify="left")
    for name in ("id", "subject", "mode", "expires", "incident", "by", "reason"):
        out.add_column(name, overflow="fold")
    for e in entries:
        out.add_row(
            e.containment_id,
            escape(clean(e.subject.key, 300)),
            e.mode,
            _when(e.expires) + (" (expired)" if e.expired(now) else ""),
            e.incident_id[:12],
            escape(clean(e.created_by, 100)),
            escape(clean(e.reason, 300)),
        )
    Console(width=160).print(out)


def _lift(
    ctx: click.Context,
    cfg: Any,
    target: str,
    reason: str | None,
    by: str | None,
    table_name: str | None,
    lake: str | None,
    as_json: bool,
) -> None:
    from pipeline import containment
    from pipeline.alert.sanitize import clean
    from pipeline.cli_incident import _emit_json, _lake, _login

    table = containment.table_of(cfg, table_name)
    who = by if by is not None else _login("lifts it")
    lk = _lake(ctx, lake)
    now = containment.utcnow()
    done = containment.lift(lk, table, target, reason or "", who, now=now)
    if as_json:
        _emit_json(
            {
                "table": table.name,
                "lifted": [e.as_dict(now) for e in done.removed],
                "nothing_to_lift": [
                    {
                        "containment_id": a.containment_id,
                        "subject": a.subject,
                        "state": _state(a, table.name, now),
                    }
                    for a in done.before
                ],
            }
        )
        return
    for e in done.removed:
        late = f"; it had expired at {_when(e.expires)}" if e.expired(now) else ""
        click.echo(
            f"lifted {e.containment_id} ({clean(e.subject.key, 500)}, {e.mode}, incident "
            f"{e.incident_id}){late}"
        )
    for a in done.before:
        click.echo(f"{a.containment_id} ({clean(a.subject, 500)}) {_state(a, table.name, now)}")


def _state(a: Any, table: str, now: datetime) -> str:
    """Why there is nothing to lift, from the containment's latest recorded action."""
    if a.action == "lift":
        from pipeline.alert.sanitize import clean

        by = clean(a.acted_by, 100)
        return f"was already lifted at {_when(a.acted_at)} by {by}: nothing to lift"
    if a.expires is not None and a.expires <= now:
        return f"expired at {_when(a.expires)}: nothing to lift"
    return f"is no longer in table {table} (removed by other means): nothing to lift"
