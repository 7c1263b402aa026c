"""``tenantwatch export``: the lake's events in another format for another tool; today OCSF API
Activity Parquet in Security Lake's custom-source layout (``pipeline.export``)."""

from __future__ import annotations

import click


@click.command("export")
@click.option("--lake", default=None, help="Lake root: a folder or s3://bucket/prefix.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["ocsf"]),
    default="ocsf",
    show_default=True,
    help="ocsf: OCSF 1.3 API Activity (class 6003) Parquet.",
)
@click.option(
    "--out",
    required=True,
    help="Where to write: a folder or s3://bucket/prefix (a Security Lake custom source's).",
)
@click.option("--since", default=None, help="Start (default: the latest day in the lake).")
@click.option("--until", default=None, help="End, exclusive (default: since + 1 day).")
@click.option(
    "--source-name",
    default="tenantwatch",
    show_default=True,
    help="The custom source's name: files go under ext/<name>/.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@click.pass_context
def export(
    ctx: click.Context,
    lake: str | None,
    fmt: str,
    out: str,
    since: str | None,
    until: str | None,
    source_name: str,
    as_json: bool,
) -> None:
    """Write the lake's events of [--since, --until) as OCSF API Activity Parquet under
    OUT/ext/<source name>/region=<r>/accountId=<a>/eventDay=<YYYYMMDD>/, the layout Amazon
    Security Lake reads a custom source from. Running it again rewrites the same files."""
    from pipeline.cli import _config, emit_summary, parse_when, progress_bar
    from pipeline.detect import resolve_window
    from pipeline.export import export_ocsf
    from pipeline.lake import Lake

    cfg = _config(ctx)
    lk = Lake(lake or cfg.lake.root)
    start, end = resolve_window(lk, parse_when(since, "--since"), parse_when(until, "--until"))
    with progress_bar("exporting days") as update:
        done = export_ocsf(lk.root, out, start, end, source_name, progress=update)
    summary = {
        "format": fmt,
        "out": out,
        "since": start.isoformat(),
        "until": end.isoformat(),
        **done.as_dict(),
    }
    emit_summary(f"exported {done.events:,} events to {out}", summary, as_json)
