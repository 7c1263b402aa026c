"""``tenantwatch sigma check`` and ``tenantwatch sigma show``: which Sigma rules load (and why the
others do not), and the SQL a rule runs, in DuckDB's dialect and in Athena's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import click

from pipeline.errors import InputError

# The events an Athena rendering reads: the day partitions of the time asked about, plus what
# tenantwatch derives (``foreign_accounts`` without the account lookup, which Athena lacks).
ATHENA_EVENTS = """WITH events AS (
  SELECT *,
         nullif(array_join(filter(array_distinct(regexp_extract_all(
           coalesce(json_format(json_extract(raw, '$.requestParameters')), ''),
           '(?<![0-9])[0-9]{{12}}(?![0-9])')), a -> a <> coalesce(account_id, '')), ','), '')
           AS foreign_accounts
  FROM {table}
  WHERE date BETWEEN '{first}' AND '{last}'
    AND event_time >= from_iso8601_timestamp('{since}')
    AND event_time < from_iso8601_timestamp('{until}')
)
"""


@click.group()
def sigma() -> None:
    """Sigma rules over the lake: check a folder, show a rule's query."""


def _places(ctx: click.Context, places: tuple[str, ...], no_pack: bool) -> tuple[list[str], bool]:
    from pipeline.config import Config

    cfg = ctx.find_object(Config)
    assert cfg is not None
    if places:
        return list(places), False
    return list(cfg.sigma.rules), cfg.sigma.pack and not no_pack


@sigma.command("check")
@click.argument("places", nargs=-1)
@click.option("--no-pack", is_flag=True, help="Leave the project's rule pack out.")
@click.option("--strict", is_flag=True, help="Exit 1 when a rule was skipped.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.pass_context
def sigma_check(
    ctx: click.Context, places: tuple[str, ...], no_pack: bool, strict: bool, as_json: bool
) -> None:
    """Load the rules in PLACES (folders, files, s3:// prefixes; default: [sigma] rules and the
    pack) and report every rule loaded and every rule skipped, with its reason."""
    from detectors.sigma.rules import load, pack_path

    where, pack = _places(ctx, places, no_pack)
    try:
        rules = load(where, pack=pack)
    except FileNotFoundError as exc:
        raise InputError(str(exc)) from None
    if as_json:
        import orjson

        out: dict[str, Any] = {
            "files": rules.files,
            "loaded": [
                {"id": r.id, "title": r.title, "kind": r.kind, "level": r.severity, "file": r.path}
                for r in rules.rules
            ],
            "skipped": [
                {"file": s.path, "line": s.line, "title": s.title, "reason": s.reason}
                for s in rules.skipped
            ],
        }
        click.echo(orjson.dumps(out, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2).decode())
    else:
        click.echo(
            f"{len(rules.rules)} rules loaded from {rules.files} files, "
            f"{len(rules.skipped)} skipped"
        )
        if pack and pack_path() is None:
            click.echo(
                "  the project's rule pack is not installed here: set TENANTWATCH_SIGMA_PACK to "
                "a copy of rules/"
            )
        for r in rules.rules:
            click.echo(f"  loaded   {r.severity:<8} {r.kind:<11} {r.title}  ({r.id})")
        for s in rules.skipped:
            click.echo(f"  skipped  {s}")
    if strict and rules.skipped:
        ctx.exit(1)


@sigma.command("show")
@click.argument("rule")
@click.option(
    "--rules",
    "places",
    multiple=True,
    help="Where to look for RULE (default: [sigma] rules and the pack). RULE may be a file.",
)
@click.option("--athena", is_flag=True, help="Only the Athena (Trino) SQL.")
@click.option(
    "--since", default=None, help="The Athena query's start (default: an hour before --until)."
)
@click.option(
    "--until", default=None, help="The Athena query's end (default: an hour after --since, or now)."
)
@click.pass_context
def sigma_show(
    ctx: click.Context,
    rule: str,
    places: tuple[str, ...],
    athena: bool,
    since: str | None,
    until: str | None,
) -> None:
    """Print the SQL RULE (an id, name, title or file) runs over a detection window (DuckDB),
    and the same query in Athena's SQL over the Glue table, where the dialect allows."""
    from pathlib import Path

    from detectors.sigma.rules import load
    from pipeline.config import Config
    from pipeline.timeparse import as_time

    cfg = ctx.find_object(Config)
    assert cfg is not None
    if Path(rule).is_file():
        where, pack = [rule], False
    else:
        where, pack = _places(ctx, places, False)
        pack = pack or not places
    duck = load(where, pack=pack)
    found = duck.find(rule) if not Path(rule).is_file() else next(iter(duck.rules), None)
    if found is None:
        why = [s for s in duck.skipped if rule.lower() in (s.title.lower(), s.path.lower())]
        raise InputError(
            f"no rule {rule!r}"
            + (f": skipped, {why[0].reason}" if why else " among the rules loaded")
        )
    try:
        first, last = as_time(since), as_time(until)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since/--until") from None
    # One detection window: the hour from --since, the hour to --until, or the last hour.
    end = last or (
        first + timedelta(hours=1) if first else datetime.now(UTC).replace(microsecond=0)
    )
    start = first or end - timedelta(hours=1)
    trino = load(where, pack=pack, dialect="athena")
    twin = next((r for r in trino.rules if r.id == found.id), None)
    athena_sql: str | None = None
    if twin is not None:
        athena_sql = (
            ATHENA_EVENTS.format(
                table=cfg.alerting.athena_table,
                first=f"{start:%Y-%m-%d}",
                last=f"{end:%Y-%m-%d}",
                since=start.isoformat(),
                until=end.isoformat(),
            )
            + twin.sql
        )
    if athena:
        if athena_sql is None:
            raise InputError(f"{found.title}: {_athena_why(trino, found.path)}")
        click.echo(athena_sql)
        return
    click.echo(f"# {found.title} ({found.id})")
    click.echo(f"# {found.kind}, level {found.severity}, from {found.path}")
    if found.attack:
        click.echo(f"# ATT&CK: {', '.join(found.attack)}")
    click.echo("\n-- DuckDB, over one detection window's events (what tenantwatch runs)")
    click.echo(found.sql)
    click.echo(f"\n-- Athena, over {cfg.alerting.athena_table}")
    click.echo(athena_sql if athena_sql is not None else f"-- {_athena_why(trino, found.path)}")


def _athena_why(trino: Any, path: str) -> str:
    reasons = [s.reason for s in trino.skipped if s.path == path]
    return "not expressible in Athena's SQL" + (f": {reasons[0]}" if reasons else "")
