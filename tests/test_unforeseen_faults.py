"""The safety net: a fault no rule foresaw, raised while one record's values are read, costs
that record (quarantined as ``unprocessable_record`` with the error) and never its neighbours."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline.ingest.run import ingest
from pipeline.lake import read_events, read_quarantine
from tests import logfactory as lf
from tests.pooled import pooled_config

CFG = pooled_config(ingest={"max_record_bytes": 8192, "max_decompressed_bytes": 1 << 20})
VICTIM = "victim-of-a-fault"


def _fault(module: Any, name: str, hit: Callable[..., bool], mp: pytest.MonkeyPatch) -> None:
    """``module.name`` raising where ``hit(*args)`` is true, as a value no rule foresaw might."""
    real = getattr(module, name)

    def faulty(*args: Any, **kwargs: Any) -> Any:
        if hit(*args):
            raise RuntimeError("a fault no rule foresaw")
        return real(*args, **kwargs)

    mp.setattr(module, name, faulty)


def _session_fault(mp: pytest.MonkeyPatch) -> None:
    from pipeline.ingest import cloudtrail

    _fault(cloudtrail, "assumed_session", lambda rec: VICTIM in repr(rec), mp)


def _redaction_fault(mp: pytest.MonkeyPatch) -> None:
    from pipeline.ingest import redact

    _fault(redact, "redact_many", lambda texts: any(VICTIM.encode() in t for t in texts), mp)


def _column_fault(mp: pytest.MonkeyPatch) -> None:
    from pipeline.ingest import redact

    def hit(cols: dict[str, Any], *_: Any) -> bool:
        return any(VICTIM in (v or "") for v in cols["user_agent"].to_pylist())

    _fault(redact, "scrub_token_columns", hit, mp)


def _row_fault(mp: pytest.MonkeyPatch) -> None:
    from pipeline.ingest import normalize

    _fault(normalize, "access_log_row", lambda rec, *_: VICTIM in rec.get("userAgent", ""), mp)


@pytest.mark.parametrize("decoder", ["native", "python"])
@pytest.mark.parametrize(
    ("fault", "hits"),
    [
        (_session_fault, {"cloudtrail"}),
        (_redaction_fault, {"cloudtrail"}),
        (_column_fault, {"cloudtrail", "apigateway"}),
        (_row_fault, {"apigateway"}),
    ],
    ids=lambda x: getattr(x, "__name__", ""),
)
def test_a_record_that_raises_where_no_rule_foresaw_costs_only_itself(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    decoder: str,
    fault: Callable[..., None],
    hits: set[str],
) -> None:
    """In each place a record's values are read (decoding an AssumeRole's session, redacting a
    chunk's secrets, a chunk's columns, an access-log line), a fault on one record quarantines
    that record as ``unprocessable_record`` with the error, and its neighbours in the same chunk
    are ingested as if it were not there."""
    monkeypatch.setenv("TENANTWATCH_NATIVE", "1" if decoder == "native" else "0")
    victim = lf.assume_role(tenant=VICTIM, new_key_id="ASIAVICTIM000000001")
    victim["requestParameters"]["password"] = "x"  # flagged as holding a secret
    victim["userAgent"] = VICTIM
    neighbours = [lf.assume_role(tenant="t0007", new_key_id="ASIAKEY0000000007"), lf.ct()]
    call = lf.ct(key_id="ASIAKEY0000000007", time="2026-11-16T10:01:00Z")
    lf.delivery_file(tmp_path / "in" / "a.json.gz", [neighbours[0], victim, neighbours[1], call])
    api = [lf.access_log(), {**lf.access_log(), "userAgent": VICTIM}, lf.access_log()]
    lf.lines_file(tmp_path / "in" / "api.log", api)
    victims = {"cloudtrail": victim["eventID"], "apigateway": api[1]["requestId"]}
    fault(monkeypatch)

    summary = ingest([str(tmp_path / "in")], str(tmp_path / "lake"), CFG, workers=1)
    entries = read_quarantine(str(tmp_path / "lake")).to_pylist()
    assert len(entries) == len(hits), [e["detail"] for e in entries]
    assert all(VICTIM.encode() in e["raw"] for e in entries)
    assert {e["reason"] for e in entries} == {"unprocessable_record"}
    assert all("RuntimeError: a fault no rule foresaw" in e["detail"] for e in entries)
    events = read_events(str(tmp_path / "lake")).to_pylist()
    assert summary["records_in"] == len(events) + len(entries) == 7
    everyone = {victim["eventID"], call["eventID"], *(n["eventID"] for n in neighbours)}
    everyone |= {a["requestId"] for a in api}
    assert {e["event_id"] for e in events} == everyone - {victims[h] for h in hits}
    # The neighbour's session was learnt: the call it enabled has its tenant.
    (made,) = [e for e in events if e["event_id"] == call["eventID"]]
    assert made["actor_tenant"] == "t0007"
