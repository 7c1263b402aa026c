"""``tenantwatch incident list | show | close``: the incidents alerting stored, and the verdicts
people give them (``pipeline.verdicts``).

Values shown come from logs (actors, titles): they are cleaned of control characters and shown
as text, never as markup, as everywhere the CLI prints them.
"""

from __future__ import annotations

import getpass
from dataclasses import asdict
from typing import Any

import click

from pipeline.schema import VERDICT_KINDS


def _lake(ctx: click.Context, lake: str | None) -> Any:
    from pipeline.config import Config
    from pipeline.lake import Lake

    cfg = ctx.find_object(Config)
    assert cfg is not None
    return Lake(lake or cfg.lake.root)


def _when(value: str | None, option: str) -> Any:
    from pipeline.cli import parse_when

    return parse_when(value, option)


def _emit_json(doc: dict[str, Any]) -> None:
    from pipeline.cli import emit_summary

    emit_summary("", doc, as_json=True)


def _record_dict(rec: Any, verdicts: list[Any]) -> dict[str, Any]:
    out = asdict(rec)
    out["verdicts"] = [asdict(v) for v in verdicts]
    out["verdict"] = verdicts[-1].verdict if verdicts else None
    return out


def _state(rec: Any, v: Any) -> str:
    if v is None:
        return "open"
    # New findings after the verdict: it was given on less than the incident now holds.
    later = v.incident_revision is not None and rec.revision > v.incident_revision
    return f"{v.verdict}{' (updated since)' if later else ''}"


def _contained(actions: list[Any]) -> str:
    """The containments of an incident now, from its recorded actions: how many are in force
    (neither lifted nor past their expiry) and how many are over."""
    from pipeline import containment

    latest = {a.containment_id: a for a in actions}
    now = containment.utcnow()
    live = [a for a in latest.values() if a.action == "contain" and a.expires and a.expires > now]
    return f"{len(live)} in force, {len(latest) - len(live)} lifted or expired"


def _short(items: tuple[str, ...], n: int = 2) -> str:
    return ", ".join(items[:n]) + (f" +{len(items) - n}" if len(items) > n else "") or "-"


def _login(does: str = "gives the verdict") -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (a container user without a passwd entry)
        raise click.UsageError(f"--by: no login name to default to; say who {does}") from None


@click.group()
def incident() -> None:
    """The incidents alerting stored, and the verdicts given on them."""


@incident.command("list")
@click.option("--lake", default=None, help="Lake root: a folder or s3://bucket/prefix.")
@click.option("--since", default=None, help="Only incidents last seen at or after this time.")
@click.option("--json", "as_json", is_flag=True, help="Print the incidents as one JSON object.")
@click.pass_context
def incident_list(ctx: click.Context, lake: str | None, since: str | None, as_json: bool) -> None:
    """Every incident, latest activity first, with its current verdict (or open)."""
    from pipeline import verdicts

    lk = _lake(ctx, lake)
    start = _when(since, "--since")
    records = [
        r
        for r in verdicts.read_incidents(lk)
        if start is None or (r.last_seen is not None and r.last_seen >= start)
    ]
    current = verdicts.latest(verdicts.read_verdicts(lk))
    if as_json:
        by_incident: dict[str, list[Any]] = {}
        for v in verdicts.read_verdicts(lk):
            by_incident.setdefault(v.incident_id, []).append(v)
        rows = [_record_dict(r, by_incident.get(r.incident_id, [])) for r in records]
        _emit_json({"lake": lk.root, "incidents": rows})
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from pipeline.alert.sanitize import clean

    table = Table(title=f"{len(records)} incidents in {lk.root}", title_justify="left")
    for name in ("id", "severity", "detectors", "actors", "tenants", "last seen", "verdict"):
        table.add_column(name, overflow="fold")
    for r in records:
        table.add_row(
            r.incident_id[:12],
            r.severity,
            ", ".join(r.detectors),
            escape(clean(_short(r.actors), 200)),
            escape(clean(_short(r.tenants, 3), 200)),
            r.last_seen.strftime("%Y-%m-%d %H:%M") if r.last_seen else "-",
            _state(r, current.get(r.incident_id)),
        )
    Console(width=160).print(table)


