"""``tenantwatch verify-fix INCIDENT --since T``: did the incident's activity come back after the
fix (``pipeline.verify_fix``)? With ``--close`` and no recurrence, the incident is closed as
``remediated`` with the span verified in the verdict's note.

Exit codes: 0 no recurrence (closed, with ``--close``); 1 the activity recurred (never closed),
or a detector could not run over the span; 2 an unknown incident or a span the lake holds no
events for. Values shown come from logs (actors, titles): cleaned of control characters.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from pipeline.verdicts import Verdict
    from pipeline.verify_fix import Verification


@click.command("verify-fix")
@click.argument("incident_id")
@click.option("--since", required=True, help="When the fix was made (ISO date or date-time).")
@click.option("--until", default=None, help="End of the span, exclusive (default: now).")
@click.option("--lake", default=None, help="Lake root: a folder or s3://bucket/prefix.")
@click.option(
    "--close",
    "close_it",
    is_flag=True,
    help="With no recurrence, close the incident as remediated (the span in the note).",
)
@click.option("--by", default=None, help="Who closes it (default: the login name).")
@click.option("--note", default="", help="What was fixed; the span verified is added to it.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.pass_context
def verify_fix(
    ctx: click.Context,
    incident_id: str,
    since: str,
    until: str | None,
    lake: str | None,
    close_it: bool,
    by: str | None,
    note: str,
    as_json: bool,
) -> None:
    """Run the detectors of INCIDENT (its id, or the start of it) again over the scheduled
    windows from --since to --until (default now; as far as the lake has events), without
    writing findings, and report every finding of its actors on its tenants: a recurrence.
    Windows are TENANTWATCH_RUN_WINDOW_MINUTES long (60 by default), as the scheduled run's."""
    from pipeline import verdicts
    from pipeline import verify_fix as vf
    from pipeline.cli import _config, emit_summary, parse_when, progress_bar
    from pipeline.cli_incident import _follow_in_security_hub, _login
    from pipeline.lake import Lake

    cfg = _config(ctx)
    start = parse_when(since, "--since")
    end = parse_when(until, "--until")
    assert start is not None
    lk = Lake(lake or cfg.lake.root)
    rec = verdicts.find(verdicts.read_incidents(lk), incident_id)
    who = (by if by is not None else _login()) if close_it else ""
    with progress_bar("verifying windows") as update:
        done = vf.verify(lk, cfg, rec, start, end, minutes=vf.window_minutes(), progress=update)
    closed = None
    hub_error = None
    if close_it and not done.recurred:
        closed = vf.close(lk, rec, done, who, note)
        hub_error = _follow_in_security_hub(
            ctx, lk, rec.incident_id, "remediated", closed.note, who
        )
    if as_json:
        doc: dict[str, Any] = done.as_dict()
        doc["closed"] = asdict(closed) if closed is not None else None
        emit_summary("", doc, as_json=True)
    else:
        _say(done, closed, close_it)
    if done.recurred or hub_error is not None:
        ctx.exit(1)


def _at(ts: datetime) -> str:
    return f"{ts.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z"


def _say(done: Verification, closed: Verdict | None, close_it: bool) -> None:
    from pipeline.alert.sanitize import clean

    span = f"from {_at(done.since)} to {_at(done.until)}"
    scope = (
        f"{', '.join(done.detectors)} for {clean(', '.join(done.actors) or '-', 500)} on "
        f"{clean(', '.join(done.tenants) or '-', 500)}"
    )
    if not done.recurred:
        click.echo(
            f"verified {done.incident_id}: no recurrence of {scope} {span} "
            f"({done.windows} windows of {done.window_minutes} minutes)"
        )
        if closed is not None:
            click.echo(f"closed {done.incident_id} as remediated by {clean(closed.closed_by, 200)}")
        return
    n = len(done.recurrences)
    click.echo(
        f"incident {done.incident_id} recurred: {n} finding{'s' if n != 1 else ''} of {scope} "
        f"{span}" + (" (not closed)" if close_it else "")
    )
    for r in done.recurrences:
        quiet = f", suppressed by {clean(r.suppressed_by, 100)}" if r.suppressed_by else ""
        click.echo(
            f"  {_at(r.first_seen or r.window_start)} .. {_at(r.last_seen or r.window_end)}  "
            f"{r.severity:<8} {r.detector}  {clean(r.title, 300)}  ({r.event_count} events, "
            f"finding {r.finding_id[:12]}{quiet})"
        )
