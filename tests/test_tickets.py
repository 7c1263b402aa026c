"""Break-glass tickets from files and DynamoDB: read once, before anything runs, or a clear error.

The detector's side (which ticket an event names, what makes it valid) is in
test_cross_tenant_access.py; here tickets come from a ticket system's export, end to end.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import detectors
from detectors.cross_tenant_access import CrossTenantAccess
from pipeline import tickets
from pipeline.cli import cli
from pipeline.config import BreakGlass, Ticket, load_config
from pipeline.errors import ConfigError
from pipeline.runs.results import AlertResult, DetectResult, IngestResult
from pipeline.tables import TableError
from tests.factories import event, events, role
from tests.logfactory import ACCOUNT, ct, delivery_file

BREAK_GLASS = f"^arn:aws:sts::{ACCOUNT}:assumed-role/support-break-glass/"
EXPIRES = datetime(2026, 11, 17, tzinfo=UTC)
CSV = (
    "id,tenants,expires,approvers\n"
    "SUP-4821,t0031,2026-11-17T00:00:00Z,alice@example.com;bob@example.com\n"
    'SUP-4822,"[""t0040"",""t0041""]",2026-11-20T12:00:00+01:00,\n'
)
FROM_CSV = (
    Ticket(
        id="SUP-4821",
        tenants=("t0031",),
        expires=EXPIRES,
        approvers=("alice@example.com", "bob@example.com"),
    ),
    Ticket(
        id="SUP-4822",
        tenants=("t0040", "t0041"),
        expires=datetime(2026, 11, 20, 11, tzinfo=UTC),
        approvers=(),
    ),
)


def config(tmp_path: Path, source: str) -> Path:
    """A configuration: S3 keys name the target tenant, and a break-glass role whose tickets
    come from ``source`` (a ``tickets_file = ...`` or ``tickets_table = ...`` line)."""
    path = tmp_path / "tenantwatch.toml"
    path.write_text(
        "[[tenancy.target]]\n"
        'kind = "s3_key"\n'
        "pattern = '^tenants/(?P<tenant>t\\d+)/'\n"
        "[[relationships]]\n"
        'kind = "break_glass"\n'
        f"principal_pattern = '{BREAK_GLASS}'\n"
        f"{source}\n"
    )
    return path


def resolved(path: Path) -> tuple[Ticket, ...]:
    rel = tickets.resolve(load_config(path)).relationships[0]
    assert isinstance(rel, BreakGlass)
    return rel.tickets


# --- files --------------------------------------------------------------------------------------


def test_tickets_from_a_csv_file_next_to_the_configuration(tmp_path: Path) -> None:
    (tmp_path / "tickets.csv").write_text(CSV)
    assert resolved(config(tmp_path, 'tickets_file = "tickets.csv"')) == FROM_CSV


def test_tickets_from_json_and_parquet_files_read_the_same(tmp_path: Path) -> None:
    rows = [
        {
            "id": "SUP-4821",
            "tenants": ["t0031"],
            "expires": "2026-11-17T00:00:00Z",
            "approvers": ["alice@example.com", "bob@example.com"],
        },
        {"id": "SUP-4822", "tenants": "t0040;t0041", "expires": "2026-11-20T12:00:00+01:00"},
    ]
    (tmp_path / "tickets.json").write_text(json.dumps(rows))
    assert resolved(config(tmp_path, 'tickets_file = "tickets.json"')) == FROM_CSV
    table = pa.table(
        {
            "id": ["SUP-4821", "SUP-4822"],
            "tenants": [["t0031"], ["t0040", "t0041"]],
            "expires": pa.array([EXPIRES, datetime(2026, 11, 20, 11, tzinfo=UTC)]),
            "approvers": [["alice@example.com", "bob@example.com"], []],
        }
    )
    pq.write_table(table, tmp_path / "tickets.parquet")
    assert resolved(config(tmp_path, 'tickets_file = "tickets.parquet"')) == FROM_CSV


def test_a_file_without_an_approvers_column_gives_tickets_without_approvers(
    tmp_path: Path,
) -> None:
    (tmp_path / "t.csv").write_text("id,tenants,expires\nSUP-1,t0031,2026-11-17T00:00:00Z\n")
    got = resolved(config(tmp_path, 'tickets_file = "t.csv"'))
    assert got == (Ticket(id="SUP-1", tenants=("t0031",), expires=EXPIRES, approvers=()),)


def test_file_tickets_join_the_inline_ones(tmp_path: Path) -> None:
    (tmp_path / "tickets.csv").write_text(CSV)
    inline = 'tickets = [{ id = "SUP-1", tenants = ["t0001"], expires = 2026-11-17T00:00:00Z }]'
    got = resolved(config(tmp_path, f'tickets_file = "tickets.csv"\n{inline}'))
    assert [t.id for t in got] == ["SUP-1", "SUP-4821", "SUP-4822"]


@pytest.mark.parametrize(
    ("row", "error"),
    [
        pytest.param(",t0031,2026-11-17T00:00:00Z,", "row 3: id: missing", id="no-id"),
        pytest.param(
            "SUP-9,,2026-11-17T00:00:00Z,",
            "row 3: tenants: missing (a ticket opens at least one tenant)",
            id="no-tenants",
        ),
        pytest.param(
            "SUP-9,t0031,2026-11-17,",
            "row 3: expires: '2026-11-17' has no time zone (e.g. 2026-11-17T00:00:00Z)",
            id="expiry-without-zone",
        ),
        pytest.param(
            "SUP-9,t0031,next friday,",
            "row 3: expires: 'next friday' is not an ISO 8601 date-time",
            id="expiry-unparseable",
        ),
        pytest.param("SUP-9,t0031,,", "row 3: expires: missing", id="no-expiry"),
        pytest.param(
            'SUP-9,"[""t0031""",2026-11-17T00:00:00Z,',
            "row 3: tenants: not a valid JSON list",
            id="tenants-broken-json",
        ),
        pytest.param(
            "SUP-4821,t0099,2026-11-17T00:00:00Z,",
            "ticket 'SUP-4821' is given twice, differently",
            id="one-id-two-tickets",
        ),
    ],
)
def test_a_row_that_is_not_a_ticket_is_one_line_naming_file_row_and_field(
    tmp_path: Path, row: str, error: str
) -> None:
    header, first, _ = CSV.splitlines()
    (tmp_path / "tickets.csv").write_text(f"{header}\n{first}\n{row}\n")
    with pytest.raises(ConfigError) as err:
        resolved(config(tmp_path, 'tickets_file = "tickets.csv"'))
    message = str(err.value)
    assert message.startswith(f"relationships[0].tickets_file: {tmp_path / 'tickets.csv'}: ")
    assert error in message and "\n" not in message


