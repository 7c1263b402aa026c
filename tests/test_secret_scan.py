"""No planted secret reaches any output of the whole pipeline.

Inputs of every kind ingestion reads (CloudTrail delivery files, EventBridge envelopes, API
Gateway access logs, their CloudWatch Logs export, Lambda-authorizer lines in a CloudWatch Logs
subscription payload) carry secrets in every place one can hide: credentials, headers, query
strings and fragments, JSON strings inside JSON strings, keys spelled with escapes, error
messages, user agents, query parameters as objects and as strings without their "?", URLs with
passwords, connection strings, PEM private keys, keys such as x-api-key or passwd, and records
that end up in the quarantine. Each secret is a value of its
own, random, so a hit names the place it was planted.

``tenantwatch run`` (a separate process, as an operator runs it) takes them into a local lake
and alerts through SNS on a moto server on 127.0.0.1, with an SQS queue subscribed; then
``detect --json``, ``alert --json``, ``tenancy report`` and ``snapshot verify`` run over the
lake. Every byte of every
output is searched for every secret, and for pieces of it (a secret cut short leaves a piece):
each lake file as bytes and, for Parquet, every value of every column read back with pyarrow;
every SNS message as SQS received it; CloudWatch metrics; the CLI's stdout and stderr. Some of
the secrets ride on cross-tenant requests, so findings, incidents, snapshots and notifications
hold their evidence: the scan covers them, and the test checks they are there.
"""

from __future__ import annotations

import base64
import gzip
import json
import random
import re
import string
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pyarrow.parquet as pq
import pytest

from pipeline.ingest.fingerprint import fingerprint
from tests import logfactory as lf
from tests.pooled import pooled_text

pytestmark = pytest.mark.e2e

TENANTWATCH = Path(sys.executable).parent / "tenantwatch"
NAMESPACE = "Tenantwatch/SecretScan"
_B62 = string.ascii_letters + string.digits
PIECE = 12  # a leak of this many characters of a secret counts


@dataclass
class Planted:
    """The secrets planted so far: value -> where."""

    rng: random.Random
    where: dict[str, str] = field(default_factory=dict)

    def secret(self, where: str, length: int = 40) -> str:
        value = "".join(self.rng.choice(_B62) for _ in range(length))
        self.where[value] = where
        return value

    def hex(self, where: str) -> str:
        value = "".join(self.rng.choice("0123456789abcdef") for _ in range(64))
        self.where[value] = where
        return value

    def jwt(self, where: str) -> str:
        head = base64.urlsafe_b64encode(b'{"alg":"HS256"}').rstrip(b"=").decode()
        return f"{head}.{self.secret(where + ' (JWT claims)')}.{self.secret(where + ' (JWT sig)')}"


# --- inputs --------------------------------------------------------------------------------------


def _presigned(p: Planted, where: str) -> str:
    return (
        "https://awslambda-us-east-1-tasks.s3.us-east-1.amazonaws.com/snapshots/111122223333/fn"
        f"?versionId=3&X-Amz-Security-Token={p.secret(where + ' X-Amz-Security-Token', 200)}"
        "&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20261116"
        f"%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature={p.hex(where + ' X-Amz-Signature')}"
    )


def cloudtrail_records(p: Planted, n: int) -> list[dict[str, Any]]:
    """CloudTrail records with secrets, the n-th copy of each placement."""
    at = f"cloudtrail #{n}"
    minute = f"2026-11-16T10:{n % 60:02d}:00Z"
    assume = lf.assume_role(time=minute, new_key_id=f"ASIASCAN{n:012d}")
    creds = assume["responseElements"]["credentials"]
    creds["sessionToken"] = p.secret(f"{at} AssumeRole sessionToken", 300)
    creds["secretAccessKey"] = p.secret(f"{at} AssumeRole secretAccessKey")
    inner = json.dumps({"access_token": p.secret(f"{at} JSON in JSON in JSON")})
    return [
        assume,
        lf.ct(
            "GetFunction",
            time=minute,
            userAgent=f"sdk/2 (+https://x.example/?apikey={p.secret(at + ' user agent query')})",
            responseElements={"code": {"location": _presigned(p, at + " presigned URL")}},
        ),
        lf.ct(
            time=minute,
            error="AccessDenied",
            errorMessage=f"denied for https://h.example/p?pwd={p.secret(at + ' error message')}",
            additionalEventData={
                "redirect": f"https://app.example/cb#access_token={p.secret(at + ' fragment')}"
                "&token_type=Bearer"
            },
        ),
        lf.ct(
            time=minute,
            requestParameters=json.dumps(
                {
                    "password": p.secret(f"{at} password in a JSON string"),
                    "url": f"/cb?code={p.secret(at + ' code in a JSON string')}",
                    "body": inner,
                }
            ),
        ),
        lf.ct(
            "CreateConnection",
            time=minute,
            error="ValidationException",
            errorMessage="cannot load -----BEGIN RSA PRIVATE KEY-----\n"
            f"{p.secret(at + ' PEM private key')}\n-----END RSA PRIVATE KEY-----",
            requestParameters={
                "apiKey": p.secret(f"{at} apiKey"),
                "connectionString": "Server=db;Database=app;User ID=svc;"
                f"Password={p.secret(at + ' ADO connection string')};Encrypt=True",
                "endpoint": f"https://deploy:{p.secret(at + ' basic auth in a URL')}@git.example",
            },
            additionalEventData={
                "passwd": p.secret(f"{at} passwd in additionalEventData"),
                "db": f"mongodb+srv://svc:{p.secret(at + ' mongodb+srv URL')}@c0.example.net/x",
            },
        ),
        lf.ct(
            time=minute,
            requestParameters={
                "bucketName": "acme-saas-tenant-data",
                "key": "tenants/t0001/a.pdf",
                "headers": {
                    "Authorization": f"Bearer {p.secret(at + ' Authorization header')}",
                    "Cookie": f"session={p.secret(at + ' Cookie header')}",
                    "X-Amz-Security-Token": p.secret(f"{at} X-Amz-Security-Token header"),
                    "client_secret": p.secret(f"{at} client_secret key"),
                },
                "link": f"/x?cursor={p.secret(at + ' random value, unknown name')}",
                "jwt": p.jwt(f"{at} bare JWT"),
            },
        ),
    ]


