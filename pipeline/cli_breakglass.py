"""``tenantwatch breakglass report``: every break-glass use in a span, per tenant
(``pipeline.breakglass_report``), as a table, Markdown (for a tenant's notice) or JSON.

Values shown come from logs and ticket systems (actors, actions, justifications): they are
cleaned of control characters and shown as text, never as markup; in Markdown a ``|`` is escaped
so that no value can add a column or a row.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from pipeline.breakglass_report import Report, Use

_ACTIONS = 4  # actions named per use; the rest counted


@click.group()
def breakglass() -> None:
    """Uses of the break-glass role: who, on which tenant, under which ticket, and whether valid."""


@breakglass.command("report")
@click.option("--since", required=True, help="Start of the span (ISO date or date-time).")
@click.option("--until", default=None, help="End of the span, exclusive (default: now).")
@click.option("--tenant", default=None, help="Only the uses on this tenant (for its notice).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "markdown", "json"]),
    default="table",
    show_default=True,
    help="table for a terminal, markdown for a notice, json for scripts.",
)
@click.option("--lake", default=None, help="Lake root: a folder or s3://bucket/prefix.")
@click.pass_context
def breakglass_report(
    ctx: click.Context,
    since: str,
    until: str | None,
    tenant: str | None,
    fmt: str,
    lake: str | None,
) -> None:
    """Every use of a break-glass role in the lake's events of [--since, --until), per target
    tenant: who, first and last time, the actions, the ticket named with its approvers and
    justification, and whether the use was valid or which rule it broke. Exit code 0 whatever
    the uses were; 2 for a span that is empty."""
    from pipeline.breakglass_report import report
    from pipeline.cli import _config, emit_summary, parse_when
    from pipeline.lake import Lake

    cfg = _config(ctx)
    start = parse_when(since, "--since")
    assert start is not None
    end = parse_when(until, "--until") or datetime.now(UTC)
    rep = report(Lake(lake or cfg.lake.root), cfg, start, end, tenant)
    if fmt == "json":
        emit_summary("", rep.as_dict(), as_json=True)
    elif fmt == "markdown":
        click.echo(markdown(rep), nl=False)
    else:
        _table(rep)


def _span(rep: Report) -> str:
    since, until = rep.since.astimezone(UTC), rep.until.astimezone(UTC)
    return f"{since:%Y-%m-%d %H:%M}Z to {until:%Y-%m-%d %H:%M}Z"


def _actions(use: Use) -> str:
    named = [f"{a} ({n})" for a, n in list(use.actions.items())[:_ACTIONS]]
    rest = len(use.actions) - _ACTIONS
    return ", ".join(named) + (f" +{rest} more" if rest > 0 else "")


def _when(ts: datetime) -> str:
    return f"{ts.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z"


def _ticket(use: Use) -> str:
    if use.ticket is None:
        return "-"
    if use.expires is None:  # no ticket source has it
        return f"{use.ticket} (unknown)"
    return f"{use.ticket}, expires {_when(use.expires)}"


def _table(rep: Report) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from pipeline.alert.sanitize import clean

    def safe(value: object, n: int = 500) -> str:
        return escape(clean(value, n))

    groups = rep.by_tenant()
    if not groups:
        click.echo(f"no break-glass use{_of(rep)} from {_span(rep)} in {clean(rep.lake, 500)}")
        return
    console = Console(width=160)
    for tenant, uses in groups.items():
        table = Table(
            title=safe(f"break-glass use of {tenant}, {_span(rep)}", 300), title_justify="left"
        )
        table.add_column("who", overflow="fold")
        table.add_column("when", no_wrap=True)
        table.add_column("actions", overflow="fold")
        table.add_column("ticket", overflow="fold")
        table.add_column("verdict", no_wrap=True)  # a rule a line, whole
        for u in uses:
            ticket = [safe(_ticket(u))]
            if u.known:
                ticket.append(f"approved by {safe(', '.join(u.approvers) or 'nobody')}")
            if u.justification:
                ticket.append(f"why: {safe(u.justification, 1000)}")
            verdict = (
                "valid" if u.valid else "\n".join(["invalid:", *(f"- {r}" for r in u.reasons())])
            )
            table.add_row(
                safe(u.actor),
                f"{_when(u.first)}\n{_when(u.last)}\n{_count(u.events, 'event')}",
                safe(_actions(u)),
                "\n".join(ticket),
                verdict,
            )
        console.print(table)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"


def _of(rep: Report) -> str:
    from pipeline.alert.sanitize import clean

    return f" of {clean(rep.tenant, 200)}" if rep.tenant is not None else ""


def _cell(value: object) -> str:
    """A Markdown table cell: one line of visible text in which ``|`` is no column break."""
    from pipeline.alert.sanitize import clean

    return clean(value, 1000).replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`")


def markdown(rep: Report) -> str:
    """The report as Markdown: a section per tenant, a row per use."""
    title = "Break-glass access" + (f" to {rep.tenant}" if rep.tenant is not None else "")
    lines = [f"# {_cell(title)}", ""]
    groups = rep.by_tenant()
    invalid = sum(not u.valid for u in rep.uses)
    lines.append(
        f"From {_span(rep)}: {_count(len(rep.uses), 'use')} of the break-glass role, "
        f"{invalid} of them invalid."
    )
    for tenant, uses in groups.items():
        lines += ["", f"## {_cell(tenant)}", ""]
        lines.append("| Who | First | Last | Events | Actions | Ticket | Approvers | "
                     "Justification | Verdict |")  # fmt: skip
        lines.append("|---|---|---|---:|---|---|---|---|---|")
        for u in uses:
            cells = (
                u.actor,
                _when(u.first),
                _when(u.last),
                u.events,
                _actions(u),
                _ticket(u),
                ", ".join(u.approvers) or "-",
                u.justification or "-",
                u.verdict(),
            )
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"