def test_a_file_that_is_not_csv_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "tickets.json").write_text('[{"id": "SUP-1", ')
    with pytest.raises(ConfigError, match=r"tickets\.json: cannot be parsed"):
        resolved(config(tmp_path, 'tickets_file = "tickets.json"'))


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"tickets_file: .*nope\.csv: file not found$"):
        resolved(config(tmp_path, 'tickets_file = "nope.csv"'))


def test_resolving_reads_once_and_leaves_nothing_to_read(tmp_path: Path) -> None:
    (tmp_path / "tickets.csv").write_text(CSV)
    cfg = tickets.resolve(load_config(config(tmp_path, 'tickets_file = "tickets.csv"')))
    (tmp_path / "tickets.csv").unlink()  # a second resolve would fail if it read again
    assert not tickets.pending(cfg)
    assert tickets.resolve(cfg) is cfg
    built = detectors.from_config(cfg)["cross_tenant_access"]
    assert built.relationships == cfg.relationships


def test_a_detector_given_tickets_it_has_not_read_refuses_to_run(tmp_path: Path) -> None:
    # Without this, every legitimate break-glass access would page.
    rel = BreakGlass(principal_pattern=BREAK_GLASS, tickets_file=str(tmp_path / "t.csv"))
    with pytest.raises(TypeError, match="tickets not read"):
        CrossTenantAccess(None, (rel,))


def test_from_config_reads_the_file_for_every_detector(tmp_path: Path) -> None:
    (tmp_path / "tickets.csv").write_text(CSV)
    built = detectors.from_config(load_config(config(tmp_path, 'tickets_file = "tickets.csv"')))
    for det in built.values():
        (rel,) = det.relationships
        assert isinstance(rel, BreakGlass) and rel.tickets == FROM_CSV


# --- DynamoDB and S3 (moto server) --------------------------------------------------------------


def _ticket_table(name: str) -> None:
    import boto3

    ddb = boto3.client("dynamodb")
    ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    ddb.put_item(
        TableName=name,
        Item={
            "id": {"S": "SUP-4821"},
            "tenants": {"SS": ["t0031"]},
            "expires": {"S": "2026-11-17T00:00:00Z"},
            "approvers": {"L": [{"S": "alice@example.com"}, {"S": "bob@example.com"}]},
        },
    )
    ddb.put_item(
        TableName=name,
        Item={
            "id": {"S": "SUP-4822"},
            "tenants": {"S": '["t0040", "t0041"]'},
            "expires": {"S": "2026-11-20T12:00:00+01:00"},
        },
    )


