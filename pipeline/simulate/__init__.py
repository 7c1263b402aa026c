"""A deterministic multi-tenant SaaS on AWS, and the logs it writes, with labelled attacks.

``simulate(out_dir, SimulationSpec())`` writes, under ``out_dir``, exactly what AWS would deliver
(CloudTrail and its digests to S3; API Gateway access logs and the Lambda authorizer's logs
exported from CloudWatch Logs to S3), plus ``labels.json`` (the attacks and labelled negatives),
``truth.parquet`` (every event's true actor and target tenant, ``writer.TRUTH``) and the world's
``tenantwatch.toml`` with any registry or ticket export it names. Output is a pure function of
the spec, byte for byte.

``spec.world`` picks how the SaaS encodes its tenants: ``pooled`` (below), ``silo`` or
``bridge``; ``pipeline.simulate.worlds`` and its modules say what differs. The business (tenants,
users, relationships, traffic, scenarios) is the same in all three.

The pooled world
----------------
- Account ``spec.account``, home region ``spec.region``; each tenant's data lives in the regions
  ``regions`` gives it (most the home region's, some eu-west-1, some two regions), where its S3
  and DynamoDB events are, and its API requests go to the regional API of its first region
  (``a1b2c3d4e5`` in the home region). Tenants ``t0001``..``tNNNN``, each with a
  time zone (UTC-8, -5, 0, +1, +5:30, +9) and 2-40 users (Zipf: few big, many small). User ids
  are opaque (``usr-3f9a1c2e``) and never contain the tenant id.
- Data: S3 bucket ``acme-saas-tenant-data``, keys ``tenants/<tid>/{invoices,exports,attachments,
  analytics}/...``; DynamoDB table ``tenant-data``, partition key ``pk = TENANT#<tid>``.
- API: REST API ``a1b2c3d4e5``, stage ``prod``, routes ``/tenants/{tenantId}/session`` (login,
  POST, no authorizer), ``/invoices``, ``/invoices/{id}``, ``/users``, ``/reports``,
  ``/attachments/{id}``, behind the Lambda authorizer ``tenant-authorizer`` (cache TTL 300 s; see
  ``apigateway`` for the cache keys and the one mis-keyed route).
- Relationships (for >= 50 tenants; smaller worlds spread the same roles over their tenants and
  ``tenantwatch.toml`` says where): parent
  ``t0010`` of ``t0011-t0013``; consultants ``ext-consultant-ana`` (``t0020-t0022``) and
  ``ext-consultant-ben`` (``t0030-t0031``), both from partner tenant ``t0049``; service roles
  ``saas-nightly-export`` and ``saas-billing-aggregator``; break-glass role
  ``support-break-glass`` with ticket ``SUP-4821`` for ``t0031`` until midnight after the attack
  day.

How each actor looks in each log
--------------------------------
Tenant user ``usr-x`` of ``tA`` (logs in, then works for up to an hour per session):
  - API access log: ``POST /tenants/tA/session`` (no authorizer fields), then requests with
    ``authorizerPrincipalId`` ``usr-x``, ``authorizerTenantId`` ``tA`` and ``path``
    ``/prod/tenants/tA/...``. ``authorizerLatency`` is ``-`` when the cached result was used.
  - Authorizer log (cache misses only): ``principal_id`` ``usr-x``, ``tenant_claim`` ``tA``,
    ``requested_tenant`` (from the path), ``decision``, ``reason``, ``cache_key``,
    ``token_fingerprint`` (never the token), ``request_id`` = the access log's ``requestId``.
  - CloudTrail: on login, role ``tenant-token-vendor`` (a Lambda) calls ``AssumeRole`` on
    ``tenant-scoped-access`` with ``roleSessionName`` ``usr-x`` and tag ``tenant_id=tA``; the
    response holds a fresh ``ASIA...`` key and a ``sessionToken`` (a secret to redact). The
    backend's DynamoDB calls for that user's requests, and the browser's presigned S3 downloads
    (``AuthenticationMethod`` ``QueryString``, the user's IP), run as
    ``assumed-role/tenant-scoped-access/usr-x`` with that key and no tag: join on accessKeyId.
    ``/reports`` is served by ``reports-service``, which assumes ``tenant-reports`` as
    ``tenant-tA-usr-x`` (tenant in the session name, no tags) and reads ``tenants/tA/exports/``.
    A few admins pull analytics with the AWS CLI via ``tenant-analytics`` (tagged like above).
  - DynamoDB records carry ``requestParameters.key.pk.S = TENANT#tA`` (for ``Query`` too, beside
    ``keyConditionExpression``).
Parent-company user ``usr-p`` of ``t0010``: as above, claim/tag ``t0010``, but a third of its
  requests target ``t0011-t0013`` (paths, ``TENANT#``-keys); the authorizer allows them
  (reason "delegated access grant").
Consultant ``ext-consultant-ana``: API ``authorizerPrincipalId`` ``ext-consultant-ana``,
  ``authorizerTenantId`` ``t0049``, paths on ``t0020-t0022``; authorizer ``principal_id``
  ``ext-consultant-ana``, ``tenant_claim`` ``t0049``. CloudTrail: vended session
  ``assumed-role/tenant-scoped-access/ext-consultant-ana`` tagged ``tenant_id=t0049`` acting on
  ``TENANT#t0020`` etc. So a detector matches the Consultant relationship on the API principal
  or the role session name. Weekdays only, 08-16 UTC+1.
Background jobs: ``assumed-role/saas-nightly-export/saas-nightly-export`` (02:00 UTC, every
  tenant: ListObjects invoices/, GetObject, PutObject exports/) and
  ``assumed-role/saas-billing-aggregator/saas-billing-aggregator`` (every hour, a DynamoDB Query
  per tenant). Their credentials come from an ``AssumeRole`` by ``lambda.amazonaws.com``.
Support: ``assumed-role/support-break-glass/SUP-4821.dana`` (ticketed) or ``.../erik`` (none),
  assumed from an SSO session, AWS CLI.
Operators: SSO admins (``ConsoleLogin`` + console reads), GitHub Actions deploys
  (``AssumeRoleWithWebIdentity``, CloudFormation, then ``invokedBy`` cloudformation), a Datadog
  integration from account 464622532012 every 30 minutes, Secrets Manager / KMS by the backend.

Noise a detector must tolerate: mistyped passwords (401 on login), non-admins trying to invite
users (403 from the backend with an Allow from the authorizer), stale tabs (401 expired token),
404s, 429s, 500s with a DynamoDB ``ThrottlingException``, S3 ``NoSuchKey`` / ``AccessDenied``,
``ConditionalCheckFailedException`` - a few per cent overall, a few denials per tenant per day.

Labels (``labels.json``)
------------------------
One object per injected attack and per labelled negative: ``id``, ``kind`` (attack|negative),
``scenario``, ``expected_detector``, ``expected_severity``, ``actor`` (what a detector would name,
in the world's own terms: an assumed-role ARN in the account the session lives in, an API
principalId or a source IP; null when the group is a tenant), ``actor_tenant``, ``tenants``
(targets), ``start``/``end``, ``event_ids`` (CloudTrail eventIDs, every copy of a call AWS
delivered to two accounts, and API requestIds, which are also the authorizer log's request id)
and ``description``.
For a negative, ``expected_detector`` names the detector that could wrongly fire and
``expected_severity`` the most it may say: ``none``, or ``low`` for the ticketed break-glass
access (recorded, not paged). Negatives' event ids cover the attack day only. Besides the
relationships, background jobs and the surge tenant's Monday morning (traffic tripled), the
negatives include the ``benign`` cases: one tenant's users refused by the authorizer and clicking
on while the Deny is cached, a new employee's first days, and a log delivery that lost its
permission (``delivery.logs.amazonaws.com``, thousands of ``AccessDenied``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from pipeline.simulate import clock
from pipeline.simulate.apigateway import Api
from pipeline.simulate.benign import Benign
from pipeline.simulate.cloudtrail import CloudTrail
from pipeline.simulate.labels import Recorder
from pipeline.simulate.scenarios import Scenarios, negatives
from pipeline.simulate.spec import (
    ALL_SCENARIOS,
    WORLDS,
    SimulationError,
    SimulationSpec,
    validate,
)
from pipeline.simulate.traffic import Traffic
from pipeline.simulate.world import build
from pipeline.simulate.writer import TRUTH_FILE, Sink, Writer

__all__ = ["ALL_SCENARIOS", "TRUTH_FILE", "WORLDS", "SimulationError", "SimulationSpec", "simulate"]


def simulate(
    out_dir: Path,
    spec: SimulationSpec,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Writes everything under out_dir; returns a JSON-able summary of what was written."""
    validate(spec)
    started = time.perf_counter()
    out_dir = Path(out_dir)
    world = build(spec)
    start = clock.day_start(spec.start)
    end = start + spec.days * clock.DAY
    attack = clock.day_start(spec.attack_day)
    sink = Sink(start, end)
    ct, api = CloudTrail(world, sink), Api(world, sink)
    rec = Recorder(attack, end)
    traffic = Traffic(world, ct, api, rec)
    writer = Writer(out_dir, world)
    benign = Benign(traffic)
    labels: list[dict[str, Any]] = []
    for d in range(spec.days):
        traffic.day(d)
        benign.day(d)
        if d == spec.days - 1:
            labels = Scenarios(traffic, attack).run(spec.scenarios)
        # Nothing generated later lands on an earlier day, so this day is complete.
        day_index = (start // clock.DAY) + d
        pool = sink.days.pop(day_index, None)
        if pool is not None:
            writer.write_cloudtrail(day_index, pool.ct)
            writer.write_apigateway(day_index, pool.api)
            writer.write_authorizer(day_index, pool.auth)
            writer.write_truth(pool.truth)
        if progress is not None:
            progress(d + 1, spec.days)
    if spec.digests:
        writer.write_digests(start, end)
    labels += negatives(world, rec) + benign.labels()
    writer.write_text(
        "labels.json", orjson.dumps(labels, option=orjson.OPT_INDENT_2).decode() + "\n"
    )
    for rel, text in world.style.files().items():
        writer.write_text(rel, text)
    writer.close()
    c = writer.counts
    return {
        "cloudtrail_files": c["cloudtrail_files"],
        "cloudtrail_records": c["cloudtrail_records"],
        "digest_files": c["digest_files"],
        "apigateway_files": c["apigateway_files"],
        "apigateway_records": c["apigateway_records"],
        "authorizer_files": c["authorizer_files"],
        "authorizer_records": c["authorizer_records"],
        "labels": len(labels),
        "truth_rows": c["truth_rows"],
        "bytes_written": c["bytes_written"],
        "elapsed_s": round(time.perf_counter() - started, 3),
        "out_dir": str(out_dir),
    }
