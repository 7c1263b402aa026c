"""The Security Hub channel: each incident as one ASFF finding, by ``BatchImportFindings``.

A notification names incidents (one, or several for a digest); for each, the finding imported is
made from the incident's **stored state** and its latest verdict when it is sent, not from the
message rendered when the row was made. Its ``Id`` is the incident's (``finding_id``), so every
notification of an incident imports the same finding again: Security Hub updates it in place
(its history keeps each import). Because the state read is the latest, a row sent late (failed
earlier, or re-sent after a newer one) never puts an older version back.

That also makes a repeat harmless, which decides ``retry_window``: importing the same state under
the same ``Id`` a second time leaves one finding with the same fields; the only trace is a second
"Security Hub Findings - Imported" event on EventBridge, which anything listening already gets
once per update and must take as "this finding, as it is now". So an import that may or may not
have happened (no answer, a 5xx, a run that died inside the call) is repeated rather than held
``in_doubt`` for a person, for ``RETRY_WINDOW`` after its first attempt: a day, longer than any
gap between scheduled runs; a row older than that is ``in_doubt`` like elsewhere, for someone to
look at why the pipeline stopped for a day.

Mapping:

- ``Severity.Label`` from the incident's severity (``FindingProviderFields`` too: after the
  first import Security Hub takes severity and types from there only); ``Types`` from the
  detectors of its signals (``TYPES``; a plugin detector's is ``Unusual Behaviors/Application``).
- ``Workflow.Status`` and ``RecordState`` from the incident's latest verdict (``tenantwatch
  incident close``, ``tenantwatch verify-fix --close``): none -> ``NEW``/``ACTIVE``;
  ``true_positive`` and ``remediated`` -> ``RESOLVED``/``ACTIVE``; ``benign`` ->
  ``SUPPRESSED``/``ACTIVE``; ``false_positive`` -> ``SUPPRESSED``/``ARCHIVED`` (the finding was
  not true). tenantwatch has no "acknowledged" state, so ``NOTIFIED`` is never set. Security
  Hub takes ``Workflow`` from a provider on the first import only (afterwards it belongs to the
  analysts, through ``BatchUpdateFindings``); ``RecordState`` on every import. So ``tenantwatch
  incident close`` sets the workflow itself (``follow_verdict``:
  ``BatchUpdateFindings`` with the verdict's status and its note), as an analyst would in the
  console; the next import brings ``RecordState``.
- ``Resources``: one ``Other`` resource per tenant involved, targets first then the actor's (at
  most ``MAX_RESOURCES``, ASFF's 32); ``ProductFields`` the ids (``tenantwatch/tenant_id``,
  ``tenantwatch/actor_tenant``, ``tenantwatch/incident_id`` ...), the snapshot and its SHA-256.
  Every value from a log is sanitised and cut to ASFF's limits; the text names no secret (the
  lake holds none: they were fingerprinted at ingest).

Outcomes: a row whose findings Security Hub listed in ``FailedFindings`` is ``failed`` (sent
again next run); errors of the call are judged as in ``sns`` (``calls``). A call carries at most
100 findings, each at most 240 KB (``MAX_FINDINGS``, ``MAX_FINDING_BYTES``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline import aws
from pipeline.alert import calls, store
from pipeline.alert.delivery import Outcome
from pipeline.alert.incidents import Incident
from pipeline.alert.render import affected_tenants
from pipeline.alert.sanitize import clean
from pipeline.lake import Lake

MAX_FINDINGS = 100  # BatchImportFindings: findings per call
MAX_FINDING_BYTES = 240 * 1024  # per finding
MAX_RESOURCES = 32
MAX_PRODUCT_FIELD = 2048  # characters of a ProductFields value
TITLE_MAX = 256
DESCRIPTION_MAX = 1024
RETRY_WINDOW = timedelta(days=1)  # see the module docstring

SEVERITY_LABEL = {
    "info": "INFORMATIONAL",
    "low": "LOW",
    "medium": "MEDIUM",
    "high": "HIGH",
    "critical": "CRITICAL",
}
# ASFF types (namespace/category/classifier) of each project detector's findings.
TYPES = {
    "cross_tenant_access": "Effects/Data Exposure/Cross-Tenant Access",
    "tenant_switching": "Unusual Behaviors/User/Tenant Switching",
    "authz_failure_spike": "TTPs/Discovery/Authorization Failure Spike",
    "sigma": "TTPs/Sigma Rule",
}
OTHER_TYPE = "Unusual Behaviors/Application"
# The latest verdict -> (Workflow.Status, RecordState).
WORKFLOW = {
    None: ("NEW", "ACTIVE"),
    "true_positive": ("RESOLVED", "ACTIVE"),
    "remediated": ("RESOLVED", "ACTIVE"),
    "benign": ("SUPPRESSED", "ACTIVE"),
    "false_positive": ("SUPPRESSED", "ARCHIVED"),
}


def finding_id(incident_id: str) -> str:
    """The ASFF ``Id`` of an incident's finding: the same for every notification of it."""
    return f"tenantwatch/incident/{incident_id}"


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _fit(value: object, limit: int) -> str:
    """``clean`` text of at most ``limit`` characters (its note of what was cut included)."""
    text = clean(value, max(1, limit - 20))
    return text[:limit]