def test_tickets_from_a_dynamodb_table(aws: str, tmp_path: Path) -> None:
    _ticket_table("support-tickets")
    got = resolved(config(tmp_path, 'tickets_table = "support-tickets"'))
    assert sorted(got, key=lambda t: t.id) == list(FROM_CSV)


def test_a_dynamodb_item_that_is_not_a_ticket_is_named_by_its_id(aws: str, tmp_path: Path) -> None:
    import boto3

    _ticket_table("support-tickets")
    item = {"id": {"S": "SUP-7"}, "tenants": {"SS": ["t1"]}, "expires": {"S": "2026-11-17"}}
    boto3.client("dynamodb").put_item(TableName="support-tickets", Item=item)
    with pytest.raises(ConfigError) as err:
        resolved(config(tmp_path, 'tickets_table = "support-tickets"'))
    assert str(err.value) == (
        "relationships[0].tickets_table: support-tickets: item id=SUP-7: expires: "
        "'2026-11-17' has no time zone (e.g. 2026-11-17T00:00:00Z)"
    )


def test_tickets_from_an_s3_object(aws: str, tmp_path: Path) -> None:
    import boto3

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="ticket-exports")
    s3.put_object(Bucket="ticket-exports", Key="support/tickets.csv", Body=CSV.encode())
    got = resolved(config(tmp_path, 'tickets_file = "s3://ticket-exports/support/tickets.csv"'))
    assert got == FROM_CSV


def test_a_table_that_cannot_be_read_is_a_run_time_error(aws: str, tmp_path: Path) -> None:
    with pytest.raises(TableError, match=r"^relationships\[0\]\.tickets_table: DynamoDB table"):
        resolved(config(tmp_path, 'tickets_table = "no-such-table"'))


# --- the command line: errors before anything runs, tickets used when it does -------------------


