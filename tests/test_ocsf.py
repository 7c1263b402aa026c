"""Every machine-read message is OCSF: each notification kind's body, and each event of a digest,
validates as a Detection Finding (class 2004) with py-ocsf-models, and names no attribute the
schema does not have (outside ``unmapped`` and the evidence's free-form ``data``)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from py_ocsf_models.events.findings.detection_finding import DetectionFinding
from pydantic import BaseModel

from pipeline.alert import render
from tests.alertfactory import CTX, incident

FREE_FORM = {"unmapped", "data"}
# Attributes a profile adds to a class (py-ocsf-models' classes hold only their own): what a
# body may carry when its ``metadata.profiles`` declares the profile.
PROFILE_ATTRIBUTES = {"host": {"actor", "device"}, "cloud": {"cloud", "api"}}


def unknown_attributes(data: Any, model: Any, path: str = "") -> list[str]:
    """Attributes of ``data`` the model (pydantic, which ignores extra keys) does not know."""
    out: list[str] = []
    if isinstance(model, BaseModel) and isinstance(data, dict):
        fields = type(model).model_fields
        for key, value in data.items():
            where = f"{path}.{key}" if path else key
            if key not in fields:
                out.append(where)
            elif key not in FREE_FORM:
                out += unknown_attributes(value, getattr(model, key), where)
    elif isinstance(model, list) and isinstance(data, list):
        for i, (d, m) in enumerate(zip(data, model, strict=False)):
            out += unknown_attributes(d, m, f"{path}[{i}]")
    return out


def validate(body: dict[str, Any]) -> DetectionFinding:
    finding = DetectionFinding.model_validate(body)
    declared = set(body["metadata"].get("profiles", []))
    allowed = {a for p in declared for a in PROFILE_ATTRIBUTES.get(p, set())}
    assert [a for a in unknown_attributes(body, finding) if a not in allowed] == []
    if "actor" in body:  # the host profile's Actor object: a user with a uid and a name
        assert set(body["actor"]) == {"user"} and set(body["actor"]["user"]) <= {"uid", "name"}
        assert all(isinstance(v, str) for v in body["actor"]["user"].values())
    assert finding.class_uid == 2004 and finding.category_uid == 2
    return finding


MULTI = incident(tenants=["t0002", "t0003"], actor_tenant="t0001")


@pytest.mark.parametrize("kind", ["new", "update", "escalation"])
def test_each_notification_kind_is_a_valid_detection_finding(kind: str) -> None:
    m = render.message(MULTI, kind, CTX, "n1", previous="medium" if kind == "escalation" else None)
    finding = validate(m.body)
    assert finding.metadata.tenant_uid == "t0002"  # the (first) target tenant
    assert finding.metadata.profiles == ["cloud", "host"] and m.body["cloud"]["provider"] == "AWS"
    assert {r["uid"] for r in m.body["resources"]} == {"t0001", "t0002", "t0003"}


def test_a_digest_is_a_list_of_ocsf_events() -> None:
    a = dataclasses.replace(MULTI, status="updated", revision=2)
    b = dataclasses.replace(incident(severity="critical", dedup_key="k2"), status="updated")
    m = render.digest([a, b], CTX, "d1")
    assert isinstance(m.body, list)
    assert [validate(e).finding_info.uid for e in m.body] == [a.incident_id, b.incident_id]


def test_a_shortened_message_is_still_valid() -> None:
    blob = {"event_ids": [f"evt-{i:06d}" for i in range(10_000)], "details": "A" * 300_000}
    inc = incident(evidence=json.dumps(blob), tenants=[f"t{i:04d}" for i in range(2000)])
    m = render.message(inc, "new", CTX, "n1")
    assert m.truncated
    validate(m.body)
    tw = m.body["unmapped"]["tenantwatch"]
    assert tw["tenant_count"] == 2000 and len(tw["tenants"]) < 2000


def test_machine_subscribers_get_the_ocsf_body_and_people_the_text() -> None:
    m = render.message(MULTI, "new", CTX, "n1")
    env = json.loads(m.envelope)
    assert env["default"] == m.text
    for protocol in ("sqs", "lambda", "http", "https", "email-json", "firehose"):
        assert json.loads(env[protocol]) == m.body, protocol
    assert "email" not in env  # plain email reads the text (default)


def test_the_checker_catches_an_attribute_ocsf_does_not_have() -> None:
    body = render.message(MULTI, "new", CTX, "n1").body
    bad = {**body, "tenant": "t0002", "metadata": {**body["metadata"], "tenant": "x"}}
    found = unknown_attributes(bad, DetectionFinding.model_validate(bad))
    assert sorted(set(found) - {"actor"}) == ["metadata.tenant", "tenant"]
    with pytest.raises(AssertionError):
        validate(bad)
