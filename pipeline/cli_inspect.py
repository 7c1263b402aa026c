"""``tenantwatch tenancy explain | report`` and ``tenantwatch snapshot verify``: commands that
inspect what tenant resolution makes of the logs and whether a forensic snapshot is intact; they
write nothing.

Values shown come from logs: they are cleaned of control characters, as everywhere the CLI prints
them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click

from pipeline.config import Config


def _config(ctx: click.Context) -> Config:
    cfg = ctx.find_object(Config)
    assert cfg is not None
    return cfg


def emit_summary(title: str, summary: Any, as_json: bool) -> None:
    from pipeline.cli import emit_summary as emit

    emit(title, summary, as_json)


def parse_when(value: str | None, option: str) -> datetime | None:
    from pipeline.cli import parse_when as parse

    return parse(value, option)


@click.group()
def tenancy() -> None:
    """Tenant resolution: what the configured strategies make of the logs."""


@tenancy.command("explain")
@click.argument("files", nargs=-1, required=True)
@click.option("--limit", type=int, default=None, help="Explain at most N records.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.pass_context
def tenancy_explain(
    ctx: click.Context, files: tuple[str, ...], limit: int | None, as_json: bool
) -> None:
    """For each record of FILES (files, folders, s3://; any format ingest reads): the actor and
    target tenant it resolves to, which strategy gave each, and for every strategy that gave
    none, why. Sessions are learnt from FILES alone; nothing is written."""
    from pipeline.ingest.explain import explain

    if limit is not None and limit < 1:
        raise click.BadParameter("expected 1 or more", param_hint="--limit")
    result = explain(list(files), _config(ctx), limit)
    if as_json:
        emit_summary("", result.as_dict(), as_json=True)
    else:
        for line in result.lines():
            click.echo(line)


@click.group()
def snapshot() -> None:
    """Forensic snapshots of incident evidence."""


@snapshot.command("verify")
@click.argument("uri")
@click.option("--sha256", "expect", default=None, help="The manifest hash the notification gave.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.pass_context
def snapshot_verify(ctx: click.Context, uri: str, expect: str | None, as_json: bool) -> None:
    """Re-hash the snapshot at URI (its manifest.json or folder, local or s3://) and report any
    file that changed, went missing or was added. Exit code 1 if anything differs."""
    from dataclasses import asdict

    from pipeline.alert.snapshot import verify

    cfg = _config(ctx)
    result = verify(uri, expect, cfg.alerting.region)
    if as_json:
        emit_summary("", asdict(result), as_json=True)
    else:
        from pipeline.alert.sanitize import clean

        # Names of files someone added to the snapshot are anybody's text: shown, not obeyed.
        chained = bool(result.earlier)
        for part in (result, *result.earlier):
            if chained:
                click.echo(f"part {part.part}: {part.manifest_uri}")
            for f in part.files:
                click.echo(f"{f['status']:>10}  {clean(f['name'], 1000)}")
            for p in part.problems:
                click.echo(f"   problem  {clean(p, 1000)}")
        verdict = "OK: unchanged" if result.ok else "CHANGED: do not trust this snapshot"
        parts = f", {len(result.earlier) + 1} parts chained" if chained else ""
        click.echo(
            f"{verdict} ({result.manifest_uri}, manifest SHA-256 {result.manifest_sha256}{parts})"
        )
    if not result.ok:
        ctx.exit(1)


@tenancy.command("report")
@click.option("--lake", default=None, help="Lake root: a folder or s3://bucket/prefix.")
@click.option("--since", default=None, help="Only events at or after (default: the first).")
@click.option("--until", default=None, help="Only events before (default: after the last).")
@click.option("--top", type=int, default=20, show_default=True, help="Rows per list.")
@click.option(
    "--sample",
    type=int,
    default=20_000,
    show_default=True,
    help="Records per source the strategies are tried on (0: none).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.pass_context
def tenancy_report(
    ctx: click.Context,
    lake: str | None,
    since: str | None,
    until: str | None,
    top: int,
    sample: int,
    as_json: bool,
) -> None:
    """Per source, service and action: how many events have an actor and a target tenant,
    which strategies resolved them, conflicts; the actors and resources left without a tenant,
    busiest first, with samples and the field they came from; and what each configured
    strategy makes of a sample of the stored records (a field never present is a typo)."""
    from pipeline import tenancy_report as report

    cfg = _config(ctx)
    if top < 1:
        raise click.BadParameter("expected 1 or more", param_hint="--top")
    if sample < 0:
        raise click.BadParameter("expected 0 or more", param_hint="--sample")
    built = report.build(
        lake or cfg.lake.root,
        cfg,
        parse_when(since, "--since"),
        parse_when(until, "--until"),
        top,
        sample,
    )
    if as_json:
        emit_summary("", built.as_dict(), as_json=True)
    else:
        report.render(built, top)
