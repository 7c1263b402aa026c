"""The ``tenantwatch`` command line.

Each command is a thin shell over a stage function: parse options, load the configuration once,
call the stage, print a table (people) or one JSON object (``--json``, scripts). Progress bars go
to stderr and only on a terminal, so stdout stays clean for pipes.

Exit codes: 0 the run completed (even with quarantined records); 1 a run-time failure we
understood (an error AWS answered among them); 2 bad usage or configuration (AWS credentials
missing among them); 75 another run held the lake's lease for too long (``LeaseBusy``: try
again later). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any

import click

from pipeline.cli_breakglass import breakglass
from pipeline.cli_compact import compact
from pipeline.cli_contain import contain
from pipeline.cli_detectors import detectors
from pipeline.cli_export import export
from pipeline.cli_impact import impact
from pipeline.cli_incident import incident
from pipeline.cli_ingest import engine_options, ingest
from pipeline.cli_inspect import snapshot, tenancy
from pipeline.cli_sigma import sigma
from pipeline.cli_verify_fix import verify_fix
from pipeline.config import Config, load_config
from pipeline.errors import TenantwatchError


class _Group(click.Group):
    """Turns a deliberate ``TenantwatchError``, or the system's ``OSError``, or an error AWS
    answered (run-time trouble as well, not a bug), into one line on stderr and an exit code
    (``pipeline.errors``)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TenantwatchError as exc:
            click.echo(f"tenantwatch: error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except OSError as exc:
            click.echo(f"tenantwatch: error: {exc}", err=True)
            ctx.exit(1)
        except Exception as exc:
            from pipeline import aws

            if not aws.error_from_aws(exc):
                raise
            click.echo(f"tenantwatch: error: AWS: {exc}", err=True)
            ctx.exit(1)


def _version(ctx: click.Context) -> None:
    """The version, and the decoder ingest uses: without the compiled one (not built, or switched
    off) ingest runs at less than half the speed, and nothing else would show why."""
    from importlib.metadata import version

    from pipeline.ingest import native

    click.echo(f"tenantwatch, version {version('tenantwatch')}")
    click.echo(f"decoder: {native.decoder()}")
    ctx.exit()


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar="TENANTWATCH_CONFIG",
    help="Configuration file (default: ./tenantwatch.toml if present, else built-in defaults).",
)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=lambda ctx, _, value: _version(ctx) if value else None,
    help="Show the version, and which CloudTrail decoder ingest uses, and exit.",
)
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """tenantwatch: find cross-tenant access in multi-tenant SaaS logs on AWS."""
    # Validated here, before any command runs, so a bad key fails fast with exit code 2.
    ctx.obj = load_config(config_path)


cli.add_command(ingest)
cli.add_command(compact)
cli.add_command(detectors)
cli.add_command(export)
cli.add_command(sigma)
cli.add_command(incident)
cli.add_command(tenancy)
cli.add_command(snapshot)
cli.add_command(impact)
cli.add_command(breakglass)
cli.add_command(verify_fix)
cli.add_command(contain)


def _config(ctx: click.Context) -> Config:
    cfg = ctx.find_object(Config)
    assert cfg is not None
    return cfg