def escaped_key_record(p: Planted, n: int) -> str:
    """A delivery file whose password key is spelled with a \\u escape (the Python decoder)."""
    rec = lf.ct(requestParameters={"PASSWORDKEY": p.secret(f"cloudtrail #{n} escaped key")})
    return json.dumps({"Records": [rec]}).replace("PASSWORDKEY", "p\\u0061ssword")


def access_logs(p: Planted, n: int) -> list[dict[str, Any]]:
    """Access-log lines; the cross-tenant ones (claim t0001, path of t0002) make a finding."""
    at = f"access log #{n}"
    out = []
    for i in range(3):
        rec = lf.access_log(tenant_path="t0002", claim="t0001", principal="usr-scan")
        rec["requestTime"] = f"16/Nov/2026:10:{(n + i) % 60:02d}:00 +0000"
        secret = p.secret(f"{at} query of a cross-tenant path")
        rec["path"] = f"/prod/tenants/t0002/invoices?page=2&access_token={secret}&sort=name"
        if i == 2:  # the tenant as the last segment: its query is in the path hint too
            rec["path"] = f"/prod/tenants/t0002?access_token={secret}"
        rec["resourcePath"] = f"/tenants/{{tenantId}}/invoices?sig={p.secret(at + ' route')}"
        rec["referer"] = f"https://app.example/cb#id_token={p.secret(at + ' referer')}&s=1"
        rec["userAgent"] = f"scanbot/1.0 (+https://b.example/?key={p.secret(at + ' UA')})"
        rec["authorization"] = f"Bearer {p.jwt(at + ' authorization header')}"
        rec["cookie"] = f"sid={p.secret(at + ' cookie header')}"
        rec["x-api-key"] = p.secret(f"{at} x-api-key field")
        rec["querystring"] = f"page=2&api_key={p.secret(at + ' query string without ?')}"
        rec["queryStringParameters"] = {"sig": p.secret(f"{at} query parameters object")}
        out.append(rec)
    return out


def authorizer_lines(p: Planted, n: int) -> list[dict[str, Any]]:
    at = f"authorizer #{n}"
    rec = lf.authorizer_log(principal=p.jwt(at + " principal"))
    secret = p.secret(at + " reason")
    rec["reason"] = f"denied: https://idp.example/authorize?client_secret={secret}"
    rec["method_arn"] += f"?password={p.secret(at + ' method ARN query')}"
    rec["headers"] = {"authorization": f"Bearer {p.secret(at + ' headers')}"}
    rec["context"] = {
        "X-Api-Key": p.secret(f"{at} context API key"),
        "db": f"postgres://app:{p.secret(at + ' context postgres URL')}@db:5432/t",
    }
    return [rec]


