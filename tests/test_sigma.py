"""The ``sigma`` detector: Sigma's matching semantics in the lake SQL, correlations, the rules
skipped with their reasons, a rule failing alone, and findings that group like any other."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from detectors.sigma import SigmaRules
from detectors.sigma.rules import load
from pipeline import schema
from tests.factories import ACCOUNT, event, events

R1 = "00000000-0000-4000-8000-000000000001"
HEAD = """
title: {title}
id: {id}
logsource:
  product: aws
  service: cloudtrail
level: high
tags: [attack.t1000]
"""


def rule(
    tmp: Path,
    detection: str,
    title: str = "r",
    rule_id: str = "00000000-0000-4000-8000-000000000001",
    head: str = HEAD,
) -> Path:
    path = tmp / f"{rule_id}.yml"
    path.write_text(head.format(title=title, id=rule_id) + detection)
    return path


def ct(at: float = 0, **record: Any) -> dict[str, Any]:
    """A lake row of a CloudTrail record: its columns derived from the record as ingest does."""
    rec = {"eventSource": "s3.amazonaws.com", "eventName": "GetObject", **record}
    return event(
        at,
        service=rec["eventSource"],
        action=rec["eventName"],
        error_code=rec.get("errorCode"),
        source_ip=rec.get("sourceIPAddress", "198.51.100.7"),
        actor_principal=record.get("_actor", event()["actor_principal"]),
        raw=json.dumps({k: v for k, v in rec.items() if not k.startswith("_")}),
    )


def matches(tmp: Path, detection: str, rows: list[dict[str, Any]], **kw: Any) -> list[int]:
    """Positions (in ``rows``) of the events the one rule matched."""
    rules = load([str(rule(tmp, detection))], pack=False)
    assert not rules.skipped, rules.skipped
    det = SigmaRules(rules=rules, **kw)
    scored = det.score(_frame(rows))
    assert not det.failures, det.failures
    return sorted(p for r in scored["rows"] for p in r)


def _frame(rows: list[dict[str, Any]]) -> Any:
    from detectors.base import to_frame

    return to_frame(events(rows))


def test_matching_is_case_insensitive_and_wildcards_are_sql_escaped(tmp_path: Path) -> None:
    detection = """
detection:
  selection:
    eventName: stop*
    requestParameters.name: 'a_b%'
  condition: selection
"""
    rows = [
        ct(eventName="StopLogging", requestParameters={"name": "A_B%"}),
        ct(eventName="StopLogging", requestParameters={"name": "axb%"}),  # _ is no wildcard
        ct(eventName="StopLogging", requestParameters={"name": "a_bc"}),  # % is no wildcard
        ct(eventName="StartLogging", requestParameters={"name": "a_b%"}),
    ]
    assert matches(tmp_path, detection, rows) == [0]


def test_a_quote_in_a_value_is_data_not_sql(tmp_path: Path) -> None:
    detection = """
detection:
  selection:
    requestParameters.key: "it's' OR 1=1 --"
  condition: selection
"""
    rows = [ct(requestParameters={"key": "it's' OR 1=1 --"}), ct(requestParameters={"key": "x"})]
    assert matches(tmp_path, detection, rows) == [0]


def test_not_matches_events_where_the_field_is_missing(tmp_path: Path) -> None:
    detection = """
detection:
  selection:
    eventName: GetObject
  filter:
    userIdentity.type: AWSService
  condition: selection and not filter
"""
    rows = [
        ct(userIdentity={"type": "AWSService"}),
        ct(userIdentity={"type": "IAMUser"}),
        ct(),  # no userIdentity at all: Sigma keeps it, SQL's NULL would not
    ]
    assert matches(tmp_path, detection, rows) == [1, 2]


def test_modifiers_contains_endswith_re_cidr_gt_exists_and_fieldref(tmp_path: Path) -> None:
    cases = {
        "requestParameters.key|contains: invoice": (
            [{"key": "2026/invoice-7.pdf"}, {"key": "x"}],
            [0],
        ),
        "requestParameters.key|endswith: .PDF": ([{"key": "a.pdf"}, {"key": "a.pdf.txt"}], [0]),
        "requestParameters.key|re: '^t[0-9]{4}/'": ([{"key": "t0001/x"}, {"key": "tx/x"}], [0]),
        "requestParameters.size|gt: 100": ([{"size": 101}, {"size": 100}, {"size": "n/a"}], [0]),
        "requestParameters.key|exists: false": ([{"other": 1}, {"key": "k"}], [0]),
        "requestParameters.owner|fieldref: requestParameters.reader": (
            [{"owner": "A", "reader": "a"}, {"owner": "a", "reader": "b"}, {"owner": "a"}],
            [0],
        ),
    }
    for i, (item, (params, want)) in enumerate(cases.items()):
        rows = [ct(requestParameters=p) for p in params]
        detection = f"\ndetection:\n  selection:\n    {item}\n  condition: selection\n"
        sub = tmp_path / str(i)
        sub.mkdir()
        assert matches(sub, detection, rows) == want, item
    rows = [ct(sourceIPAddress="10.1.2.3"), ct(sourceIPAddress="11.0.0.1")]
    cidr = (
        "\ndetection:\n  selection:\n    sourceIPAddress|cidr: 10.0.0.0/8\n  condition: selection\n"
    )
    assert matches(tmp_path, cidr, rows) == [0]


def test_keywords_search_the_original_record(tmp_path: Path) -> None:
    detection = """