def asff(
    inc: Incident, verdict: str | None, account: str, region: str, product_arn: str, partition: str
) -> dict[str, Any]:
    """The ASFF finding of ``inc`` given its latest ``verdict`` (see the module docstring)."""
    detectors = sorted({x.detector for x in inc.signals} | {inc.detector})
    types = sorted({TYPES.get(d, OTHER_TYPE) for d in detectors})[:50]
    label = SEVERITY_LABEL[inc.severity]
    created = inc.first_seen or inc.window_start
    updated = max(t for t in (inc.window_end, inc.last_seen, created) if t is not None)
    workflow, record = WORKFLOW.get(verdict, WORKFLOW[None])
    tenants = [t for t in affected_tenants(inc) if t]
    resources = [
        {
            "Type": "Other",
            "Id": _fit(f"tenantwatch/tenant/{t}", 512),
            "Partition": partition,
            "Region": region,
            "Details": {"Other": {"tenantwatch/tenant_id": _fit(t, 1024)}},
        }
        for t in tenants[:MAX_RESOURCES]
    ] or [  # ASFF needs one resource: the incident itself when no tenant was resolved
        {
            "Type": "Other",
            "Id": f"tenantwatch/incident/{inc.incident_id}",
            "Partition": partition,
            "Region": region,
        }
    ]
    n = len(inc.signals)
    description = (
        f"{inc.severity.upper()}: {clean(inc.title, 300)}. Actor {clean(inc.actor, 200)}"
        f" (tenant {clean(inc.actor_tenant, 64)}) on {len(inc.tenants)} tenant(s): "
        + ", ".join(clean(t, 64) for t in inc.tenants[:10])
        + (", ..." if len(inc.tenants) > 10 else "")
        + f". {inc.event_count} events, {inc.finding_count} findings, {n} signal(s) from "
        + ", ".join(detectors)
        + f". Evidence: {inc.snapshot_uri or 'no snapshot yet'}"
        + (f" (SHA-256 {inc.snapshot_sha256})" if inc.snapshot_sha256 else "")
        + "."
    )
    product_fields = {
        "tenantwatch/incident_id": inc.incident_id,
        "tenantwatch/revision": str(inc.revision),
        "tenantwatch/detector": inc.detector,
        "tenantwatch/detectors": ",".join(detectors),
        "tenantwatch/tenant_id": ",".join(clean(t, 64) for t in inc.tenants),
        "tenantwatch/actor_tenant": clean(inc.actor_tenant, 64) if inc.actor_tenant else "",
        "tenantwatch/actor": clean(inc.actor, 300) if inc.actor else "",
        "tenantwatch/event_count": str(inc.event_count),
        "tenantwatch/finding_count": str(inc.finding_count),
        "tenantwatch/snapshot_uri": inc.snapshot_uri or "",
        "tenantwatch/snapshot_sha256": inc.snapshot_sha256 or "",
        "tenantwatch/verdict": verdict or "",
    }
    out: dict[str, Any] = {
        "SchemaVersion": "2018-10-08",
        "Id": finding_id(inc.incident_id),
        "ProductArn": product_arn,
        "GeneratorId": f"tenantwatch/{inc.detector}",
        "AwsAccountId": account,
        "Types": types,
        "CreatedAt": _iso(created),
        "UpdatedAt": _iso(updated),
        "FirstObservedAt": _iso(created),
        "LastObservedAt": _iso(updated if inc.last_seen is None else inc.last_seen),
        "Severity": {"Label": label, "Original": inc.severity},
        "FindingProviderFields": {
            "Severity": {"Label": label, "Original": inc.severity},
            "Types": types,
        },
        "Title": _fit(inc.title, TITLE_MAX),
        "Description": _fit(description, DESCRIPTION_MAX),
        "ProductFields": {k: _fit(v, MAX_PRODUCT_FIELD) for k, v in product_fields.items() if v},
        "Resources": resources,
        "Workflow": {"Status": workflow},
        "RecordState": record,
        "CompanyName": "tenantwatch",
        "ProductName": "tenantwatch",
    }
    return out


