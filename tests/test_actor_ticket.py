"""actor_ticket: the ticket a break-glass principal names, resolved at ingest from a session tag
(joined by access key id) or the role session name; null for everyone else, and for lakes
written before the column existed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pipeline import schema
from pipeline.config import parse_config
from pipeline.ingest.run import ingest
from pipeline.lake import read_events
from tests import logfactory as lf

BREAK_GLASS = f"^arn:aws:sts::{lf.ACCOUNT}:assumed-role/support-break-glass/"


def config(**rel: Any) -> Any:
    return parse_config(
        {"relationships": [{"kind": "break_glass", "principal_pattern": BREAK_GLASS, **rel}]},
        environ={},
    )


def tagged_session(
    key: str, tags: dict[str, str], role: str = "support-break-glass"
) -> dict[str, Any]:
    rec = lf.assume_role(new_key_id=key, role=role, session="anna")
    rec["requestParameters"]["tags"] = [{"key": k, "value": v} for k, v in tags.items()]
    return rec


def tickets(tmp_path: Path, records: list[dict[str, Any]], cfg: Any) -> dict[str, str | None]:
    lf.delivery_file(tmp_path / "in" / "a.json.gz", records)
    ingest([str(tmp_path / "in")], str(tmp_path / "lake"), cfg, workers=1)
    rows = read_events(str(tmp_path / "lake")).to_pylist()
    return {r["event_id"]: r["actor_ticket"] for r in rows if r["action"] == "GetObject"}


def test_the_ticket_tag_of_the_session_names_the_ticket(tmp_path: Path) -> None:
    use = lf.ct(role="support-break-glass", session="anna", key_id="ASIABG01")
    got = tickets(
        tmp_path,
        [tagged_session("ASIABG01", {"change_request": "CHG-4821"}), use],
        config(ticket_tag="change_request"),
    )
    assert got == {use["eventID"]: "CHG-4821"}


def test_the_ticket_pattern_reads_the_role_session_name(tmp_path: Path) -> None:
    use = lf.ct(role="support-break-glass", session="SUP-4821-anna")
    assert tickets(tmp_path, [use], config()) == {use["eventID"]: "SUP-4821"}


def test_the_tag_wins_over_the_session_name(tmp_path: Path) -> None:
    use = lf.ct(role="support-break-glass", session="SUP-1-anna", key_id="ASIABG01")
    got = tickets(
        tmp_path,
        [tagged_session("ASIABG01", {"change_request": "CHG-2"}), use],
        config(ticket_tag="change_request"),
    )
    assert got == {use["eventID"]: "CHG-2"}


def test_a_break_glass_use_without_either_has_no_ticket(tmp_path: Path) -> None:
    untagged = lf.ct(role="support-break-glass", session="anna", key_id="ASIABG01")
    got = tickets(tmp_path, [tagged_session("ASIABG01", {}), untagged], config(ticket_tag="cr"))
    assert got == {untagged["eventID"]: None}


def test_others_have_no_ticket_whatever_they_carry(tmp_path: Path) -> None:
    # A session name and a tag that look like tickets, on a role that is no break-glass role.
    other = lf.ct(role="tenant-reports", session="SUP-4821-anna", key_id="ASIAOTHER1")
    got = tickets(
        tmp_path,
        [tagged_session("ASIAOTHER1", {"change_request": "CHG-1"}, role="tenant-reports"), other],
        config(ticket_tag="change_request"),
    )
    assert got == {other["eventID"]: None}


def test_without_a_break_glass_relationship_the_column_is_null(tmp_path: Path) -> None:
    use = lf.ct(role="support-break-glass", session="SUP-4821-anna")
    assert tickets(tmp_path, [use], parse_config({}, environ={})) == {use["eventID"]: None}


def test_a_lake_written_before_the_column_reads_it_as_null(tmp_path: Path) -> None:
    use = lf.ct(role="support-break-glass", session="SUP-4821-anna")
    tickets(tmp_path, [use], config())
    (path,) = (tmp_path / "lake" / "events").rglob("*.parquet")
    old = pq.read_table(path).drop_columns(["actor_ticket"])
    assert "actor_ticket" in schema.EVENTS.names
    pq.write_table(old, path)
    (row,) = read_events(str(tmp_path / "lake")).to_pylist()
    assert row["actor_ticket"] is None and row["event_id"] == use["eventID"]