detection:
  keywords:
    - 'stratus-red-team'
  condition: keywords
"""
    rows = [ct(userAgent="Stratus-Red-Team_1234"), ct(userAgent="aws-cli")]
    assert matches(tmp_path, detection, rows) == [0]


def test_a_finding_per_rule_and_actor_with_the_rules_title_level_and_attack_tags(
    tmp_path: Path,
) -> None:
    path = rule(
        tmp_path,
        "\ndetection:\n  s:\n    eventName: StopLogging\n  condition: s\n",
        title="Trail stopped",
    )
    det = SigmaRules(rules=load([str(path)], pack=False))
    rows = [
        ct(0, eventName="StopLogging", _actor="arn:aws:iam::1:user/a"),
        ct(5, eventName="StopLogging", _actor="arn:aws:iam::1:user/a"),
        ct(9, eventName="StopLogging", _actor="arn:aws:iam::1:user/b"),
        ct(10, eventName="GetObject", _actor="arn:aws:iam::1:user/b"),
    ]
    found = det.detect(None, events(rows)).to_pylist()
    assert sorted((f["actor"], f["event_count"]) for f in found) == [
        ("arn:aws:iam::1:user/a", 2),
        ("arn:aws:iam::1:user/b", 1),
    ]
    f = found[0]
    assert f["detector"] == "sigma"
    assert f["severity"] == "high"
    assert f["title"] == "Sigma: Trail stopped"
    assert f["dedup_key"].startswith("sigma:00000000-0000-4000-8000-000000000001:")
    assert f["tenants"] == ["t0001"]
    details = json.loads(f["evidence"])
    assert details["rule_id"] == "00000000-0000-4000-8000-000000000001" and details["attack"] == [
        "attack.t1000"
    ]
    # Same window, same rule, same actor: the same id (incidents group and dedup on it).
    again = det.detect(None, events(rows)).to_pylist()
    assert sorted(x["finding_id"] for x in again) == sorted(x["finding_id"] for x in found)


CORRELATION = """
title: burst
id: 00000000-0000-4000-8000-000000000002
correlation:
  type: {kind}
  rules: [base]
  group-by: [actor_principal]
  timespan: 5m
  condition:
    gte: {n}
{field}level: medium
---
title: base
id: 00000000-0000-4000-8000-000000000003
name: base
logsource:
  product: aws
  service: cloudtrail
detection:
  s:
    eventName: GetSecretValue
  condition: s
level: low
"""


def correlated(
    tmp: Path, kind: str, n: int, rows: list[dict[str, Any]], field: str = ""
) -> dict[str, int]:
    path = tmp / f"{kind}.yml"
    path.write_text(
        CORRELATION.format(kind=kind, n=n, field=f"    field: {field}\n" if field else "")
    )
    rules = load([str(path)], pack=False)
    assert not rules.skipped, rules.skipped
    assert [r.kind for r in rules.rules] == [kind]  # the base rule makes no findings itself
    det = SigmaRules(rules=rules)
    found = det.detect(None, events(rows)).to_pylist()
    assert not det.failures
    return {f["actor"]: f["event_count"] for f in found}


def test_event_count_correlation_counts_within_the_timespan(tmp_path: Path) -> None:
    a, b = "arn:aws:iam::1:user/a", "arn:aws:iam::1:user/b"
    rows = [ct(i * 10, eventName="GetSecretValue", _actor=a) for i in range(10)]
    # b reads as many, but one every 2 minutes: never 10 within 5 minutes.
    rows += [ct(i * 120, eventName="GetSecretValue", _actor=b) for i in range(10)]
    assert correlated(tmp_path, "event_count", 10, rows) == {a: 10}


def test_value_count_correlation_counts_distinct_values(tmp_path: Path) -> None:
    a, b = "arn:aws:iam::1:user/a", "arn:aws:iam::1:user/b"
    rows = [
        ct(i, eventName="GetSecretValue", requestParameters={"secretId": f"s{i}"}, _actor=a)
        for i in range(5)
    ]
    rows += [
        ct(i, eventName="GetSecretValue", requestParameters={"secretId": "same"}, _actor=b)
        for i in range(5)
    ]
    got = correlated(tmp_path, "value_count", 5, rows, field="requestParameters.secretId")
    assert got == {a: 5}


def test_temporal_correlation_needs_every_rule_within_the_timespan(tmp_path: Path) -> None:
    text = """
