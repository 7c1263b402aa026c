"""``tenantwatch detectors list``: every detector the registry knows (the project's own and
those plugins add through the ``tenantwatch.detectors`` entry point group), with its origin,
version and whether the configuration enables it, and each plugin left out with why."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import click


@click.group()
def detectors() -> None:
    """The detectors: the project's own and plugins'."""


@detectors.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the detectors as one JSON object.")
@click.pass_context
def detectors_list(ctx: click.Context, as_json: bool) -> None:
    """Every detector with its origin and version; a plugin that does not load, and why."""
    import detectors as registry
    from pipeline.config import Config

    cfg = ctx.find_object(Config)
    assert cfg is not None
    enabled = set(registry.from_config(cfg))  # validates every [detectors.<id>] table too
    missing = registry.unavailable()
    rows: list[dict[str, Any]] = []
    for det_id, entry in registry.registered().items():
        row: dict[str, Any] = {
            "id": det_id,
            "origin": entry.origin,
            "version": entry.version,
            "target": entry.target,
        }
        if det_id in missing:
            row.update(status="unavailable", reason=missing[det_id])
        else:
            cls = registry.load(det_id)
            row.update(
                status="enabled" if det_id in enabled else "disabled",
                kind="rule" if cls.lookback == timedelta(0) else "windowed",
                title=cls.title,
            )
        rows.append(row)
    rows += [
        {"id": name, "status": "unavailable", "reason": why}
        for name, why in missing.items()
        if name not in registry.registered()
    ]
    if as_json:
        import orjson

        from pipeline.alert.sanitize import json_text

        out = {"detectors": rows}
        click.echo(json_text(orjson.dumps(out, option=orjson.OPT_SORT_KEYS).decode()))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from pipeline.alert.sanitize import clean

    table = Table(title=f"{len(rows)} detectors", title_justify="left")
    for name in ("id", "origin", "version", "kind", "status", "title or reason"):
        table.add_column(name, overflow="fold")
    for r in rows:
        table.add_row(
            *(
                escape(clean(str(r.get(k) or "-"), 200))
                for k in ("id", "origin", "version", "kind", "status")
            ),
            escape(clean(str(r.get("title") or r.get("reason") or ""), 300)),
        )
    Console(width=160).print(table)
