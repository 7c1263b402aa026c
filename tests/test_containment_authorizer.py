"""The reference Lambda authorizer (infra/authorizer/app.py) over the containment table (moto on
127.0.0.1): it denies a suspended subject, lets a read-only one read, obeys what ``tenantwatch
contain`` wrote, fingerprints tokens as ingest does, ignores expired entries, reads through its
cache and follows its fail mode when the table cannot be read."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest

from pipeline import aws as pipeline_aws
from pipeline import containment
from pipeline.ingest.fingerprint import fingerprint
from pipeline.lake import Lake
from tests import verdictlake as vl
from tests.containmentlake import (
    TABLE,
    alert,
    contain_args,
    create_table,
    detected_lake,
    incident_of,
    items,
    tw,
)
from tests.fakes import FakeContext, authorizer_request, load_authorizer


@pytest.fixture
def table(aws: str) -> Iterator[str]:
    yield create_table()
    pipeline_aws.reset()


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    lake = detected_lake(tmp_path / "lake")
    alert(lake)
    return lake


def _claims(token: str) -> dict[str, str] | None:
    """The SaaS's token check, for these tests: tok-<user>[-<tenant>]."""
    if not token.startswith("tok-"):
        return None
    user, _, tenant = token[4:].partition("-")
    return {"sub": f"usr-{user}", "tenant_id": tenant or "t0001"}


