"""Secrets known by their shape or by a parameter's name, wherever logs write them.

Named positive cases (query parameters logged as an object, as API Gateway does, or as a query
string without its "?"; a password in a URL; connection strings and settings; PEM private keys)
and named negative cases that only look like them, each carried in every place logs write a key
and its value (``tests/secretplaces.py``), by both decoders. A secret is a value of its own
per case, so a hit names its case.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from pipeline.ingest.fingerprint import fingerprint
from tests import secretplaces
from tests.secretplaces import DECODERS, MISSING, PLACES, Carried

_n = iter(range(1000))


def _secret() -> str:
    """A value that only its place makes a secret: no secret word in it, not random-looking."""
    return f"LEAK{next(_n):03d}hushvalue"


def fp(value: Any) -> str:
    return fingerprint(value if isinstance(value, str) else orjson.dumps(value))


S = [_secret() for _ in range(20)]
PEM_BODY = "MIIEpAIBAAKCAQEA" + S[10] + "\nq3Lk9f" + S[11]
CERT = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUJ\n-----END CERTIFICATE-----"

# name -> (key, value, the value as the lake must hold it; None: only that no secret is left)
SECRET: dict[str, tuple[str, Any, Any]] = {
    "a query object's api_key": (
        "queryStringParameters",
        {"api_key": S[0], "page": "2"},
        {"api_key": fp(S[0]), "page": "2"},
    ),
    "a query object's OAuth code": (
        "queryStringParameters",
        {"code": S[1], "state": "xyzzy"},
        {"code": fp(S[1]), "state": "xyzzy"},
    ),
    "multi-value query parameters": (
        "multiValueQueryStringParameters",
        {"sig": [S[2], S[3]], "sort": ["name"]},
        {"sig": [fp(S[2]), fp(S[3])], "sort": ["name"]},
    ),
    "a query string without its ?": (
        "querystring",
        f"page=2&access_token={S[4]}&sort=name",
        f"page=2&access_token={fp(S[4])}&sort=name",
    ),
    "a query string whose first parameter is secret": (
        "queryString",
        f"X-Api-Key={S[5]}&v=1",
        f"X-Api-Key={fp(S[5])}&v=1",
    ),
    "basic-auth credentials in a URL": (
        "endpoint",
        f"https://deploy:{S[6]}@git.example.com/acme/app.git",
        f"https://deploy:{fp(S[6])}@git.example.com/acme/app.git",
    ),
    "a postgres connection URL": (
        "databaseUrl",
        f"postgres://app:{S[7]}@db.internal:5432/tenants?sslmode=require",
        f"postgres://app:{fp(S[7])}@db.internal:5432/tenants?sslmode=require",
    ),
    "a mongodb+srv connection URL": (
        "detail",
        f"cannot reach mongodb+srv://svc:{S[8]}@cluster0.example.net/db?retryWrites=true",
        f"cannot reach mongodb+srv://svc:{fp(S[8])}@cluster0.example.net/db?retryWrites=true",
    ),
    "an ADO.NET connection string": (
        "connectionString",
        f"Server=tcp:db.example.net,1433;Database=app;User ID=svc;Password={S[9]};Encrypt=True",
        f"Server=tcp:db.example.net,1433;Database=app;User ID=svc;Password={fp(S[9])};Encrypt=True",
    ),
    "an ODBC connection string with blanks": (
        "detail",
        f"Driver={{ODBC}}; Uid = svc; Pwd = {S[12]} ; Database=app",
        f"Driver={{ODBC}}; Uid = svc; Pwd = {fp(S[12])}; Database=app",
    ),
    "a password setting with spaces": (
        "detail",
        f"User Id=svc;Password=two {S[13]} words",
        f"User Id=svc;Password={fp('two ' + S[13] + ' words')}",
    ),
    "a properties line": (
        "errorMessage",
        f"bad config: spring.datasource.password={S[14]}",
        f"bad config: spring.datasource.password={fp(S[14])}",
    ),
    "a PEM private key": (
        "errorMessage",
        f"cannot load -----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\n-----END RSA PRIVATE KEY-----",
        None,
    ),
    "a PEM private key cut short": (
        "detail",
        f"key=-----BEGIN PRIVATE KEY-----\n{S[15]}",
        None,
    ),
    "an encrypted PEM private key in a list": (
        "keys",
        [f"-----BEGIN ENCRYPTED PRIVATE KEY-----\n{S[16]}\n-----END ENCRYPTED PRIVATE KEY-----"],
        None,
    ),
}

# name -> (key, value): kept as it is.
KEPT: dict[str, tuple[str, Any]] = {
    "query parameters that are no secrets": (
        "queryStringParameters",
        {"page": "2", "sort": "name", "tenant": "t0001"},
    ),
    "multi-value parameters that are no secrets": (
        "multiValueQueryStringParameters",
        {"id": ["1", "2"]},
    ),
    "a query string that holds no secret": ("querystring", "page=2&sort=name"),
    "a SQL query": ("queryString", "SELECT * FROM t WHERE a = 1"),
    "a URL with a user and no password": ("endpoint", "ssh://git@git.example.com/acme/app.git"),
    "a URL with a port": ("endpoint", "https://api.example.com:8443/v1/users@example.com"),
    "a connection string without a password": ("detail", "Server=db;Database=app;Encrypt=True"),
    "a pagination setting": ("detail", "nextToken=page-0002"),
    "a certificate": ("certificate", CERT),
    "a PEM public key": (
        "detail",
        "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n"
        "-----END PUBLIC KEY-----",
    ),
}

CASES: dict[str, tuple[str, Any]] = {
    **{name: (key, value) for name, (key, value, _) in SECRET.items()},
    **KEPT,
}


@pytest.fixture(scope="module")
def carried(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str, str], Carried]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        return secretplaces.carry(tmp_path_factory.mktemp("shapes"), CASES, monkeypatch)


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("name", SECRET)
def test_a_secret_of_its_shape_is_fingerprinted(
    carried: dict[tuple[str, str, str], Carried], decoder: str, place: str, name: str
) -> None:
    _, value, want = SECRET[name]
    got = carried[decoder, place, name]
    assert got.text, "the record is nowhere in the output"
    leaks = [s for s in S if s in orjson.dumps(value).decode()]
    assert leaks and not [s for s in leaks if s in got.text]
    if "PEM" in name:  # the markers stay, so a reader sees what was there
        assert "PRIVATE KEY-----" in got.text
    if want is None or place == "quarantined line":
        return
    assert got.value == want


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("name", KEPT)
def test_what_only_looks_like_a_secret_is_kept(
    carried: dict[tuple[str, str, str], Carried], decoder: str, place: str, name: str
) -> None:
    _, value = KEPT[name]
    got = carried[decoder, place, name]
    assert got.text, "the record is nowhere in the output"
    if place == "quarantined line":
        assert "redacted:sha256:" not in got.text
        return
    assert got.value is not MISSING and got.value == value