def _lake_with_break_glass(tmp_path: Path, cfg: Path) -> str:
    """A lake holding one break-glass read of t0031's data under ticket SUP-4821 (session name)."""
    rec = ct(
        role="support-break-glass",
        session="SUP-4821.dana",
        key="tenants/t0031/invoices/7.pdf",
        time="2026-11-16T11:30:00Z",
    )
    delivery_file(tmp_path / "in" / "ct.json.gz", [rec])
    lake = str(tmp_path / "lake")
    args = ["--config", str(cfg), "ingest", str(tmp_path / "in"), "--lake", lake, "--workers", "1"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return lake


def _detect(cfg: Path, lake: str) -> tuple[int, str, list[dict]]:
    result = CliRunner().invoke(cli, ["--config", str(cfg), "detect", "--lake", lake, "--json"])
    found = orjson.loads(result.stdout)["findings"] if result.exit_code == 0 else []
    return result.exit_code, result.output, found


def test_detect_uses_the_tickets_of_the_file_and_names_their_approvers(tmp_path: Path) -> None:
    (tmp_path / "tickets.csv").write_text(CSV)
    cfg = config(tmp_path, 'tickets_file = "tickets.csv"')
    code, output, found = _detect(cfg, _lake_with_break_glass(tmp_path, cfg))
    assert code == 0, output
    (f,) = found
    assert (f["severity"], f["evidence"]["kind"]) == ("low", "break_glass_ticket")
    assert f["evidence"]["tickets"] == [
        {
            "id": "SUP-4821",
            "tenants": ["t0031"],
            "expires": "2026-11-17T00:00:00+00:00",
            "approvers": ["alice@example.com", "bob@example.com"],
        }
    ]


def test_detect_uses_the_tickets_of_a_dynamodb_table(aws: str, tmp_path: Path) -> None:
    _ticket_table("support-tickets")
    cfg = config(tmp_path, 'tickets_table = "support-tickets"')
    code, output, found = _detect(cfg, _lake_with_break_glass(tmp_path, cfg))
    assert code == 0, output
    assert [(f["severity"], f["evidence"]["kind"]) for f in found] == [
        ("low", "break_glass_ticket")
    ]


def test_without_the_file_the_same_access_pages(tmp_path: Path) -> None:
    (tmp_path / "tickets.csv").write_text("id,tenants,expires\n")  # no tickets at all
    cfg = config(tmp_path, 'tickets_file = "tickets.csv"')
    code, _, found = _detect(cfg, _lake_with_break_glass(tmp_path, cfg))
    assert [(f["severity"], f["evidence"]["tickets_unknown"]) for f in found] == [
        ("high", ["SUP-4821"])
    ]
    assert code == 0


def test_a_malformed_ticket_file_stops_detect_with_exit_code_2(tmp_path: Path) -> None:
    (tmp_path / "tickets.csv").write_text(CSV)
    cfg = config(tmp_path, 'tickets_file = "tickets.csv"')
    lake = _lake_with_break_glass(tmp_path, cfg)
    (tmp_path / "tickets.csv").write_text("id,tenants,expires\nSUP-1,t0031,tomorrow\n")
    code, output, _ = _detect(cfg, lake)
    assert code == 2
    assert output.strip().splitlines() == [
        f"tenantwatch: error: relationships[0].tickets_file: {tmp_path / 'tickets.csv'}: row 2: "
        "expires: 'tomorrow' is not an ISO 8601 date-time (e.g. 2026-11-17T00:00:00Z)"
    ]
    assert not (Path(lake) / "findings").exists()


def test_an_unreadable_table_stops_detect_with_exit_code_1_before_detection(
    aws: str, tmp_path: Path
) -> None:
    cfg = config(tmp_path, 'tickets_table = "no-such-table"')
    lake = _lake_with_break_glass(tmp_path, cfg)
    code, output, _ = _detect(cfg, lake)
    assert code == 1
    lines = output.strip().splitlines()
    assert len(lines) == 1 and "relationships[0].tickets_table: DynamoDB table" in lines[0]
    assert not (Path(lake) / "findings").exists()


def test_an_unreadable_table_stops_run_before_anything_is_ingested(
    aws: str, tmp_path: Path
) -> None:
    cfg = config(tmp_path, 'tickets_table = "no-such-table"')
    delivery_file(tmp_path / "in" / "ct.json.gz", [ct()])
    lake = tmp_path / "lake"
    args = ["--config", str(cfg), "run", str(tmp_path / "in"), "--lake", str(lake)]
    result = CliRunner().invoke(cli, [*args, "--workers", "1"])
    assert result.exit_code == 1, result.output
    assert "tickets_table" in result.output
    assert not lake.exists() or not (lake / "events").exists()


def test_a_window_without_the_ticket_column_is_read_as_before() -> None:
    # A lake written before events carried actor_ticket: the session name still names the ticket.
    rel = BreakGlass(principal_pattern=BREAK_GLASS, tickets=FROM_CSV)
    row = event(
        actor_principal=role("support-break-glass", "SUP-4821.dana"),
        actor_tenant=None,
        target_tenant="t0031",
    )
    window = events([row])
    if "actor_ticket" in window.column_names:
        window = window.drop_columns(["actor_ticket"])
    (f,) = CrossTenantAccess(None, (rel,)).detect(None, window).to_pylist()
    assert f["severity"] == "low"


@dataclass
class Recording:
    """Stages that record the configuration each is given, and take the ticket file away once
    ingest ran: a stage that read it again would fail."""

    tickets_file: Path
    given: list[Any] = field(default_factory=list)

    def ingest(self, sources: list[str], lake_root: str, cfg: Any, *rest: Any) -> IngestResult:
        self.given.append(cfg)
        self.tickets_file.unlink()
        return IngestResult()

    def detect(self, lake_root: str, cfg: Any, *rest: Any) -> DetectResult:
        self.given.append(cfg)
        detectors.from_config(cfg)
        return DetectResult(findings=0)

    def slide(self, *args: Any) -> DetectResult:
        return DetectResult(findings=0)

    def alert(self, *args: Any) -> AlertResult:
        return AlertResult()


def test_a_scheduled_run_reads_the_tickets_once_before_it_ingests(tmp_path: Path) -> None:
    from pipeline.runs.unattended import Budget, RunSettings, run_scheduled

    (tmp_path / "tickets.csv").write_text(CSV)
    cfg = load_config(config(tmp_path, 'tickets_file = "tickets.csv"'))
    stages = Recording(tmp_path / "tickets.csv")
    settings = RunSettings(sources=("s3://trail/AWSLogs/",), backfill_hours=3)
    now = datetime(2026, 11, 16, 13, 20, tzinfo=UTC)
    report = run_scheduled(
        now, str(tmp_path / "lake"), cfg, settings, Budget(lambda: 900_000, 30), "r", stages
    )
    assert report.status == "done" and len(report.windows) == 3
    assert len(stages.given) == 4  # ingest, then a detect per window
    for given in stages.given:
        (rel,) = given.relationships
        assert rel.tickets == FROM_CSV and not tickets.pending(given)