def _incidents_of(row: dict[str, Any]) -> list[tuple[str, datetime]]:
    """(incident id, period start) of each incident the row's message is about, from its OCSF
    body (a digest's lists several)."""
    body = json.loads(json.loads(row["message"])["sqs"])
    bodies = body.get("findings") if "findings" in body else [body]
    out = []
    for b in bodies or []:
        info = b["finding_info"]
        out.append((str(info["uid"]), datetime.fromtimestamp(info["created_time"] / 1000, UTC)))
    return out


class SecurityHubUpdateError(Exception):
    """Security Hub did not take a verdict's workflow status: the message says why."""


class SecurityHubChannel:
    name = "securityhub"
    retry_window: timedelta | None = RETRY_WINDOW

    def __init__(self, lake: Lake, product_arn: str = "", region: str = "") -> None:
        self.lake = lake
        self.client = aws.publisher("securityhub", region)
        self.region = str(self.client.meta.region_name or "")
        self._product_arn = product_arn
        self._account: tuple[str, str] | None = None  # (account, partition), on first send

    def batches(self, rows: Sequence[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
        # A digest's row imports a finding per incident it names.
        return calls.batched(rows, lambda row: len(_incidents_of(row)), MAX_FINDINGS)

    def _identity(self) -> tuple[str, str]:
        if self._account is None:
            arn = aws.client("sts", self.region).get_caller_identity()["Arn"]
            _, partition, _, _, account, _ = arn.split(":", 5)
            self._account = (account, partition)
        return self._account

    def product_arn(self, account: str, partition: str) -> str:
        return self._product_arn or (
            f"arn:{partition}:securityhub:{self.region}:{account}:product/{account}/default"
        )

    def _findings(self, rows: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]] | str]:
        """notification id -> the findings its row imports (each incident's latest state), or
        why there are none to import."""
        from pipeline import verdicts

        account, partition = self._identity()
        product = self.product_arn(account, partition)
        latest = verdicts.latest(verdicts.read_verdicts(self.lake))
        out: dict[str, list[dict[str, Any]] | str] = {}
        for row in rows:
            found = []
            for iid, period in _incidents_of(row):
                inc = store.read_incident(self.lake, period, iid)
                if inc is None:
                    out[row["notification_id"]] = f"incident {iid}: no stored state to import"
                    break
                v = latest.get(iid)
                found.append(
                    asff(inc, v.verdict if v else None, account, self.region, product, partition)
                )
            else:
                out[row["notification_id"]] = found
        return out

    def send(
        self, rows: Sequence[dict[str, Any]], retry_until: datetime | None = None
    ) -> list[Outcome]:
        """Import the findings of ``rows`` in one call (repeated while unanswered, until
        ``retry_until``)."""
        until = retry_until or datetime.now(UTC) + RETRY_WINDOW
        try:
            by_row = self._findings(rows)
        except Exception as exc:  # STS, the lake: nothing was imported
            return [Outcome("failed", error=calls.judge(exc)[1]) for _ in rows]
        out: dict[str, Outcome] = {}
        findings: list[dict[str, Any]] = []
        ready: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            nid = row["notification_id"]
            got = by_row[nid]
            if isinstance(got, str):
                out[nid] = Outcome("failed", error=got)
                continue
            big = [f for f in got if len(json.dumps(f).encode()) > MAX_FINDING_BYTES]
            if big:  # never with ASFF's own field limits; said rather than sent to be refused
                out[nid] = Outcome("failed", error=f"{big[0]['Id']}: over 240 KB")
            else:
                ready[nid] = got
                findings += got
        if findings:
            # A digest and an update in one batch may import the same incident twice: once.
            unique = list({f["Id"]: f for f in findings}.values())
            verdict, answer, error = calls.call(
                lambda: self.client.batch_import_findings(Findings=unique),
                lambda wait: self._may_repeat(until, wait),
            )
            failed: dict[str, str] = {}
            if verdict == "answered":
                for f in answer.get("FailedFindings", []):
                    failed[f.get("Id", "")] = f"{f.get('ErrorCode')}: {f.get('ErrorMessage', '')}"[
                        :500
                    ]
            for row in rows:
                nid = row["notification_id"]
                if nid in out:
                    continue
                if verdict != "answered":
                    state = "in_doubt" if verdict == "unknown" else "failed"
                    out[nid] = Outcome(state, error=error)
                    continue
                bad = [failed[f["Id"]] for f in ready[nid] if f["Id"] in failed]
                if bad:
                    out[nid] = Outcome("failed", error=bad[0])
                else:
                    ids = ",".join(f["Id"] for f in ready[nid])
                    out[nid] = Outcome("sent", ids[:500])
        return [out[row["notification_id"]] for row in rows]

    def follow_verdict(self, incident_id: str, verdict: str, note: str, who: str) -> None:
        """Set the finding's ``Workflow.Status`` to the verdict's (``BatchUpdateFindings``),
        with the verdict's note; a finding Security Hub does not know (never imported) or an
        error raises ``SecurityHubUpdateError``."""
        account, partition = self._identity()
        status, _ = WORKFLOW.get(verdict, WORKFLOW[None])
        ident = {"Id": finding_id(incident_id), "ProductArn": self.product_arn(account, partition)}
        text = _fit(f"{verdict}: {note}" if note else verdict, 512)
        try:
            answer = self.client.batch_update_findings(
                FindingIdentifiers=[ident],
                Workflow={"Status": status},
                Note={"Text": text, "UpdatedBy": _fit(who or "tenantwatch", 512)},
            )
        except Exception as exc:
            raise SecurityHubUpdateError(f"{type(exc).__name__}: {exc}"[:300]) from None
        bad = answer.get("UnprocessedFindings") or []
        if bad:
            first = bad[0]
            raise SecurityHubUpdateError(
                f"{first.get('ErrorCode', '')}: {first.get('ErrorMessage', '')}"[:300]
            )

    @staticmethod
    def _may_repeat(until: datetime, wait: float) -> bool:
        worst = timedelta(seconds=wait + aws.CONNECT_TIMEOUT_S + aws.READ_TIMEOUT_S)
        return datetime.now(UTC) + worst < until
