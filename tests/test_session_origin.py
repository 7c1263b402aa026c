"""session_origin: a session acts for the tenant of whoever called AssumeRole* to start it, learnt
from that call's own resolution, across batches and runs, and kept through a chain of roles."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.config import Config, parse_config
from pipeline.ingest import sessions as s
from pipeline.ingest.run import ingest
from pipeline.lake import read_events
from tests import logfactory as lf
from tests.logfactory import assume, identity

ACME, GLOBEX, INITECH = "111122223333", "444455556666", "777788889999"
PLATFORM = "123456789012"
ACCOUNTS = {ACME: "acme", GLOBEX: "globex", INITECH: "initech"}


def config(**extra: Any) -> Config:
    return parse_config(
        {
            "tenancy": {
                "lookup": [{"name": "accounts", "values": ACCOUNTS}],
                "actor": [
                    {
                        "kind": "field",
                        "source": "cloudtrail",
                        "path": "userIdentity.accountId",
                        "lookup": "accounts",
                        "when": {
                            "userIdentity.sessionContext.sessionIssuer.userName": ["app-user"]
                        },
                    },
                    {"kind": "session_origin"},
                ],
                "target": [
                    {
                        "kind": "field",
                        "source": "cloudtrail",
                        "path": "recipientAccountId",
                        "lookup": "accounts",
                    }
                ],
                **extra,
            },
        },
        environ={},
    )


def call(ident: dict[str, Any], time: str) -> dict[str, Any]:
    return lf.ct("GetObject", time=time, userIdentity=ident, recipientAccountId=ident["accountId"])


APP = identity(ACME, "app-user", "ASIAAPP0000000000001")
PARTNER = identity(GLOBEX, "partner-access", "ASIAPARTNER000000001")
DEEPER = identity(INITECH, "partner-access", "ASIADEEPER0000000001")
PLATFORM_JOB = identity(PLATFORM, "nightly-export", "ASIAPLATFORM00000001")
JOB_IN_GLOBEX = identity(GLOBEX, "export-reader", "ASIAJOB0000000000001")


def chain() -> list[dict[str, Any]]:
    """acme's app role -> a partner role in globex -> a partner role in initech, then a call
    of each session; a platform job's role in globex besides (no tenant started it)."""
    return [
        assume(APP, GLOBEX, "partner-access", PARTNER["accessKeyId"], "2026-11-16T10:00:00Z"),
        call(PARTNER, "2026-11-16T10:01:00Z"),
        assume(PARTNER, INITECH, "partner-access", DEEPER["accessKeyId"], "2026-11-16T10:02:00Z"),
        call(DEEPER, "2026-11-16T10:03:00Z"),
        assume(
            PLATFORM_JOB,
            GLOBEX,
            "export-reader",
            JOB_IN_GLOBEX["accessKeyId"],
            "2026-11-16T10:04:00Z",
        ),
        call(JOB_IN_GLOBEX, "2026-11-16T10:05:00Z"),
    ]


def run(lake: Path, folder: Path, cfg: Config | None = None) -> dict[str, tuple[Any, ...]]:
    summary = ingest([str(folder)], str(lake), cfg or config(), workers=1)
    assert summary["records_in"] == summary["ingested"] + summary["duplicates"]
    return {
        r["actor_session"] or r["event_id"]: (
            r["action"],
            r["actor_tenant"],
            r["actor_tenant_source"],
            r["target_tenant"],
        )
        for r in read_events(str(lake)).to_pylist()
        if r["action"] == "GetObject"
    }


WANT = {
    PARTNER["accessKeyId"]: ("GetObject", "acme", "session_origin", "globex"),
    DEEPER["accessKeyId"]: ("GetObject", "acme", "session_origin", "initech"),
    JOB_IN_GLOBEX["accessKeyId"]: ("GetObject", None, None, "globex"),
}


def test_a_chain_of_roles_acts_for_its_first_origin_within_one_file(tmp_path: Path) -> None:
    lf.delivery_file(tmp_path / "in" / "a.json.gz", chain())
    assert run(tmp_path / "lake", tmp_path / "in") == WANT


def test_the_order_of_the_calls_in_the_batch_does_not_matter(tmp_path: Path) -> None:
    records = chain()
    random.Random(3).shuffle(records)
    records.reverse()
    lf.delivery_file(tmp_path / "in" / "a.json.gz", records)
    assert run(tmp_path / "lake", tmp_path / "in") == WANT


def test_origins_cross_batches(tmp_path: Path) -> None:
    for i, rec in enumerate(chain()):
        lf.delivery_file(tmp_path / "in" / f"{i}.json.gz", [rec])
    one_file_a_batch = config()
    one_file_a_batch = parse_config(
        {"ingest": {"batch_input_bytes": 1}, "tenancy": _tenancy(one_file_a_batch)}, environ={}
    )
    assert run(tmp_path / "lake", tmp_path / "in", one_file_a_batch) == WANT


