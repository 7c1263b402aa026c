"""Secrets and tokens kept out of the lake by ingestion (``redact``, ``prefilter``), in the raw text
and in every column, with the C decoder and with the Python decoder."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests import logfactory as lf
from tests.ingestlake import rows, run


def test_secrets_never_reach_the_lake(tmp_path: Path) -> None:
    secret = "IQoJb3JpZ2luX2VjSECRETSESSIONTOKENVALUE0123456789"
    bearer = "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.c2lnbmF0dXJlMTIzNDU2"
    api = lf.access_log()
    api["authorization"] = bearer
    lf.delivery_file(tmp_path / "in" / "1.json.gz", [lf.assume_role()])
    lf.lines_file(tmp_path / "in" / "api.log", [api])
    (tmp_path / "in" / "broken.json").write_text('{"sessionToken": "' + secret + '", "broken": \n')
    run(tmp_path / "lake", tmp_path / "in")
    for path in (tmp_path / "lake").rglob("*.parquet"):
        table = pq.read_table(path)
        text = json.dumps(table.to_pylist(), default=str)
        assert secret not in text and "eyJhbGciOiJIUzI1NiJ9" not in text, path
    raw = json.loads(next(r for r in rows(tmp_path / "lake") if r["action"] == "AssumeRole")["raw"])
    token = raw["responseElements"]["credentials"]["sessionToken"]
    assert token.startswith("redacted:sha256:")
    # The access key id is an identifier, not a secret: the session join needs it.
    assert raw["responseElements"]["credentials"]["accessKeyId"] == "ASIAEXAMPLE0000001"


@pytest.mark.parametrize("native", ["1", "0"])
def test_tokens_where_no_secret_word_is_reach_neither_raw_nor_columns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, native: str
) -> None:
    """A JWT in a path, a principalId or an authorizer's reason, a BEARER token in capitals in a
    User-Agent, a password under a key spelled with a \\u escape: none has a secret word in its
    bytes, and none reaches the lake, in the raw text or in a column; each column holds the
    fingerprint the raw text holds."""
    from pipeline.ingest import redact

    monkeypatch.setenv("TENANTWATCH_NATIVE", native)
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c3ItMSJ9.c2lnbmF0dXJlLTE"
    agent_token = "BEARER Zm9vYmFyYmF6cXV4MTIz"
    api = lf.access_log()
    api["path"] = f"/prod/verify/{jwt}"
    api["resourcePath"] = "/verify/{code}"
    probe = lf.access_log()
    probe["userAgent"] = f"probe/1.0 {agent_token}"
    authz = lf.authorizer_log(principal=jwt)
    authz["reason"] = f"expired: {jwt}"
    del authz["token_fingerprint"]
    authz["message"] = "decision"
    for needle in ("token", "secret", "password", "authorization", "bearer", "cookie"):
        assert needle not in json.dumps([api, authz]).lower()
    lf.lines_file(tmp_path / "in" / "api.log", [api, probe])
    lf.lines_file(tmp_path / "in" / "authz.log", [authz])
    escaped = json.dumps({"Records": [lf.ct(requestParameters={"password": "hunter2-LEAK"})]})
    escaped = escaped.replace('"password"', '"p\\u0061ssword"')
    assert "password" not in escaped.lower()
    (tmp_path / "in" / "ct.json").write_text(escaped)
    run(tmp_path / "lake", tmp_path / "in")

    for path in (tmp_path / "lake").rglob("*.parquet"):
        text = json.dumps(pq.read_table(path).to_pylist(), default=str)
        assert jwt not in text and "Zm9vYmFy" not in text and "hunter2" not in text, path
    by_id = {r["event_id"]: r for r in rows(tmp_path / "lake")}
    by_source = {r["source"]: r for r in by_id.values()}
    jwt_fp = redact.fingerprint(jwt)
    api_row, probe_row = by_id[api["requestId"]], by_id[probe["requestId"]]
    authz_row = by_source["authorizer"]
    assert api_row["resource"] == f"/prod/verify/{jwt_fp}" and jwt_fp in api_row["raw"]
    assert probe_row["user_agent"] == f"probe/1.0 BEARER {redact.fingerprint(agent_token)}"
    assert probe_row["user_agent"].split()[-1] in probe_row["raw"]
    assert (authz_row["actor_principal"], authz_row["error_code"]) == (jwt_fp, f"expired: {jwt_fp}")
    ct_raw = json.loads(by_source["cloudtrail"]["raw"])
    assert ct_raw["requestParameters"]["password"] == redact.fingerprint("hunter2-LEAK")