def quarantined_lines(p: Planted, n: int) -> list[str]:
    """Lines that cannot become events, each holding secrets."""
    at = f"quarantine #{n}"
    token = p.secret(f"{at} token that never ends")
    big = lf.ct(requestParameters={"u": f"/x?code={p.secret(at + ' record too large')}"})
    big["padding"] = "x" * 20_000
    no_time = lf.ct(responseElements={"url": f"/cb?refresh_token={p.secret(at + ' no time')}"})
    del no_time["eventTime"]
    return [
        '{"eventID":"q1","responseElements":{"credentials":{"sessionToken":"' + token,
        f'curl -H "Authorization: Bearer {p.secret(at + " curl bearer")}" '
        f"https://x.example/?token={p.secret(at + ' curl query')}",
        json.dumps({"unknown": f"https://x.example/?sig={p.secret(at + ' unrecognised')}"}),
        f"db=Data Source=x; Pwd = {p.secret(at + ' ODBC password')} ; client_secret: "
        f"{p.secret(at + ' header line')}",
        json.dumps({"multiValueQueryStringParameters": {"code": [p.secret(at + " multi")]}})[:-1],
        '{"u": "/x?a=1\\u0026signature=' + p.secret(at + " escaped ampersand") + '", broken',
        json.dumps(big),
        json.dumps(no_time),
    ]


def write_inputs(folder: Path, p: Planted, copies: int) -> None:
    for sub in ("trail", "subscription", "bad"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for n in range(copies):
        lf.delivery_file(folder / f"trail/{n:03d}.json.gz", cloudtrail_records(p, n))
        (folder / f"trail/{n:03d}-escaped.json").write_text(escaped_key_record(p, n))
        wrapped = cloudtrail_records(p, 1000 + n)[1]
        envelope = {"version": "0", "detail-type": "AWS API Call via CloudTrail", "detail": wrapped}
        lf.lines_file(folder / f"eventbridge/{n:03d}.log", [envelope])
        lf.lines_file(folder / f"api/{n:03d}.log", access_logs(p, n))
        lf.lines_file(folder / f"export/{n:03d}", access_logs(p, 1000 + n), cwl_export=True)
        payload = lf.cwl_subscription(authorizer_lines(p, n))["awslogs"]
        (folder / f"subscription/{n:03d}.json").write_text(json.dumps({"awslogs": payload}))
        (folder / f"bad/{n:03d}.log").write_text("\n".join(quarantined_lines(p, n)) + "\n")


# --- running the pipeline and collecting what it wrote -------------------------------------------


@dataclass
class Outputs:
    blobs: dict[str, bytes] = field(default_factory=dict)  # where -> bytes
    values: list[tuple[str, str]] = field(default_factory=list)  # (where, text) read back

    def add(self, where: str, data: bytes | str) -> None:
        self.blobs[where] = data.encode() if isinstance(data, str) else data


def _cli(args: list[str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(TENANTWATCH), *args], capture_output=True, timeout=600)


def _strings(value: Any) -> Iterator[str]:
    """Every text in a value read from Parquet (bytes decoded, lists and structs walked)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, bytes):
        yield value.decode("utf-8", "replace")
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def read_lake(lake: Path, out: Outputs) -> None:
    for path in sorted(lake.rglob("*")):
        if not path.is_file():
            continue
        rel = f"lake/{path.relative_to(lake)}"
        data = path.read_bytes()
        out.add(rel, data)
        if path.suffix == ".gz":
            out.add(rel + " (gunzipped)", gzip.decompress(data))
        if path.suffix == ".parquet":
            table = pq.read_table(path)
            for name in table.column_names:
                for row, value in enumerate(table.column(name).to_pylist()):
                    for text in _strings(value):
                        out.values.append((f"{rel} column {name} row {row}", text))


def read_sqs(url: str, out: Outputs) -> int:
    sqs, count = boto3.client("sqs"), 0
    while msgs := sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    ).get("Messages", []):
        for m in msgs:
            out.add(f"SNS message {m['MessageId']}", json.dumps(m))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
            count += 1
    return count


def read_metrics(out: Outputs) -> None:
    cw = boto3.client("cloudwatch")
    metrics = cw.list_metrics()["Metrics"]
    out.add("CloudWatch list_metrics", json.dumps(metrics))
    now = datetime.now(UTC)
    for i, metric in enumerate(metrics):
        data = cw.get_metric_data(
            MetricDataQueries=[
                {"Id": "m", "MetricStat": {"Metric": metric, "Period": 60, "Stat": "Sum"}}
            ],
            StartTime=now - timedelta(hours=1),
            EndTime=now + timedelta(hours=1),
        )
        out.add(f"CloudWatch metric {i}", json.dumps(data["MetricDataResults"], default=str))


def hits(out: Outputs, planted: Planted) -> list[str]:
    """Where any secret, or any piece of one (PIECE characters), was found. Secrets are letters
    and digits: only runs of those long enough to hold a piece are looked into, each of their
    windows looked up among every secret's pieces."""
    pieces = {
        secret[i : i + PIECE]: secret
        for secret in planted.where
        for i in range(len(secret) - PIECE + 1)
    }
    found = []
    places = [*((w, d.decode("utf-8", "replace")) for w, d in out.blobs.items()), *out.values]
    for where, text in places:
        for run in _RUNS.findall(text):
            secret = next(
                (
                    pieces[w]
                    for i in range(len(run) - PIECE + 1)
                    if (w := run[i : i + PIECE]) in pieces
                ),
                None,
            )
            if secret is not None:
                found.append(f"{planted.where[secret]!r} found in {where}")
                break
    return found


_RUNS = re.compile(f"[A-Za-z0-9]{{{PIECE},}}")


def run_and_scan(tmp_path: Path, topic_arn: str, queue_url: str, planted: Planted) -> Outputs:
    lake = tmp_path / "lake"
    config = tmp_path / "tenantwatch.toml"
    config.write_text(
        pooled_text() + "\n[ingest]\nmax_record_bytes = 16384\n"
        f'[alerting]\nsns_topic_arn = "{topic_arn}"\ncloudwatch_namespace = "{NAMESPACE}"\n'
    )
    out = Outputs()
    common = ["--config", str(config)]
    steps = [
        [*common, "run", str(tmp_path / "in"), "--lake", str(lake)],
        [*common, "detect", "--lake", str(lake), "--json"],
        [*common, "alert", "--lake", str(lake), "--json"],
        [*common, "detect", "--lake", str(lake)],
        [*common, "tenancy", "report", "--lake", str(lake), "--json"],
        [*common, "tenancy", "report", "--lake", str(lake)],
    ]
    for i, args in enumerate(steps):
        done = _cli(args)
        assert done.returncode == 0, done.stderr.decode()[-3000:]
        out.add(f"step {i} ({args[2]}): stdout", done.stdout)
        out.add(f"step {i} ({args[2]}): stderr", done.stderr)
    for manifest in sorted(lake.glob("snapshots/*/*/manifest.json")):
        done = _cli([*common, "snapshot", "verify", str(manifest)])
        assert done.returncode == 0, done.stdout.decode()
        out.add(f"snapshot verify {manifest.parent.name}", done.stdout + done.stderr)
    read_lake(lake, out)
    out.add("sqs messages", str(read_sqs(queue_url, out)))
    read_metrics(out)
    return out


@pytest.fixture
def topic(aws: str) -> Iterator[tuple[str, str]]:
    """An SNS topic with an SQS queue subscribed, on the moto server."""
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    arn = sns.create_topic(Name="tenantwatch-incidents")["TopicArn"]
    url = sqs.create_queue(QueueName="everything")["QueueUrl"]
    queue = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue["QueueArn"])
    yield arn, url


