"""``tenantwatch compact``: a closed partition's many small files rewritten into a few large
ones, and, with ``--retention``, what the retention settings no longer keep deleted first
(``pipeline.compact``, ``pipeline.retention``)."""

from __future__ import annotations

from typing import Any

import click


@click.command("compact")
@click.option("--lake", default=None, help="Lake root: a folder or s3://bucket/prefix.")
@click.option(
    "--before",
    default=None,
    help="Compact what ended before this time (default: now less [ingest] cloudtrail_lag_minutes).",
)
@click.option(
    "--retention", is_flag=True, help="Also delete what [lake] retention_days no longer keeps."
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@click.pass_context
def compact(
    ctx: click.Context, lake: str | None, before: str | None, retention: bool, as_json: bool
) -> None:
    """Rewrite the lake's closed folders' many small files into a few large ones (about
    [lake] compact_file_mb each): event hours, findings days and quarantine files that ended or
    were written before --before. Readers see every row once while it runs; a compaction cut
    short is finished by the next. With --retention, partitions older than [lake]
    retention_days are deleted first (snapshots never)."""
    from datetime import UTC, datetime, timedelta

    from pipeline import compact as compaction
    from pipeline import retention as keep
    from pipeline.cli import _config, emit_summary, parse_when
    from pipeline.lake import Lake

    cfg = _config(ctx)
    lk = Lake(lake or cfg.lake.root)
    now = datetime.now(UTC)
    upto = parse_when(before, "--before") or now - timedelta(
        minutes=cfg.ingest.cloudtrail_lag_minutes
    )
    summary: dict[str, Any] = {"lake": lk.root, "before": upto.isoformat()}
    if retention:
        summary["retention"] = keep.apply(lk, cfg.lake.retention_days, now).as_dict()
    done = compaction.compact(lk, upto, target_bytes=cfg.lake.compact_file_mb << 20)
    summary.update(done.as_dict())
    emit_summary(f"compacted {lk.root}", summary, as_json)
