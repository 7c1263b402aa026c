"""Which Sigma log sources tenantwatch has, and what a rule's field names mean in the lake.

Log sources (a rule's ``logsource``):

- ``product: aws, service: cloudtrail``: the lake's ``cloudtrail`` events (SigmaHQ's spelling);
- ``product: aws, service: apigateway``: API Gateway access logs (``apigateway``);
- ``product: tenantwatch, service: <source>``: any of the lake's sources by its own name
  (``cloudtrail``, ``apigateway``, ``authorizer``: the Lambda authorizer's decision logs).

Fields: a CloudTrail record field the lake keeps as a column is read from that column
(``eventName`` is ``action``, ``eventSource`` is ``service`` ...: ``CLOUDTRAIL_COLUMNS``); any
other field of the record (``userIdentity.arn``, ``requestParameters.bucketName``,
``additionalEventData.MFAUsed``) is JSON text from ``raw``, the record as received with its
secrets fingerprinted. A field that is no CloudTrail record field is "unknown", and the rule is
skipped with that reason rather than never matching. The lake's own columns are fields too, so
a rule can be tenant-aware: ``actor_tenant``, ``target_tenant``, ``tenant_conflict``,
``actor_ticket``, ``outcome`` ...; and ``foreign_accounts`` holds the account ids named in a
request's parameters that are neither the event's own account nor, through
``[sigma] account_lookup``, an account of the event's tenant (``detectors.sigma.view``).

For the API logs, whose field names are the SaaS's own (``[sources.apigateway]``), every field
is either a lake column or JSON text from ``raw``: no field is unknown there.
"""

from __future__ import annotations

import re
from typing import Any

from pipeline import schema

# Columns added to the events a rule reads (``detectors.sigma.view``).
DERIVED = ("foreign_accounts",)
LAKE_COLUMNS = frozenset(schema.EVENTS.names) | frozenset(DERIVED)

# CloudTrail record fields the lake keeps as columns.
CLOUDTRAIL_COLUMNS: dict[str, str] = {
    "eventName": "action",
    "eventSource": "service",
    "sourceIPAddress": "source_ip",
    "userAgent": "user_agent",
    "errorCode": "error_code",
    "awsRegion": "region",
    "recipientAccountId": "account_id",
    "eventID": "event_id",
    "requestID": "request_id",
}

# The top-level fields of a CloudTrail record (the CloudTrail record contents reference, plus
# what console sign-in, Insights and service events add).
CLOUDTRAIL_FIELDS = frozenset(
    {
        "eventVersion",
        "userIdentity",
        "eventTime",
        "eventSource",
        "eventName",
        "awsRegion",
        "sourceIPAddress",
        "userAgent",
        "errorCode",
        "errorMessage",
        "requestParameters",
        "responseElements",
        "additionalEventData",
        "requestID",
        "eventID",
        "eventType",
        "apiVersion",
        "managementEvent",
        "readOnly",
        "resources",
        "recipientAccountId",
        "serviceEventDetails",
        "sharedEventID",
        "vpcEndpointId",
        "vpcEndpointAccountId",
        "eventCategory",
        "addendum",
        "sessionCredentialFromConsole",
        "edgeDeviceDetails",
        "tlsDetails",
        "insightDetails",
    }
)

# logsource (product, service) -> lake source
LOG_SOURCES: dict[tuple[str, str], str] = {
    ("aws", "cloudtrail"): "cloudtrail",
    ("aws", "apigateway"): "apigateway",
    **{("tenantwatch", s): s for s in schema.SOURCES},
}


class UnsupportedRule(Exception):
    """A rule tenantwatch cannot run: the message says why, for ``tenantwatch sigma check``."""


def source_of(logsource: Any) -> str:
    """The lake source a rule's ``logsource`` names, or ``UnsupportedRule``."""
    product = (logsource.product or "").lower()
    service = (logsource.service or "").lower()
    found = LOG_SOURCES.get((product, service))
    if found is None:
        said = ", ".join(
            f"{k}={v}"
            for k, v in (
                ("product", logsource.product),
                ("category", logsource.category),
                ("service", logsource.service),
            )
            if v
        )
        have = "; ".join(f"product={p}, service={s}" for p, s in LOG_SOURCES)
        raise UnsupportedRule(f"tenantwatch has no log source {said or '(none)'} (it has: {have})")
    return found


def json_path_parts(field_name: str) -> list[str]:
    """``requestParameters.bucketName`` -> ``["requestParameters", "bucketName"]``; a key with
    a dot in it can be written in brackets: ``requestParameters['x.y']``."""
    parts: list[str] = []
    for m in re.finditer(r"\[['\"]([^'\"]+)['\"]\]|([^.\[\]]+)", field_name):
        parts.append(m.group(1) or m.group(2))
    return parts


def check_field(field_name: str | None, source: str) -> None:
    """``UnsupportedRule`` if ``field_name`` means nothing for events of ``source``."""
    if field_name is None or field_name in LAKE_COLUMNS:
        return
    if source != "cloudtrail":
        return  # the API logs' fields are the SaaS's own: JSON text from raw
    top = json_path_parts(field_name)[0] if field_name else ""
    if top not in CLOUDTRAIL_FIELDS:
        raise UnsupportedRule(
            f"unknown field {field_name!r}: not a CloudTrail record field nor a lake column"
        )


def rule_fields(detection: Any) -> list[str | None]:
    """Every field name a rule's detection items use (``None`` for keywords)."""
    from sigma.rule import SigmaDetection, SigmaDetectionItem

    out: list[str | None] = []

    def walk(item: Any) -> None:
        if isinstance(item, SigmaDetection):
            for sub in item.detection_items:
                walk(sub)
        elif isinstance(item, SigmaDetectionItem):
            out.append(item.field)
            for v in item.value:
                ref = getattr(v, "field", None)
                if isinstance(ref, str):
                    out.append(ref)

    for det in detection.detections.values():
        walk(det)
    return out


def mapping_pipeline() -> Any:
    """The processing pipeline: CloudTrail fields the lake keeps as columns become those
    columns (only in rules over the ``cloudtrail`` source)."""
    from sigma.processing.conditions import LogsourceCondition
    from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
    from sigma.processing.transformations import FieldMappingTransformation

    conditions = [
        LogsourceCondition(product=p, service=s)
        for (p, s), src in LOG_SOURCES.items()
        if src == "cloudtrail"
    ]
    return ProcessingPipeline(
        name="tenantwatch lake fields",
        priority=20,
        items=[
            ProcessingItem(
                identifier="tenantwatch_cloudtrail_columns",
                transformation=FieldMappingTransformation(dict[Any, Any](CLOUDTRAIL_COLUMNS)),
                rule_conditions=list[Any](conditions),
                rule_condition_linking=any,
            )
        ],
    )