@contextmanager
def progress_bar(label: str) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on stderr when it is a terminal; otherwise a no-op callback."""
    if not sys.stderr.isatty():
        yield lambda done, total: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(
        f"[bold]{label}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as prog:
        task = prog.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            prog.update(task, completed=done, total=total)

        yield update


def emit_summary(title: str, summary: Mapping[str, Any], as_json: bool) -> None:
    """Print a run summary: one JSON object on stdout, or a two-column table."""
    # Values can come from logs (a finding's actor, an error naming a key): escapes, bidi and
    # zero-width characters are shown, not obeyed, in JSON as in the table.
    from pipeline.alert.sanitize import clean, json_text

    # The event files an ingest wrote are for the S3-object function's fast path, not a reader.
    summary = {k: v for k, v in summary.items() if k != "new_files"}
    if as_json:
        import orjson

        click.echo(json_text(orjson.dumps(summary, option=orjson.OPT_SORT_KEYS).decode()))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(clean(title)), show_header=False, title_justify="left")
    table.add_column("key", style="bold")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        if isinstance(value, Mapping):
            shown = ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
        elif isinstance(value, float):
            shown = f"{value:,.2f}"
        elif isinstance(value, int):
            shown = f"{value:,}"
        else:
            shown = str(value)
        table.add_row(escape(clean(key)), escape(clean(shown, 2000)))
    # soft_wrap=False and a fixed width: the table looks the same in a pipe and a terminal.
    Console(width=100).print(table)


@cli.command()
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", type=int, default=7, show_default=True, help="Random seed.")
@click.option("--tenants", type=int, default=50, show_default=True, help="Number of tenants.")
@click.option(
    "--days",
    type=int,
    default=15,
    show_default=True,
    help="Days simulated; the last one is the attack day.",
)
@click.option(
    "--events-per-day",
    type=int,
    default=None,
    help="CloudTrail records and API requests per day, all tenants together.",
)
@click.option(
    "--scenarios",
    default="all",
    show_default=True,
    help="Comma-separated attack scenarios to inject, 'all' or 'none'.",
)
@click.option(
    "--start",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="First day (UTC), YYYY-MM-DD.",
)
@click.option(
    "--world",
    type=click.Choice(["pooled", "silo", "bridge"]),
    default="pooled",
    show_default=True,
    help="How the SaaS encodes tenants: shared resources with tenant ids in the data (pooled), "
    "an account per tenant (silo), or a bucket, table and role per tenant with opaque names "
    "(bridge).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
def simulate(
    out_dir: Path,
    seed: int,
    tenants: int,
    days: int,
    events_per_day: int | None,
    scenarios: str,
    start: Any,
    world: str,
    as_json: bool,
) -> None:
    """Write a deterministic multi-tenant SaaS's logs, with labelled attacks, to OUT_DIR."""
    from pipeline.simulate import ALL_SCENARIOS, SimulationSpec
    from pipeline.simulate import simulate as run_simulation

    kwargs: dict[str, Any] = {"seed": seed, "tenants": tenants, "days": days, "world": world}
    if events_per_day is not None:
        kwargs["events_per_day"] = events_per_day
    if start is not None:
        kwargs["start"] = date(start.year, start.month, start.day)
    if scenarios == "all":
        kwargs["scenarios"] = ALL_SCENARIOS
    elif scenarios == "none":
        kwargs["scenarios"] = ()
    else:
        kwargs["scenarios"] = tuple(s.strip() for s in scenarios.split(",") if s.strip())
    spec = SimulationSpec(**kwargs)
    with progress_bar("simulating") as update:
        summary = run_simulation(out_dir, spec, progress=update)
    emit_summary(f"simulated logs in {out_dir}", summary, as_json)