@pytest.fixture
def authorizer(table: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("TENANTWATCH_CONTAINMENT_TABLE", TABLE)
    monkeypatch.delenv("TENANTWATCH_AUTHORIZER_FAIL_MODE", raising=False)
    mod = load_authorizer()
    mod.set_verifier(_claims)
    return mod


def authorize(mod: ModuleType, **request: Any) -> tuple[str, dict[str, Any]]:
    """The policy's effect (on exactly the request's method and resource) and context."""
    event = authorizer_request(**request)
    out = mod.handler(event, FakeContext())
    (statement,) = out["policyDocument"]["Statement"]
    assert statement["Resource"] == [event["methodArn"]]
    return statement["Effect"], out.get("context") or {}


def put(subject: str, mode: str, expires_in: timedelta, cid: str = "c-1") -> None:
    now = datetime.now(UTC)
    containment.Table(TABLE).put(
        containment.Entry(
            cid, containment.Subject.parse(subject), mode, now + expires_in, "r", "inc", "me", now
        )
    )


def count_queries(mod: ModuleType) -> list[str]:
    """The authorizer's DynamoDB Query calls, as botocore makes them."""
    calls: list[str] = []
    client = mod.containments().client()
    client.meta.events.register(
        "before-parameter-build.dynamodb.Query",
        lambda params, **_: calls.append(params["ExpressionAttributeValues"][":s"]["S"]),
    )
    return calls


def logged(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The authorizer's log lines: message, level and the fields logged with it."""
    skip = set(logging.makeLogRecord({}).__dict__) - {"msg"}
    return [
        {**{k: v for k, v in r.__dict__.items() if k not in skip}, "level": r.levelname,
         "message": r.getMessage()}
        for r in caplog.records
        if r.name == "tenantwatch-authorizer"
    ]  # fmt: skip


def test_the_authorizer_denies_a_suspended_tenant_and_allows_the_others(
    authorizer: ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "tenantwatch-authorizer")
    put("tenant#t0001", "suspend", timedelta(hours=1), "c-suspend")
    effect, ctx = authorize(authorizer, path="/tenants/t0001/invoices")
    assert effect == "Deny"
    assert ctx["containmentId"] == "c-suspend" and ctx["containmentMode"] == "suspend"
    # The tenant the token claims counts too: t0001's user on t0002's path.
    assert authorize(authorizer, path="/tenants/t0002/invoices")[0] == "Deny"
    effect, ctx = authorize(authorizer, path="/tenants/t0002/invoices", token="tok-bob-t0002")
    assert effect == "Allow" and "containmentId" not in ctx and ctx["tenantId"] == "t0002"
    lines = logged(caplog)
    decisions = [d for d in lines if d["message"] == "authorizer decision"]
    assert [d["decision"] for d in decisions] == ["Deny", "Deny", "Allow"]
    first = decisions[0]
    assert first["token_fingerprint"] == fingerprint("tok-alice").removeprefix("redacted:")
    assert (first["principal_id"], first["tenant_claim"], first["requested_tenant"]) == (
        "usr-alice", "t0001", "t0001",
    )  # fmt: skip
    assert first["containment_id"] == "c-suspend"
    assert not any("tok-alice" in json.dumps(d, default=str) for d in lines)


def test_read_only_allows_only_reads(authorizer: ModuleType) -> None:
    put("tenant#t0003", "read-only", timedelta(hours=1), "c-ro")
    path = "/tenants/t0003/invoices"
    effects = {m: authorize(authorizer, method=m, path=path)[0] for m in ("GET", "HEAD", "OPTIONS")}
    assert effects == {"GET": "Allow", "HEAD": "Allow", "OPTIONS": "Allow"}
    for m in ("POST", "PUT", "PATCH", "DELETE"):
        effect, ctx = authorize(authorizer, method=m, path=path)
        assert (effect, ctx["containmentId"], ctx["containmentMode"]) == (
            "Deny",
            "c-ro",
            "read-only",
        )
    assert authorize(authorizer, method="POST", path="/tenants/t0004/invoices")[0] == "Allow"


def test_the_authorizer_obeys_entries_the_cli_wrote_for_a_principal_token_and_address(
    lake: Lake, authorizer: ModuleType
) -> None:
    rec = incident_of(lake, vl.USR_A)
    fp = fingerprint("tok-carol-t0005")  # as an entity shows a token ingest redacted
    for subject in (("--principal", "usr-dave"), ("--token", fp), ("--address", "192.0.2.66")):
        out = tw(*contain_args(lake, rec.incident_id, *subject, mode="suspend"))
        assert out.exit_code == 0, out.output
    assert authorize(authorizer, token="tok-dave-t0005", path="/tenants/t0005/x")[0] == "Deny"
    assert authorize(authorizer, token="tok-carol-t0005", path="/tenants/t0005/x")[0] == "Deny"
    assert authorize(authorizer, token="tok-erin-t0005", source_ip="192.0.2.66")[0] == "Deny"
    assert authorize(authorizer, token="tok-erin-t0005", path="/tenants/t0005/x")[0] == "Allow"


def test_the_authorizer_fingerprints_a_token_as_ingest_does() -> None:
    mod = load_authorizer()
    for token in ("tok-alice", "eyJhbGciOiJIUzI1NiJ9.e30.sig", "ünïcode", "\udcff"):
        assert mod.token_fingerprint(token) == fingerprint(token).removeprefix("redacted:")


def test_an_expired_entry_is_ignored_before_dynamodb_deletes_it(authorizer: ModuleType) -> None:
    put("tenant#t0001", "suspend", timedelta(seconds=-1), "c-old")
    (item,) = items()  # still in the table: moto, like DynamoDB, has not deleted it
    assert int(item["expires_at"]["N"]) < datetime.now(UTC).timestamp()
    assert authorize(authorizer, path="/tenants/t0001/invoices") == ("Allow", {"tenantId": "t0001"})


def test_a_second_request_within_the_cache_s_ttl_reads_nothing(
    authorizer: ModuleType,
) -> None:
    put("tenant#t0002", "suspend", timedelta(hours=1), "c-s")
    clock = [1000.0]
    authorizer.containments().clock = lambda: clock[0]
    calls = count_queries(authorizer)
    assert authorize(authorizer, path="/tenants/t0001/a")[0] == "Allow"
    token = f"token#{authorizer.token_fingerprint('tok-alice')}"
    subjects = ["tenant#t0001", "principal#usr-alice", token, "address#198.51.100.20"]
    assert calls == subjects
    clock[0] += 29
    assert authorize(authorizer, path="/tenants/t0001/b")[0] == "Allow"
    assert calls == subjects  # all four from the cache
    # A new subject is read; the others still come from the cache.
    assert authorize(authorizer, path="/tenants/t0002/a")[0] == "Deny"
    assert calls == [*subjects, "tenant#t0002"]
    clock[0] += 2  # 31 s after the first reads: read again
    assert authorize(authorizer, path="/tenants/t0001/c")[0] == "Allow"
    assert calls == [*subjects, "tenant#t0002", *subjects]


@pytest.mark.parametrize(
    ("mode", "effect"), [(None, "Allow"), ("allow", "Allow"), ("deny", "Deny")]
)
def test_a_missing_table_follows_the_fail_mode(
    aws: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    mode: str | None,
    effect: str,
) -> None:
    caplog.set_level(logging.INFO, "tenantwatch-authorizer")
    monkeypatch.setenv("TENANTWATCH_CONTAINMENT_TABLE", "no-such-table")
    if mode is not None:
        monkeypatch.setenv("TENANTWATCH_AUTHORIZER_FAIL_MODE", mode)
    mod = load_authorizer()
    mod.set_verifier(_claims)
    got, ctx = authorize(mod)
    assert got == effect and "containmentId" not in ctx
    lines = logged(caplog)
    errors = [d for d in lines if d["level"] == "ERROR"]
    assert errors and "ResourceNotFoundException" in errors[0]["message"]
    (decision,) = [d for d in lines if d["message"] == "authorizer decision"]
    assert decision["reason"] == f"containment could not be checked (fail mode {mode or 'allow'})"


def test_once_read_a_subject_s_entries_outlast_an_outage_of_the_table(
    authorizer: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    put("tenant#t0001", "suspend", timedelta(hours=1), "c-s")
    clock = [0.0]
    authorizer.containments().clock = lambda: clock[0]
    assert authorize(authorizer)[0] == "Deny"
    boto3.client("dynamodb").delete_table(TableName=TABLE)
    clock[0] += 3600
    # Fail mode allow, but the suspension read an hour ago still holds.
    assert authorize(authorizer)[0] == "Deny"


def test_without_a_verified_token_the_authorizer_denies(table: str) -> None:
    mod = load_authorizer()  # no verifier configured
    assert authorize(mod)[0] == "Deny"
    mod.set_verifier(_claims)
    assert authorize(mod, token="forged")[0] == "Deny"
    assert authorize(mod, token=None)[0] == "Deny"
    assert authorize(mod)[0] == "Allow"


def test_the_tenant_can_come_from_a_header(table: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANTWATCH_CONTAINMENT_TABLE", TABLE)
    monkeypatch.setenv("TENANTWATCH_AUTHORIZER_TENANT_PATH", "")
    monkeypatch.setenv("TENANTWATCH_AUTHORIZER_TENANT_HEADER", "X-Tenant-Id")
    mod = load_authorizer()
    mod.set_verifier(_claims)
    put("tenant#t0007", "suspend", timedelta(hours=1))
    assert authorize(mod, path="/invoices", token="tok-a-t0009")[0] == "Allow"
    headers = {"x-tenant-id": "t0007"}
    assert authorize(mod, path="/invoices", token="tok-a-t0009", headers=headers)[0] == "Deny"
