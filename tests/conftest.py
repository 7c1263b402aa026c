"""Shared fixtures: kept tiny on purpose (factories live beside the tests that use them)."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
SAMPLE_LOGS = REPO / "sample_logs"
REAL_LOGS = REPO.parent / "shared" / "real_logs"
# What boto3 and pyarrow need to talk to moto: fake credentials and a region.
MOTO_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


@pytest.fixture
def real_logs() -> Path:
    """The public third-party CloudTrail corpus; CI has it beside the checkout."""
    if not REAL_LOGS.is_dir():
        pytest.skip(f"{REAL_LOGS} is absent: the third-party corpus lives outside the repo")
    return REAL_LOGS


@pytest.fixture(scope="session")
def _moto_server() -> Iterator[str]:
    """One moto server per test process, real HTTP on 127.0.0.1 (never another address)."""
    from tests.motoserver import threaded_server

    server = threaded_server()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws(_moto_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A clean moto server and an environment that points boto3 and pyarrow at it."""
    reset = urllib.request.Request(f"{_moto_server}/moto-api/reset", method="POST")  # noqa: S310
    urllib.request.urlopen(reset).read()  # noqa: S310 - our own server on 127.0.0.1
    for key, value in {"AWS_ENDPOINT_URL": _moto_server, **MOTO_ENV}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    yield _moto_server


@pytest.fixture(scope="module")
def spark(_moto_server: str) -> Iterator[Any]:
    """One local Spark (local[2]) for the module that asks for it. Its executors reach moto
    (never AWS, never the instance metadata address) and import this checkout."""
    from pipeline.spark_detect import local_session

    env = {
        "AWS_ENDPOINT_URL": _moto_server,
        **MOTO_ENV,
        "AWS_EC2_METADATA_DISABLED": "true",
        "PYTHONPATH": str(REPO),
    }
    conf = {f"spark.executorEnv.{k}": v for k, v in env.items()}
    session = local_session("local[2]", {**conf, "spark.sql.shuffle.partitions": "4"})
    yield session
    session.stop()
