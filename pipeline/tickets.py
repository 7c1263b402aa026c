"""Break-glass tickets: every ticket a run may check, read once, before anything runs.

A break-glass relationship names its tickets inline (``tickets = [...]``) and, for a ticket
system's export, in ``tickets_file`` (CSV, JSON, JSON lines or Parquet; local or ``s3://``) or
``tickets_table`` (DynamoDB). Every source has the same fields:

- ``id``: what the session carries (a session tag, or the role session name);
- ``tenants``: the tenants it opens; in CSV separated by ``;`` or written as a JSON list;
- ``expires``: an ISO 8601 date-time with a time zone (``2026-11-17T00:00:00Z``);
- ``approvers``: optional, as ``tenants``; a use is valid only under a ticket with the
  relationship's ``approvals_required`` distinct approvers (names compared without case), and
  they are carried into the finding's evidence;
- ``justification``: optional text, why the access was granted; carried into the evidence and
  ``tenantwatch breakglass report`` as written, never judged.

``resolve(cfg)`` reads them through ``pipeline.tables`` and returns the configuration with every
ticket inline and no ticket source left to read, so the detectors built from it (and any stage
given it) never read a file again, and resolving it twice reads nothing. A row that is not a
ticket is a ``ConfigError`` naming the file, the row and the field (exit 2); an S3 object or
DynamoDB table that cannot be read is a ``TableError`` (exit 1). Either way before anything ran:
a run never checks access against half a ticket list.

Rows are counted from 1 in the order the source gives them; in a CSV file the header is row 1,
as a spreadsheet numbers them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
import orjson

from pipeline import tables
from pipeline.config import BreakGlass, Config, Ticket
from pipeline.errors import ConfigError


def resolve(cfg: Config) -> Config:
    """``cfg`` with each break-glass relationship's file or table tickets read in beside its
    inline ones (and its ``tickets_file``/``tickets_table`` emptied: nothing left to read)."""
    if not pending(cfg):
        return cfg
    rels = []
    for i, rel in enumerate(cfg.relationships):
        if isinstance(rel, BreakGlass) and _pending(rel):
            rel = msgspec.structs.replace(
                rel, tickets=load(rel, f"relationships[{i}]"), tickets_file="", tickets_table=""
            )
        rels.append(rel)
    return msgspec.structs.replace(cfg, relationships=tuple(rels))


def pending(cfg: Config) -> bool:
    """Whether ``cfg`` still names ticket sources that ``resolve`` has not read."""
    return any(_pending(r) for r in cfg.relationships)


def _pending(rel: object) -> bool:
    return isinstance(rel, BreakGlass) and bool(rel.tickets_file or rel.tickets_table)


def load(rel: BreakGlass, at: str) -> tuple[Ticket, ...]:
    """The inline tickets of ``rel`` and those of its file or table; ``at`` names ``rel`` in the
    configuration (``relationships[4]``), for messages."""
    if rel.tickets_file:
        where, name = f"{at}.tickets_file", rel.tickets_file
        rows = tables.read_file(name, where)
        read = [_ticket(row, f"{where}: {name}: row {n}") for n, row in _numbered(rows, name)]
    elif rel.tickets_table:
        where, name = f"{at}.tickets_table", rel.tickets_table
        rows = tables.scan_dynamodb(name, "", where)
        read = [_ticket(row, f"{where}: {name}: {_item(row, n)}") for n, row in enumerate(rows, 1)]
    else:
        return rel.tickets
    # One id, one ticket: two different tickets of one id would make access depend on which
    # the detector happened to read first.
    known = {t.id: t for t in rel.tickets}
    for t in read:
        if known.setdefault(t.id, t) != t:
            raise ConfigError(f"{where}: {name}: ticket {t.id!r} is given twice, differently")
    return tuple(known.values())


def _numbered(rows: list[tables.Row], name: str) -> list[tuple[int, tables.Row]]:
    # A CSV file's header is its first row: data rows are then numbered as a spreadsheet shows.
    first = 2 if name.lower().removesuffix(".gz").endswith(".csv") else 1
    return list(enumerate(rows, first))


def _item(row: tables.Row, n: int) -> str:
    """A DynamoDB item has no order to speak of: named by its id when it has one."""
    ident = row.get("id")
    return f"item id={ident}" if isinstance(ident, str) and ident.strip() else f"item {n}"


def _ticket(row: tables.Row, where: str) -> Ticket:
    ident = row.get("id")
    if not isinstance(ident, str) or not ident.strip():
        raise ConfigError(f"{where}: id: missing")
    tenants = _names(row.get("tenants"), f"{where}: tenants")
    if not tenants:
        raise ConfigError(f"{where}: tenants: missing (a ticket opens at least one tenant)")
    return Ticket(
        id=ident.strip(),
        tenants=tenants,
        expires=_expiry(row.get("expires"), f"{where}: expires"),
        approvers=_names(row.get("approvers"), f"{where}: approvers"),
        justification=_text(row.get("justification"), f"{where}: justification"),
    )


def _text(value: Any, where: str) -> str:
    """Optional free text: missing, null or empty is none."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected text")
    return value.strip()


def _names(value: Any, where: str) -> tuple[str, ...]:
    """A list of names: a list (JSON, Parquet, DynamoDB), a JSON list written as text, or text
    separated by ``;``."""
    if value is None:
        return ()
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                raise ConfigError(f"{where}: not a valid JSON list ({exc})") from None
        else:
            return tuple(n for n in (p.strip() for p in text.split(";")) if n)
    if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
        raise ConfigError(f"{where}: expected a list of names")
    return tuple(n for n in (str(v).strip() for v in value) if n)


def _expiry(value: Any, where: str) -> datetime:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: missing")
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ConfigError(
            f"{where}: {value!r} is not an ISO 8601 date-time (e.g. 2026-11-17T00:00:00Z)"
        ) from None
    if when.tzinfo is None:
        raise ConfigError(f"{where}: {value!r} has no time zone (e.g. 2026-11-17T00:00:00Z)")
    return when