def _tenancy(cfg: Config) -> dict[str, Any]:
    import msgspec

    return msgspec.to_builtins(cfg.tenancy)  # type: ignore[no-any-return]


def test_origins_cross_runs_through_the_session_state(tmp_path: Path) -> None:
    records = chain()
    lf.delivery_file(tmp_path / "first" / "a.json.gz", [records[0], records[2], records[4]])
    lf.delivery_file(tmp_path / "second" / "a.json.gz", [records[1], records[3], records[5]])
    assert run(tmp_path / "lake", tmp_path / "first") == {}
    state = pq.read_table(tmp_path / "lake" / "_state" / "sessions").to_pylist()
    origins = {r["access_key_id"]: r["value"] for r in state if r["tag"] == s.ORIGIN}
    assert origins == {PARTNER["accessKeyId"]: "acme", DEEPER["accessKeyId"]: "acme"}
    assert run(tmp_path / "lake", tmp_path / "second") == WANT


def test_a_session_used_after_the_ttl_has_no_origin(tmp_path: Path) -> None:
    late = call(PARTNER, "2026-11-16T13:00:00Z")
    lf.delivery_file(tmp_path / "in" / "a.json.gz", [chain()[0], late])
    got = run(tmp_path / "lake", tmp_path / "in", config(session_ttl_hours=1))
    assert got == {PARTNER["accessKeyId"]: ("GetObject", None, None, "globex")}


def test_without_the_strategy_nothing_is_learnt(tmp_path: Path) -> None:
    lf.delivery_file(tmp_path / "in" / "a.json.gz", chain())
    plain = parse_config(
        {"tenancy": {**_tenancy(config()), "actor": [_tenancy(config())["actor"][0]]}}, environ={}
    )
    got = run(tmp_path / "lake", tmp_path / "in", plain)
    assert {k: v[1] for k, v in got.items()} == dict.fromkeys(WANT)
    # The AssumeRole calls carried no tags: nothing of their sessions is kept.
    assert not (tmp_path / "lake" / "_state" / "sessions").exists()


def _times(*iso: str) -> pa.Array:
    return pa.array([f"{t}Z" for t in iso]).cast(pa.timestamp("us", tz="UTC"))


def test_an_origin_is_never_replaced_and_survives_new_tags() -> None:
    m = s.SessionMap(timedelta(hours=12))
    key = pa.array(["ASIA1"])
    learnt = m.learn_origins(key, pa.array(["acme"]), _times("2026-11-16T10:00:00"))
    assert learnt.num_rows == 1
    again = m.learn_origins(key, pa.array(["globex"]), _times("2026-11-16T10:05:00"))
    assert again.num_rows == 0
    m.learn(s.session_rows([("ASIA1", {"tenant_id": "t1"}, "2026-11-16T10:06:00Z")]))
    m.learn(s.session_rows([("ASIA1", {"tenant_id": "t2"}, "2026-11-16T10:07:00Z")]))
    keys, values, _ = m.lookup(s.ORIGIN)
    assert dict(zip(keys.to_pylist(), values.to_pylist(), strict=True)) == {"ASIA1": "acme"}
    keys, values, _ = m.lookup("tenant_id")
    assert dict(zip(keys.to_pylist(), values.to_pylist(), strict=True)) == {"ASIA1": "t2"}


def test_the_first_of_two_origins_for_one_key_in_one_call_wins() -> None:
    m = s.SessionMap(timedelta(hours=12))
    keys = pa.array(["ASIA1", "ASIA1", "ASIA2"])
    learnt = m.learn_origins(
        keys, pa.array(["acme", "globex", None]), _times(*["2026-11-16T10:00:00"] * 3)
    )
    assert learnt.to_pylist()[0]["value"] == "acme" and learnt.num_rows == 1


def test_a_hop_logged_before_the_call_that_started_its_session_keeps_the_origin(
    tmp_path: Path,
) -> None:
    # Two accounts' clocks: globex logged the next hop 30 s before acme logged the first.
    first = assume(APP, GLOBEX, "partner-access", PARTNER["accessKeyId"], "2026-11-16T10:00:30Z")
    hop = assume(PARTNER, INITECH, "partner-access", DEEPER["accessKeyId"], "2026-11-16T10:00:00Z")
    lf.delivery_file(
        tmp_path / "in" / "a.json.gz", [hop, first, call(DEEPER, "2026-11-16T10:03:00Z")]
    )
    assert run(tmp_path / "lake", tmp_path / "in") == {
        DEEPER["accessKeyId"]: WANT[DEEPER["accessKeyId"]]
    }
