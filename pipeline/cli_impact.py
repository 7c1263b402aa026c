"""``tenantwatch impact``: whose data an incident's actors touched, and draft customer notices
(``pipeline.impact``, ``pipeline.notice``). Reads the lake and the snapshot; writes nothing but
the notices asked for.

Values shown come from logs (actors, resources): they are cleaned of control characters and
shown as text, never as markup, as everywhere the CLI prints them.
"""

from __future__ import annotations

from datetime import UTC
from pathlib import Path
from typing import Any

import click


def _print_table(impact: Any) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from pipeline.alert.sanitize import clean
    from pipeline.impact_report import provenance_line, short, when

    def safe(value: object, n: int = 200) -> str:
        return escape(clean(value, n))

    p = impact.provenance
    click.echo(f"incident   {impact.incident_id} ({impact.severity}, revision {impact.revision})")
    click.echo(f"events     {impact.events}: {when(impact.first)} .. {when(impact.last)}")
    click.echo(
        f"           {impact.cross_tenant_events} on other tenants' data, "
        f"{impact.own_tenant_events} on the actor's own tenant, "
        f"{impact.unattributed_events} without a target tenant"
    )
    click.echo(f"evidence   {clean(provenance_line(p), 1000)}")
    for note in p.notes:
        click.echo(f"           {clean(note, 1000)}")

    def at(ts: Any) -> str:
        return ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")

    console = Console(width=160)
    counts = ("events", "objects", "read", "write", "denied", "other", "failed")
    tenants = Table(title=f"{len(impact.tenants)} tenants (times UTC)", title_justify="left")
    for name in ("tenant", "flagged", *counts, "first", "last", "actors"):
        tenants.add_column(name, overflow="fold")
    for t in impact.tenants:
        tenants.add_row(
            safe(t.tenant),
            "yes" if t.flagged else "no",
            *(str(getattr(t, c)) for c in counts),
            at(t.first),
            at(t.last),
            safe(short(t.actors, 2)),
        )
    console.print(tenants)
    objects = Table(
        title=f"{len(impact.resources)} objects (times and failures: --format markdown or json)",
        title_justify="left",
    )
    shown = ("events", "read", "write", "denied", "other")
    for name in ("tenant", "resource", "data", *shown, "actions"):
        objects.add_column(name, overflow="fold")
    for r in impact.resources:
        objects.add_row(
            safe(r.tenant),
            safe(r.resource or "-", 500),
            safe(r.data_class or r.kind),
            *(str(getattr(r, c)) for c in shown),
            safe(short(r.actions, 2)),
        )
    console.print(objects)


@click.command("impact")
@click.argument("incident_id")
@click.option("--lake", default=None, help="Lake root: a folder or s3://bucket/prefix.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "markdown", "json"]),
    default="table",
    show_default=True,
    help="How to print the assessment (with --notice, json prints the drafts as JSON).",
)
@click.option(
    "--notice", is_flag=True, help="Draft a customer notice (Markdown) per affected tenant."
)
@click.option("--tenant", default=None, help="With --notice: only this tenant's draft.")
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="With --notice: write each draft to this folder instead of printing it.",
)
@click.pass_context
def impact(
    ctx: click.Context,
    incident_id: str,
    lake: str | None,
    fmt: str,
    notice: bool,
    tenant: str | None,
    out: str | None,
) -> None:
    """Which tenants' data the actors of INCIDENT_ID (an id, or its first characters) touched:
    objects, read, write or denied, events, actors, first and last time; from the incident's
    snapshot, and the lake for what the snapshot lacks. With --notice, a draft notification per
    affected tenant that names nothing of any other tenant. Exit code 2 for an unknown id."""
    from pipeline import impact as impact_mod
    from pipeline.config import Config
    from pipeline.impact_report import markdown

    if (tenant or out) and not notice:
        raise click.UsageError("--tenant and --out go with --notice")
    cfg = ctx.find_object(Config)
    assert cfg is not None
    result = impact_mod.assess(lake or cfg.lake.root, incident_id, cfg)
    if notice:
        _notices(result, tenant, out, fmt == "json")
        return
    if fmt == "json":
        from pipeline.cli import emit_summary

        emit_summary("", result.as_dict(), as_json=True)
    elif fmt == "markdown":
        click.echo(markdown(result), nl=False)
    else:
        _print_table(result)


def _notices(result: Any, tenant: str | None, out: str | None, as_json: bool) -> None:
    from pipeline import notice
    from pipeline.alert.sanitize import clean

    drafts = notice.drafts(result, tenant)
    if not drafts:
        click.echo(
            f"tenantwatch: incident {result.incident_id[:12]} touched no flagged tenant's data "
            "(--tenant drafts one for any tenant it lists)",
            err=True,
        )
    written: dict[str, str] = {}
    if out is not None:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        for d in drafts:
            path = folder / notice.file_name(result, d.tenant)
            path.write_text(d.text, encoding="utf-8")
            written[d.tenant] = str(path)
    for d in drafts:
        for w in d.warnings:
            click.echo(f"tenantwatch: notice for {clean(d.tenant)}: {clean(w, 1000)}", err=True)
    if as_json:
        from pipeline.cli import emit_summary

        rows = [
            {
                "tenant": d.tenant,
                "path": written.get(d.tenant),
                "text": None if out is not None else d.text,
                "withheld": d.withheld,
                "warnings": list(d.warnings),
            }
            for d in drafts
        ]
        emit_summary("", {"incident_id": result.incident_id, "notices": rows}, as_json=True)
    elif out is not None:
        for d in drafts:
            click.echo(f"wrote {written[d.tenant]}")
    else:
        click.echo("\n---\n\n".join(d.text for d in drafts), nl=False)