title: stop then share
id: 00000000-0000-4000-8000-000000000004
correlation:
  type: temporal
  rules: [stop, share]
  group-by: [actor_principal]
  timespan: 10m
level: high
---
title: stop
name: stop
id: 00000000-0000-4000-8000-000000000005
logsource: {product: aws, service: cloudtrail}
detection: {s: {eventName: StopLogging}, condition: s}
---
title: share
name: share
id: 00000000-0000-4000-8000-000000000006
logsource: {product: aws, service: cloudtrail}
detection: {s: {eventName: ModifySnapshotAttribute}, condition: s}
"""
    (tmp_path / "t.yml").write_text(text)
    rules = load([str(tmp_path / "t.yml")], pack=False)
    assert [r.kind for r in rules.rules] == ["temporal"]
    a, b = "arn:aws:iam::1:user/a", "arn:aws:iam::1:user/b"
    rows = [
        ct(0, eventName="StopLogging", _actor=a),
        ct(60, eventName="ModifySnapshotAttribute", _actor=a),
        ct(0, eventName="StopLogging", _actor=b),
        ct(3600, eventName="ModifySnapshotAttribute", _actor=b),  # an hour later: apart
    ]
    found = SigmaRules(rules=rules).detect(None, events(rows)).to_pylist()
    assert [(f["actor"], f["event_count"]) for f in found] == [(a, 2)]


def test_rules_tenantwatch_cannot_run_are_skipped_with_their_reason(tmp_path: Path) -> None:
    (tmp_path / "ok.yml").write_text(
        HEAD.format(title="ok", id="00000000-0000-4000-8000-000000000011")
        + "detection: {s: {eventName: x}, condition: s}\n"
    )
    (tmp_path / "windows.yml").write_text(
        "title: proc\nid: 00000000-0000-4000-8000-000000000012\n"
        "logsource: {product: windows, category: process_creation}\n"
        "detection: {s: {Image: x}, condition: s}\n"
    )
    (tmp_path / "field.yml").write_text(
        HEAD.format(title="field", id="00000000-0000-4000-8000-000000000013")
        + "detection: {s: {CommandLine: x}, condition: s}\n"
    )
    (tmp_path / "modifier.yml").write_text(
        HEAD.format(title="modifier", id="00000000-0000-4000-8000-000000000014")
        + "detection: {s: {eventName|nosuchmodifier: x}, condition: s}\n"
    )
    (tmp_path / "broken.yml").write_text("title: broken\ndetection:\n  s: [unclosed\n")
    (tmp_path / "notes.yml").write_text("- just\n- a list\n")
    rules = load([str(tmp_path)], pack=False)
    assert [r.title for r in rules.rules] == ["ok"]
    why = {Path(s.path).name: s for s in rules.skipped}
    assert set(why) == {"windows.yml", "field.yml", "modifier.yml", "broken.yml", "notes.yml"}
    assert "no log source product=windows, category=process_creation" in why["windows.yml"].reason
    assert "unknown field 'CommandLine'" in why["field.yml"].reason
    assert "nosuchmodifier" in why["modifier.yml"].reason
    assert why["broken.yml"].reason.startswith("not YAML") and why["broken.yml"].line == 4
    assert "no mapping" in why["notes.yml"].reason
    assert str(why["broken.yml"]).startswith(f"{tmp_path / 'broken.yml'}:4: ")


def test_a_rule_failing_at_run_time_fails_alone(tmp_path: Path) -> None:
    rules = load(
        [str(rule(tmp_path, "\ndetection:\n  s:\n    eventName: StopLogging\n  condition: s\n"))],
        pack=False,
    )
    good = rules.rules[0]
    bad = type(good)(**{**good.__dict__, "id": "bad", "sql": "SELECT * FROM no_such_table"})
    rules.rules.insert(0, bad)
    det = SigmaRules(rules=rules)
    found = det.detect(None, events([ct(eventName="StopLogging")])).to_pylist()
    assert [f["dedup_key"].split(":")[1] for f in found] == ["00000000-0000-4000-8000-000000000001"]
    assert list(det.failures) == ["bad"] and "no_such_table" in det.failures["bad"]


def test_the_run_reports_a_failed_rule_beside_the_detectors(tmp_path: Path) -> None:
    from pipeline.detect import parts_failed

    det = SigmaRules(rules=load([], pack=False))
    det.failures = {"r-9": "BinderException: no column"}
    assert parts_failed("sigma", det) == {"sigma:r-9": "BinderException: no column"}


def test_foreign_accounts_leave_out_the_events_own_account_and_its_tenants(tmp_path: Path) -> None:
    detection = """
