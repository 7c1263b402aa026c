"""``tenantwatch incident list | show | close``: verdicts kept in the lake with who and when,
closes at the same time all kept (local and S3), and ``close --suppress`` feeding detect."""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner

from pipeline import verdicts
from pipeline.alert.run import run_alert
from pipeline.cli import cli
from pipeline.config import Suppression
from pipeline.detect import run_detect
from pipeline.lake import Lake
from tests import verdictlake as vl


@pytest.fixture(scope="module")
def alerted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lake after detect and alert: two incidents, usr-a's and usr-b's cross-tenant reads."""
    root = tmp_path_factory.mktemp("alerted") / "lake"
    lake = vl.build(str(root))
    run_detect(lake.root, vl.config())
    run_alert(lake.root, vl.config())
    return root


@pytest.fixture
def lake(alerted: Path, tmp_path: Path) -> Lake:
    shutil.copytree(alerted, tmp_path / "lake")
    return Lake(str(tmp_path / "lake"))


def incident_of(lake: Lake, actor: str) -> verdicts.IncidentRecord:
    return next(r for r in verdicts.read_incidents(lake) if actor in r.actors)


def tw(*args: str) -> object:
    return CliRunner().invoke(cli, list(args))


def test_close_records_the_verdict_with_who_and_when_and_list_shows_it(lake: Lake) -> None:
    rec = incident_of(lake, vl.USR_A)
    before = datetime.now(UTC)
    out = tw("incident", "close", rec.incident_id[:12], "--verdict", "false_positive",
             "--note", "the migration job", "--by", "alice", "--lake", lake.root)  # fmt: skip
    assert out.exit_code == 0, out.output
    assert out.stdout == f"closed {rec.incident_id} as false_positive by alice\n"
    (v,) = verdicts.read_verdicts(lake)
    assert (v.incident_id, v.verdict, v.note, v.closed_by) == (
        rec.incident_id, "false_positive", "the migration job", "alice",
    )  # fmt: skip
    assert before <= v.closed_at <= datetime.now(UTC)
    assert v.detectors == ("cross_tenant_access",) and v.suppression_id is None

    listed = tw("incident", "list", "--lake", lake.root, "--json")
    assert listed.exit_code == 0, listed.output
    states = {i["incident_id"]: i["verdict"] for i in json.loads(listed.stdout)["incidents"]}
    other = incident_of(lake, vl.USR_B).incident_id
    assert states == {rec.incident_id: "false_positive", other: None}
    later = tw("incident", "list", "--lake", lake.root, "--since", "2026-11-17", "--json")
    assert json.loads(later.stdout)["incidents"] == []  # both were last seen on 2026-11-16
    table = tw("incident", "list", "--lake", lake.root)
    assert f"{rec.incident_id[:12]}" in table.stdout and "false_positive" in table.stdout
    assert "open" in table.stdout


def test_show_gives_the_entities_and_every_verdict_the_latest_counting(lake: Lake) -> None:
    rec = incident_of(lake, vl.USR_B)
    t0 = datetime(2026, 11, 17, 9, tzinfo=UTC)
    verdicts.close(lake, rec, "benign", "a test account", "alice", now=t0)
    verdicts.close(lake, rec, "true_positive", "it was not a test", "bob", now=t0 + timedelta(1))
    out = tw("incident", "show", rec.incident_id, "--lake", lake.root)
    assert out.exit_code == 0, out.output
    lines = out.stdout.splitlines()
    assert "     addresses  203.0.113.9" in lines
    assert "       tenants  t0003, t0004" in lines
    assert "       verdict  true_positive" in lines
    assert lines[-2:] == [
        "                2026-11-17 09:00:00Z benign by alice: a test account",
        "                2026-11-18 09:00:00Z true_positive by bob: it was not a test",
    ]
    doc = json.loads(tw("incident", "show", rec.incident_id, "--lake", lake.root, "--json").stdout)
    assert doc["verdict"] == "true_positive" and len(doc["verdicts"]) == 2


@pytest.mark.parametrize("command", ["show", "close"])
def test_an_unknown_id_is_a_one_line_error_with_exit_code_2(lake: Lake, command: str) -> None:
    extra = ["--verdict", "benign", "--note", "n"] if command == "close" else []
    out = tw("incident", command, "f00d", *extra, "--lake", lake.root)
    assert out.exit_code == 2
    assert out.stderr == (
        "tenantwatch: error: no incident 'f00d' in this lake (tenantwatch incident list)\n"
    )
    assert verdicts.read_verdicts(lake) == []


def test_close_without_by_names_the_login(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("getpass.getuser", lambda: "carol")
    rec = incident_of(lake, vl.USR_A)
    out = tw("incident", "close", rec.incident_id, "--verdict", "benign", "--note", "n",
             "--lake", lake.root)  # fmt: skip
    assert out.exit_code == 0, out.output
    assert [v.closed_by for v in verdicts.read_verdicts(lake)] == ["carol"]


def test_a_bad_suppress_duration_is_a_usage_error(lake: Lake) -> None:
    rec = incident_of(lake, vl.USR_A)
    out = tw("incident", "close", rec.incident_id, "--verdict", "benign", "--note", "n",
             "--suppress", "30", "--lake", lake.root)  # fmt: skip
    assert out.exit_code == 2 and "--suppress" in out.stderr
    assert verdicts.read_verdicts(lake) == [] and lake.files("suppressions", ".json") == []


def _close_many(lake: Lake, n: int) -> None:
    rec = incident_of(lake, vl.USR_A)
    with ThreadPoolExecutor(n) as pool:
        list(
            pool.map(lambda i: verdicts.close(lake, rec, "benign", f"note {i}", f"u{i}"), range(n))
        )


def test_closes_at_the_same_time_are_all_kept(lake: Lake) -> None:
    _close_many(lake, 8)
    assert sorted(v.closed_by for v in verdicts.read_verdicts(lake)) == [f"u{i}" for i in range(8)]


def test_close_suppress_writes_a_suppression_that_detect_applies(lake: Lake) -> None:
    rec = incident_of(lake, vl.USR_A)
    out = tw("incident", "close", rec.incident_id, "--verdict", "false_positive",
             "--note", "the migration job", "--by", "bob", "--suppress", "30d",
             "--lake", lake.root, "--json")  # fmt: skip
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    (path,) = lake.files("suppressions", ".json")
    sup = msgspec.json.decode(Path(lake.base, path).read_bytes(), type=Suppression)
    assert sup.id == doc["suppression_id"] == doc["suppression"]["id"]
    assert (sup.detector, sup.reason, sup.owner) == (
        "cross_tenant_access",
        "the migration job",
        "bob",
    )
    assert abs(sup.expires - (datetime.now(UTC) + timedelta(days=30))) < timedelta(minutes=1)
    assert sup.tenant == "t0001|t0002" and sup.address == r"198\.51\.100\.7"

    again = run_detect(lake.root, vl.config())
    marks = {r["actor"]: r["suppressed_by"] for r in again.findings.to_pylist()}
    assert marks == {vl.USR_A: sup.id, vl.USR_B: None}


def test_precision_per_detector_counts_each_incident_s_latest_verdict() -> None:
    def rec(i: str, *dets: str) -> verdicts.IncidentRecord:
        return verdicts.IncidentRecord(
            i, 1, "high", "t", "new", dets, (), (), (), None, None, 1, 1, None
        )

    def v(i: str, kind: str, day: int) -> verdicts.Verdict:
        at = datetime(2026, 11, day, tzinfo=UTC)
        return verdicts.Verdict(f"v{i}{day}", i, 1, (), kind, "n", "me", at)

    records = [rec("a", "x"), rec("b", "x"), rec("c", "x", "y"), rec("d", "y")]
    given = [v("a", "false_positive", 1), v("a", "true_positive", 2), v("b", "benign", 1),
             v("c", "false_positive", 1)]  # fmt: skip
    rows = {r["detector"]: r for r in verdicts.precision(records, given)}
    assert rows["x"] == {"detector": "x", "closed": 3, "true_positive": 1, "false_positive": 1,
                         "benign": 1, "remediated": 0, "precision": 1 / 3}  # fmt: skip
    assert rows["y"]["closed"] == 1 and rows["y"]["precision"] == 0.0  # d is still open


@pytest.mark.e2e
def test_verdicts_on_an_s3_lake(aws: str, alerted: Path) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=aws)
    s3.create_bucket(Bucket="lake")
    for f in alerted.rglob("*"):
        if f.is_file():
            s3.upload_file(str(f), "lake", f"tw/{f.relative_to(alerted).as_posix()}")
    lake = Lake("s3://lake/tw")
    _close_many(lake, 6)
    assert len(verdicts.read_verdicts(lake)) == 6

    rec = incident_of(lake, vl.USR_A)
    out = tw("incident", "close", rec.incident_id[:10], "--verdict", "false_positive",
             "--note", "migration", "--by", "bob", "--suppress", "2w",
             "--lake", lake.root)  # fmt: skip
    assert out.exit_code == 0, out.output
    listed = json.loads(tw("incident", "list", "--lake", lake.root, "--json").stdout)
    assert {i["verdict"] for i in listed["incidents"]} == {"false_positive", None}
    listing = s3.list_objects_v2(Bucket="lake", Prefix="tw/suppressions/")["Contents"]
    assert len([o for o in listing if o["Key"].endswith(".json")]) == 1

    again = run_detect(lake.root, vl.config())
    marks = {r["actor"]: r["suppressed_by"] for r in again.findings.to_pylist()}
    assert marks[vl.USR_A] is not None and marks[vl.USR_B] is None