def parse_when(value: str | None, option: str) -> datetime | None:
    """The value of a time option (``--since``, ``--until``) as a UTC datetime, None when not
    given; a usage error naming ``option`` for text that is no ISO date or date-time."""
    from pipeline.timeparse import as_time

    try:
        return as_time(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


@cli.command()
@click.option("--lake", default=None, help="Lake root: a folder or s3://bucket/prefix.")
@click.option("--since", default=None, help="Window start (default: the latest day in the lake).")
@click.option("--until", default=None, help="Window end, exclusive (default: since + 1 day).")
@click.option(
    "--detector",
    "only",
    multiple=True,
    help="Run only this detector (repeatable; default: every enabled one).",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print summary and findings as one JSON object."
)
@engine_options("Where the detectors run: this process")
@click.option("--buckets", type=click.IntRange(min=1), help="Spark: buckets per detector pass.")
@click.pass_context
def detect(
    ctx: click.Context,
    lake: str | None,
    since: str | None,
    until: str | None,
    only: tuple[str, ...],
    as_json: bool,
    engine: str,
    master: str | None,
    buckets: int | None,
) -> None:
    """Run the detectors over a window of the lake and write their findings to it.

    Each detector reads only the columns it declares, for the window plus its baseline lookback.
    Findings go to <lake>/findings/ with deterministic ids: re-running a window rewrites them.
    A detector that fails is reported and the others still run (exit code 1). With --engine
    spark the same detectors give the same findings, run on Spark's executors.
    """
    cfg = _config(ctx)
    run: dict[str, Any] = {
        "since": parse_when(since, "--since"),
        "until": parse_when(until, "--until"),
        "only": only or None,
        "warn": _warning,
    }
    if engine == "spark":
        from pipeline.spark_detect import run_detect_spark

        result = run_detect_spark(lake or cfg.lake.root, cfg, **run, master=master, buckets=buckets)
    elif master is not None or buckets is not None:
        raise click.UsageError("--master and --buckets are for --engine spark")
    else:
        from pipeline.detect import run_detect

        with progress_bar("detecting") as update:
            result = run_detect(lake or cfg.lake.root, cfg, **run, progress=update)
    rows = result.findings.to_pylist()
    if as_json:
        import orjson

        for row in rows:
            row["evidence"] = orjson.loads(row["evidence"])
        emit_summary("", {**result.summary, "findings": rows}, as_json=True)
    else:
        _findings_table(rows, result.summary["window_start"], result.summary["window_end"])
        emit_summary(f"detected in {result.summary['lake']}", result.summary, as_json=False)
    if result.summary["failed"]:
        ctx.exit(1)


def _findings_table(rows: list[dict[str, Any]], start: str, end: str) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    def safe(value: str) -> str:
        # Values come from logs: control characters shown, not obeyed (no ANSI escapes, no
        # forged lines), and "[bold]" in a principal stays text, not rich markup.
        shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in value)
        return escape(shown)

    colour = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan"}
    table = Table(title=f"{len(rows)} findings, {start} .. {end}", title_justify="left")
    for name in ("severity", "detector", "actor", "tenants", "events", "first seen", "title"):
        table.add_column(name, overflow="fold")
    for r in rows:
        tenants = r["tenants"] or []
        # A suppressed finding is listed (it is in the lake) but says it will not page.
        muted = f" (suppressed: {safe(r['suppressed_by'])})" if r.get("suppressed_by") else ""
        table.add_row(
            f"[{colour.get(r['severity'], 'white')}]{r['severity']}[/]{muted}",
            r["detector"],
            safe(str(r["actor"] or "-")),
            safe(", ".join(tenants[:4]) + (f" +{len(tenants) - 4}" if len(tenants) > 4 else "")),
            str(r["event_count"]),
            r["first_seen"].strftime("%m-%d %H:%M:%S") if r["first_seen"] else "-",
            safe(r["title"]),
        )
    Console(width=160).print(table)


def _print_incidents(sent: list[dict[str, Any]]) -> None:
    from pipeline.alert import console

    click.echo(console.notifications(sent), nl=False)


def _alert_exit(ctx: click.Context, summary: Mapping[str, Any]) -> None:
    from pipeline.alert import console

    for line in console.warnings(summary):
        click.echo(line, err=True)
    if console.failed(summary):
        ctx.exit(1)


_LEASE_WAIT = click.option(
    "--lease-wait",
    type=click.FloatRange(min=0),
    default=300.0,
    show_default=True,
    metavar="SECONDS",
    help="How long to wait for another run that holds the lake's lease (exit code 75 after).",
)


@cli.command()
@click.option("--lake", default=None, help="Lake root: a folder or s3://bucket/prefix.")
@click.option("--since", default=None, help="Only findings whose window starts then or later.")
@click.option(
    "--resend",
    multiple=True,
    metavar="NOTIFICATION_ID",
    help="Send an in-doubt notification again, once you checked it did not arrive (repeatable).",
)
@click.option(
    "--mark-sent",
    multiple=True,
    metavar="NOTIFICATION_ID",
    help="Record an in-doubt notification as sent, once you checked it arrived (repeatable).",
)
@_LEASE_WAIT
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@click.pass_context
def alert(
    ctx: click.Context,
    lake: str | None,
    since: str | None,
    resend: tuple[str, ...],
    mark_sent: tuple[str, ...],
    lease_wait: float,
    as_json: bool,
) -> None:
    """Group findings into incidents, snapshot their evidence and send notifications.

    Findings sharing a dedup key within the detector's dedup period make one incident; later ones
    update it instead of paging again. Notifications go to SNS when [alerting] names a topic,
    else to <lake>/incidents/notifications/; each is sent at most once, and failed ones are
    retried by the next run. One that may or may not have gone out is "in doubt": reported by
    every run until --resend or --mark-sent resolves it. Exit code 1 when a notification failed
    or is in doubt, or a snapshot could not be written; 75 when another run held the lake's
    lease for longer than --lease-wait.
    """
    from pipeline.runs.on_demand import alert_all

    cfg = _config(ctx)
    with progress_bar("notifying") as update:
        result = alert_all(
            lake or cfg.lake.root,
            cfg,
            since=parse_when(since, "--since"),
            resend=resend,
            mark_sent=mark_sent,
            lease_wait_s=lease_wait,
            progress=update,
        )
    summary = result.alert_dict()
    if not as_json:
        _print_incidents(result.alert[0].sent)
    emit_summary(f"alerted from {summary['lake']}", summary, as_json)
    _alert_exit(ctx, summary)


