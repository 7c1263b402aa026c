"""``tenantwatch ingest``: inputs into the lake, in this machine's processes
(``pipeline.ingest.run``) or on Spark (``pipeline.spark_ingest``), which write the same lake."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def engine_options(where: str) -> Callable[[F], F]:
    """``--engine local|spark`` and ``--master``, for a command that runs ``where`` (the local
    engine's place, e.g. "this process") or on Spark (``ingest``, ``detect``)."""

    def apply(fn: F) -> F:
        fn = click.option(
            "--master", default=None, help="Spark master: local[N] or a URL (local[*])."
        )(fn)
        return click.option(
            "--engine",
            type=click.Choice(["local", "spark"]),
            default="local",
            show_default=True,
            help=f"{where}, or on Spark (needs tenantwatch[spark]).",
        )(fn)

    return apply


@click.command("ingest")
@click.argument("sources", nargs=-1, required=True)
@click.option("--lake", default=None, help="Lake root: a folder or s3://bucket/prefix.")
@click.option("--since", default=None, help="Only objects delivered on or after (key date).")
@click.option("--until", default=None, help="Only objects delivered on or before (key date).")
@click.option("--workers", type=int, default=None, help="Processes (default: all cores).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@engine_options("Where inputs are decoded and written: here")
@click.pass_context
def ingest(
    ctx: click.Context,
    sources: tuple[str, ...],
    lake: str | None,
    since: str | None,
    until: str | None,
    workers: int | None,
    as_json: bool,
    engine: str,
    master: str | None,
) -> None:
    """Read SOURCES (files, folders, s3://bucket/prefix) into the lake.

    Formats are recognised by content: CloudTrail delivery files, bare or EventBridge-wrapped
    records, CloudWatch Logs payloads and exports, CloudTrail-Digest files, API Gateway access
    logs and Lambda-authorizer logs. Unusable records go to quarantine with their reason. With
    --engine spark the same lake is written, the inputs decoded on Spark's executors.
    """
    from pipeline.cli import _config, _warn_without_strategies, emit_summary, parse_when

    cfg = _config(ctx)
    if engine == "spark":
        if workers is not None:
            raise click.UsageError("--workers is for --engine local")
        from pipeline.spark_ingest import run_ingest_spark

        _warn_without_strategies(cfg)
        window = {"since": parse_when(since, "--since"), "until": parse_when(until, "--until")}
        root = lake or cfg.lake.root
        summary = run_ingest_spark(list(sources), root, cfg, **window, master=master)
        emit_summary(f"ingested into {summary['lake']}", summary, as_json)
        return
    if master is not None:
        raise click.UsageError("--master is for --engine spark")
    # numpy's OpenBLAS starts a thread per core that spins for a while: ingest does no linear
    # algebra, and the spinning cost ~1 % of a run's CPU. Only before numpy is first imported.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from pipeline.ingest.startup import pyarrow_without_pandas

    pyarrow_without_pandas()
    from pipeline.cli import progress_bar
    from pipeline.ingest.run import ingest as run_ingest

    window = {"since": parse_when(since, "--since"), "until": parse_when(until, "--until")}
    if workers is not None and workers < 1:
        raise click.BadParameter("expected 1 or more", param_hint="--workers")
    _warn_without_strategies(cfg)
    with progress_bar("ingesting") as update:
        summary = run_ingest(
            list(sources), lake or cfg.lake.root, cfg, **window, workers=workers, progress=update
        )
    emit_summary(f"ingested into {summary['lake']}", summary, as_json)