detection:
  s:
    foreign_accounts|exists: true
  condition: s
"""
    share = {"createVolumePermission": {"add": {"items": [{"userId": "444455556666"}]}}}
    own = {"createVolumePermission": {"add": {"items": [{"userId": ACCOUNT}]}}}
    rows = [
        ct(eventName="ModifySnapshotAttribute", requestParameters=share),
        ct(eventName="ModifySnapshotAttribute", requestParameters=own),
        ct(eventName="ModifySnapshotAttribute", requestParameters={"note": "1234567890123"}),
    ]
    assert matches(tmp_path, detection, rows) == [0]
    # The lookup says 444455556666 is the actor's own tenant's (t0001): no longer foreign.
    assert matches(tmp_path, detection, rows, accounts={"444455556666": "t0001"}) == []
    assert matches(tmp_path, detection, rows, accounts={"444455556666": "t0002"}) == [0]


def test_api_log_sources_read_their_own_fields(tmp_path: Path) -> None:
    head = HEAD.replace(
        "product: aws\n  service: cloudtrail", "product: tenantwatch\n  service: apigateway"
    )
    path = rule(
        tmp_path, "\ndetection:\n  s:\n    routeKey|contains: admin\n  condition: s\n", head=head
    )
    rules = load([str(path)], pack=False)
    assert not rules.skipped
    rows = [
        event(0, source="apigateway", raw=json.dumps({"routeKey": "GET /admin/tenants"})),
        event(1, source="apigateway", raw=json.dumps({"routeKey": "GET /invoices"})),
        event(2, source="cloudtrail", raw=json.dumps({"routeKey": "GET /admin"})),  # not its source
    ]
    scored = SigmaRules(rules=rules).score(_frame(rows))
    assert [p for r in scored["rows"] for p in r] == [0]


def test_athena_sql_reads_the_same_fields_with_trinos_functions(tmp_path: Path) -> None:
    path = rule(
        tmp_path,
        "\ndetection:\n  s:\n    userIdentity.type: Root\n"
        "    eventName|re: '^Stop'\n  condition: s\n",
    )
    duck = load([str(path)], pack=False).rules[0].sql
    athena = load([str(path)], pack=False, dialect="athena").rules[0].sql
    assert "json_extract_string(raw, '$.userIdentity.type')" in duck
    assert "regexp_matches" in duck
    assert "json_extract_scalar(raw, '$.userIdentity.type')" in athena
    assert "regexp_like" in athena and "regexp_matches" not in athena


def test_the_default_detector_runs_the_rule_pack() -> None:
    det = SigmaRules()
    assert len(det.rules.rules) >= 12
    found = det.detect(
        None, events([ct(eventSource="cloudtrail.amazonaws.com", eventName="StopLogging")])
    )
    assert found.num_rows == 1
    assert found.schema == schema.FINDINGS
    assert found["window_end"][0].as_py() - found["window_start"][0].as_py() == timedelta(hours=1)


def test_sigma_settings_have_only_enabled() -> None:
    with pytest.raises(Exception, match="rules"):
        SigmaRules.parse_settings({"rules": ["x"]})


# --- the command line ------------------------------------------------------------------------


def test_sigma_check_lists_what_loaded_and_what_was_skipped_with_why(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from pipeline.cli import cli

    rule(tmp_path, "\ndetection:\n  s:\n    eventName: StopLogging\n  condition: s\n")
    (tmp_path / "bad.yml").write_text("title: bad\ndetection: [\n")
    out = CliRunner().invoke(cli, ["sigma", "check", str(tmp_path)])
    assert out.exit_code == 0, out.output
    assert out.output.splitlines()[0] == "1 rules loaded from 2 files, 1 skipped"
    assert f"skipped  {tmp_path / 'bad.yml'}:3: not YAML" in out.output
    strict = CliRunner().invoke(cli, ["sigma", "check", "--strict", "--json", str(tmp_path)])
    assert strict.exit_code == 1
    data = json.loads(strict.output)
    assert [r["id"] for r in data["loaded"]] == [R1]
    assert data["skipped"][0]["line"] == 3
    missing = CliRunner().invoke(cli, ["sigma", "check", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "no Sigma rules at" in missing.output


def test_sigma_show_prints_the_duckdb_and_the_athena_query(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from pipeline.cli import cli

    out = CliRunner().invoke(
        cli, ["sigma", "show", "trail_tampering", "--since", "2026-11-16T10:00"]
    )
    assert out.exit_code == 0, out.output
    assert "# CloudTrail logging stopped, deleted or narrowed" in out.output
    assert "-- DuckDB" in out.output and "FROM events WHERE source = 'cloudtrail'" in out.output
    assert "FROM tenantwatch.events" in out.output
    assert "date BETWEEN '2026-11-16' AND '2026-11-16'" in out.output
    athena = CliRunner().invoke(cli, ["sigma", "show", "--athena", "trail_tampering"])
    assert (
        athena.output.startswith("WITH events AS (") and "json_extract_string" not in athena.output
    )
    unknown = CliRunner().invoke(cli, ["sigma", "show", "no such rule"])
    assert unknown.exit_code == 2 and "no rule 'no such rule'" in unknown.output


def test_the_athena_twin_of_a_rule_runs_on_the_lake_as_duckdb_reads_it(tmp_path: Path) -> None:
    """Trino's functions are not DuckDB's, but where both have the same (regexp_like,
    json_extract_scalar via DuckDB's json extension), the Athena query selects the same rows."""
    import duckdb
    import pyarrow as pa

    path = rule(tmp_path, "\ndetection:\n  s:\n    eventName: StopLogging\n  condition: s\n")
    athena = load([str(path)], pack=False, dialect="athena").rules[0].sql
    duck = load([str(path)], pack=False).rules[0].sql
    assert athena == duck  # column fields only: one query for both dialects
    con = duckdb.connect()
    table = events([ct(eventName="StopLogging"), ct(eventName="GetObject")])
    con.register("events", table)
    got = con.sql(duck).to_arrow_table()
    assert isinstance(got, pa.Table) and got["action"].to_pylist() == ["StopLogging"]


def test_a_warm_process_compiles_its_rules_again_only_when_a_file_changed(tmp_path: Path) -> None:
    import os

    from detectors.sigma.rules import load_cached

    path = rule(tmp_path, "\ndetection:\n  s:\n    eventName: StopLogging\n  condition: s\n")
    first = load_cached([str(tmp_path)], pack=False)
    assert load_cached([str(tmp_path)], pack=False) is first
    path.write_text(path.read_text().replace("StopLogging", "DeleteTrail"))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    again = load_cached([str(tmp_path)], pack=False)
    assert again is not first and "deletetrail" in again.rules[0].sql


def test_a_correlation_athena_cannot_express_is_skipped_there_saying_why(tmp_path: Path) -> None:
    path = tmp_path / "vc.yml"
    path.write_text(
        CORRELATION.format(kind="value_count", n=5, field="    field: requestParameters.secretId\n")
    )
    assert [r.kind for r in load([str(path)], pack=False).rules] == ["value_count"]
    athena = load([str(path)], pack=False, dialect="athena")
    assert athena.rules == []
    assert "no window function" in athena.skipped[0].reason


def test_sigma_check_says_when_the_pack_is_not_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    import detectors.sigma.rules as sigma_rules
    from pipeline.cli import cli

    monkeypatch.setattr(sigma_rules, "pack_path", lambda: None)
    out = CliRunner().invoke(cli, ["sigma", "check"])
    assert out.exit_code == 0, out.output
    assert out.output.splitlines()[0] == "0 rules loaded from 0 files, 0 skipped"
    assert "rule pack is not installed here" in out.output