@cli.command("run")
@click.argument("sources", nargs=-1, required=True)
@click.option("--lake", default=None, help="Lake root: a folder or s3://bucket/prefix.")
@click.option("--since", default=None, help="Detection window start (default: latest day).")
@click.option("--until", default=None, help="Detection window end, exclusive.")
@click.option("--workers", type=int, default=None, help="Ingest processes (default: all cores).")
@_LEASE_WAIT
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@click.pass_context
def run_command(
    ctx: click.Context,
    sources: tuple[str, ...],
    lake: str | None,
    since: str | None,
    until: str | None,
    workers: int | None,
    lease_wait: float,
    as_json: bool,
) -> None:
    """Ingest SOURCES, detect and alert: the whole pipeline in one go.

    Prints each new incident as its notification reads, then a summary of the three stages.
    Holds the lake's lease throughout, like alert (exit code 75 when another run held it for
    longer than --lease-wait).
    """
    from pipeline.runs.on_demand import run_all

    cfg = _config(ctx)
    if workers is not None and workers < 1:
        raise click.BadParameter("expected 1 or more", param_hint="--workers")
    _warn_without_strategies(cfg)
    bars: list[Any] = []

    def progress(stage: str) -> Callable[[int, int], None]:
        # One bar per stage, one at a time (rich allows a single live display).
        while bars:
            bars.pop().__exit__(None, None, None)
        cm = progress_bar(stage)
        bars.append(cm)
        return cm.__enter__()

    try:
        result = run_all(
            list(sources),
            lake or cfg.lake.root,
            cfg,
            since=parse_when(since, "--since"),
            until=parse_when(until, "--until"),
            workers=workers,
            lease_wait_s=lease_wait,
            progress=progress,
            warn=_warning,
        )
    finally:
        for cm in reversed(bars):
            cm.__exit__(None, None, None)
    s = result.as_dict()
    if as_json:
        emit_summary("", s, as_json=True)
    else:
        _print_incidents(result.alert[0].sent)
        ing, det, al = s["ingest"], s["detect"], s["alert"]
        flat = {
            "records_in": ing["records_in"],
            "ingested": ing["ingested"],
            "quarantined": ing["quarantined_total"],
            "window": f"{det['window_start']} .. {det['window_end']}",
            "findings": det["findings"],
            "suppressed": det["suppressed"],
            "detectors_failed": ", ".join(det["failed"]) or "-",
            "incidents_new": al["incidents_new"],
            "incidents_updated": al["incidents_updated"],
            "by_severity": al["by_severity"],
            "snapshots_written": al["snapshots_written"],
            "notifications": al["notifications"],
            "channel": al["channel"],
            "decoder": ing["decoder"],
            "seconds": s["seconds"],
        }
        emit_summary(f"ran the pipeline into {ing['lake']}", flat, as_json=False)
    _alert_exit(ctx, s["alert"])
    if result.detect[0].failed:
        ctx.exit(1)


def _warning(line: str) -> None:
    click.echo(f"tenantwatch: warning: {line}", err=True)


def _warn_without_strategies(cfg: Config) -> None:
    if not cfg.tenancy.actor and not cfg.tenancy.target:
        click.echo(
            "tenantwatch: warning: no tenant strategy is configured ([[tenancy.actor]], "
            "[[tenancy.target]]): no event will have a tenant",
            err=True,
        )


def main() -> None:
    cli(prog_name="tenantwatch")


if __name__ == "__main__":
    main()