def scan(tmp_path: Path, topic: tuple[str, str], seed: int, copies: int) -> None:
    planted = Planted(random.Random(seed))
    write_inputs(tmp_path / "in", planted, copies)
    out = run_and_scan(tmp_path, *topic, planted)

    found = hits(out, planted)
    assert not found, "planted secrets in the outputs:\n" + "\n".join(found[:50])
    # The scan looked where evidence lands: events, quarantine, findings, incidents, snapshots
    # and notifications all exist, and hold the fingerprints of the cross-tenant requests.
    lake_parts = {w.split("/")[1] for w in out.blobs if w.startswith("lake/")}
    assert {"events", "quarantine", "findings", "incidents", "snapshots"} <= lake_parts, lake_parts
    assert int(out.blobs["sqs messages"]) > 0
    agents = [s for s, w in planted.where.items() if w.endswith(" UA")]
    notified = b"".join(v for w, v in out.blobs.items() if w.startswith("SNS message"))
    snapshots = "".join(t for w, t in out.values if w.startswith("lake/snapshots/"))
    assert any(fingerprint(s + ")").encode() in notified for s in agents)
    assert any(fingerprint(s + ")") in snapshots for s in agents)
    sources = {t for w, t in out.values if w.startswith("lake/events/") and " column source " in w}
    assert sources == {"cloudtrail", "apigateway", "authorizer"}
    # Quarantined records of every kind were there to scan.
    quarantine = " ".join(t for w, t in out.values if "column reason" in w)
    for reason in ("invalid_json", "unrecognised_record", "record_too_large", "missing_event_time"):
        assert reason in quarantine


@pytest.mark.slow
def test_no_planted_secret_reaches_any_output(tmp_path: Path, topic: tuple[str, str]) -> None:
    scan(tmp_path, topic, seed=20261116, copies=2)


@pytest.mark.soak
@pytest.mark.parametrize("seed", range(6))
def test_no_planted_secret_reaches_any_output_soak(
    tmp_path: Path, topic: tuple[str, str], seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # More copies of every placement, new secrets each seed, and every other seed the Python decoder
    # for delivery files (the CLI's processes inherit the switch).
    monkeypatch.setenv("TENANTWATCH_NATIVE", "1" if seed % 2 else "0")
    scan(tmp_path, topic, seed=seed, copies=random.Random(seed).randint(20, 60))