@incident.command("show")
@click.argument("incident_id")
@click.option("--lake", default=None, help="Lake root: a folder or s3://bucket/prefix.")
@click.option("--json", "as_json", is_flag=True, help="Print the incident as one JSON object.")
@click.pass_context
def incident_show(ctx: click.Context, incident_id: str, lake: str | None, as_json: bool) -> None:
    """One incident (its id, or the start of it that incident list shows): its entities, every
    verdict given on it and every containment done for it. Exit code 2 for an unknown id."""
    from pipeline import containment, verdicts
    from pipeline.alert.sanitize import clean

    lk = _lake(ctx, lake)
    rec = verdicts.find(verdicts.read_incidents(lk), incident_id)
    history = [v for v in verdicts.read_verdicts(lk) if v.incident_id == rec.incident_id]
    actions = containment.read_actions(lk, rec.incident_id)
    if as_json:
        doc = _record_dict(rec, history)
        doc["containment"] = [a.as_row() for a in actions]
        _emit_json(doc)
        return
    fields = asdict(rec)
    for key, value in fields.items():
        shown = ", ".join(value) if isinstance(value, tuple) else value
        click.echo(f"{key:>14}  {clean('-' if shown in (None, '') else shown, 2000)}")
    click.echo(f"{'verdict':>14}  {_state(rec, history[-1] if history else None)}")
    for v in history:
        extra = f", suppression {v.suppression_id}" if v.suppression_id else ""
        click.echo(
            f"{'':>14}  {v.closed_at:%Y-%m-%d %H:%M:%S}Z {v.verdict} by {clean(v.closed_by, 200)}"
            f"{extra}: {clean(v.note, 2000)}"
        )
    if actions:  # an incident nobody contained shows no section
        click.echo(f"{'containment':>14}  {_contained(actions)}")
    for a in actions:
        what = f"{a.action} {a.subject}"
        if a.action == "contain" and a.expires is not None:
            what += f" {a.mode} until {a.expires:%Y-%m-%d %H:%M:%S}Z"
        click.echo(
            f"{'':>14}  {a.acted_at:%Y-%m-%d %H:%M:%S}Z {clean(what, 600)} by "
            f"{clean(a.acted_by, 200)} ({a.origin}, {a.containment_id}): {clean(a.reason, 2000)}"
        )


@incident.command("close")
@click.argument("incident_id")
@click.option("--verdict", type=click.Choice(VERDICT_KINDS), required=True, help="What it was.")
@click.option("--note", required=True, help="Why: what was checked, what it turned out to be.")
@click.option("--by", default=None, help="Who gives the verdict (default: the login name).")
@click.option(
    "--suppress",
    default=None,
    metavar="DURATION",
    help="Also suppress findings of the same actors, addresses and tenants for this long "
    "(e.g. 30d, 12h, 2w): detect marks them, alerting does not page them.",
)
@click.option("--lake", default=None, help="Lake root: a folder or s3://bucket/prefix.")
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as one JSON object.")
@click.pass_context
def incident_close(
    ctx: click.Context,
    incident_id: str,
    verdict: str,
    note: str,
    by: str | None,
    suppress: str | None,
    lake: str | None,
    as_json: bool,
) -> None:
    """Record a verdict on an incident (its id, or the start of it), with who and when, in the
    lake. Closing again records a new verdict; the latest counts. Exit code 2 for an unknown id."""
    from pipeline import verdicts

    duration = None
    if suppress is not None:
        try:
            duration = verdicts.parse_duration(suppress)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--suppress") from None
    lk = _lake(ctx, lake)
    rec = verdicts.find(verdicts.read_incidents(lk), incident_id)
    who = by if by is not None else _login()
    v, sup = verdicts.close(lk, rec, verdict, note, who, suppress_for=duration)
    hub_error = _follow_in_security_hub(ctx, lk, rec.incident_id, verdict, note, who)
    if as_json:
        doc = asdict(v)
        if sup is not None:
            from msgspec import to_builtins

            doc["suppression"] = to_builtins(sup)
        _emit_json(doc)
        if hub_error is not None:
            ctx.exit(1)
        return
    from pipeline.alert.sanitize import clean

    click.echo(f"closed {rec.incident_id} as {verdict} by {clean(who, 200)}")
    if hub_error is not None:
        ctx.exit(1)
    if sup is not None:
        click.echo(
            f"suppression {sup.id} ({sup.detector}) until {sup.expires.isoformat()}: "
            f"actor {clean(sup.actor or '-', 500)}, address {clean(sup.address or '-', 500)}, "
            f"tenant {clean(sup.tenant or '-', 500)}"
        )


def _follow_in_security_hub(
    ctx: click.Context, lk: Any, incident_id: str, verdict: str, note: str, who: str
) -> str | None:
    """With the ``securityhub`` channel, the incident's finding takes the verdict's workflow
    status now (Security Hub takes it from a provider's import only once). The verdict is
    recorded either way; a failure is said on stderr and makes the exit code 1."""
    from pipeline.config import Config

    cfg = ctx.find_object(Config)
    if cfg is None or not cfg.alerting.securityhub:
        return None
    from pipeline.alert.securityhub import SecurityHubChannel, SecurityHubUpdateError

    hub = SecurityHubChannel(lk, cfg.alerting.securityhub_product_arn, cfg.alerting.region)
    try:
        hub.follow_verdict(incident_id, verdict, note, who)
    except SecurityHubUpdateError as exc:
        click.echo(
            f"tenantwatch: the verdict is recorded, but Security Hub's finding was not updated: "
            f"{exc} (its record state follows at the incident's next notification)",
            err=True,
        )
        return str(exc)
    return None
