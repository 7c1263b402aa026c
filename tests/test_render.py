"""What the on-call engineer reads: limits, sanitising, OCSF (pipeline/alert/render.py)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from pipeline.alert import render
from pipeline.alert.sanitize import ascii_line, clean
from tests.alertfactory import CTX, incident

HOSTILE = [
    "\x1b[31mred\x1b[0m",
    "\x1b]0;owned\x07",
    "\r\nFAKE: severity low",
    "a\u202eb",  # right-to-left override
    "nul\x00bell\x07",
    "x" * 5000,
]


@pytest.mark.parametrize("value", HOSTILE)
def test_clean_leaves_no_control_characters(value: str) -> None:
    out = clean(value)
    assert "\x1b" not in out and "\n" not in out and "\r" not in out and "\u202e" not in out
    assert all(ch.isprintable() for ch in out)
    assert len(out) < 400


def test_clean_shows_what_was_there() -> None:
    assert clean("\x1b[31mred") == "<ESC[31m>red"
    assert clean("a\r\nb") == "a\\r\\nb"


@pytest.mark.parametrize("title", ["é" * 300, "\x1b[31m" * 50, "line\nbreak", "", "a" * 99])
def test_subject_is_short_printable_ascii(title: str) -> None:
    subj = render.subject(incident(title=title), "new")
    assert len(subj) < 100
    assert all(" " <= ch <= "~" for ch in subj)
    assert ascii_line(title, 99) == ascii_line(title, 99).strip()


def test_hostile_values_cannot_forge_lines_or_colours() -> None:
    inc = incident(
        actor="usr-a\r\nSeverity: low\x1b[2J",
        title="Cross-tenant \x1b[31mRED\x1b[0m",
        tenants=["t0002\nFAKE", "../../etc"],
        evidence=json.dumps(
            {"user_agents": [["curl\x1b[31m\r\nFAKE: line", 1]], "note": "\x1b]0;title\x07"}
        ),
    )
    m = render.message(inc, "new", CTX, "n1")
    for text in (m.text, m.envelope, m.subject, json.dumps(m.attributes)):
        assert "\x1b" not in text and "\r" not in text and "\x07" not in text
    assert not any(line.startswith("FAKE") for line in m.text.splitlines())
    assert not any(line.startswith("Severity: low") for line in m.text.splitlines())
    assert "\\r\\nSeverity: low" in m.text  # shown, not obeyed


def test_text_has_what_on_call_needs() -> None:
    inc = dataclasses.replace(
        incident(), snapshot_uri="s3://snap/abc/manifest.json", snapshot_sha256="f" * 64
    )
    text = render.message(inc, "new", CTX, "n1").text
    for needle in (
        "usr-a",
        "t0001",
        "t0002",
        "2026-11-16 10:05:00 UTC",
        "2026-11-16 10:20:00 UTC",
        "GetObject",
        "198.51.100.7",
        "threshold 1",
        "Baseline: rule: none allows this",
        "1. Look at it.",
        "3. Tell the security lead.",
        "s3://snap/abc/manifest.json",
        "f" * 64,
        "tenantwatch snapshot verify",
        "tenantwatch detect --lake lake",
        "FROM tenantwatch.events",
    ):
        assert needle in text, needle


def test_sns_attributes_for_filter_policies() -> None:
    attrs = render.message(incident(), "new", CTX, "n1").attributes
    assert attrs["severity"] == {"DataType": "String", "StringValue": "high"}
    assert attrs["detector"]["StringValue"] == "cross_tenant_access"
    assert json.loads(attrs["tenant_id"]["StringValue"]) == ["t0002", "t0001"]
    assert attrs["notification_id"]["StringValue"] == "n1"
    assert len(attrs) <= 10  # SQS accepts at most 10 message attributes


def test_envelope_is_sns_message_structure_json() -> None:
    m = render.message(incident(), "new", CTX, "n1")
    env = json.loads(m.envelope)
    assert env["default"] == m.text
    assert json.loads(env["sqs"]) == m.body == json.loads(env["lambda"])


def test_ocsf_detection_finding() -> None:
    body = render.message(incident(severity="critical"), "new", CTX, "n1").body
    assert (body["class_uid"], body["category_uid"], body["type_uid"]) == (2004, 2, 200401)
    assert (body["severity_id"], body["severity"], body["activity_id"]) == (5, "Critical", 1)
    assert body["finding_info"]["analytic"]["uid"] == "cross_tenant_access"
    assert [e["uid"] for e in body["finding_info"]["related_events"]] == ["e1", "e2", "e3"]
    assert body["metadata"]["product"]["name"] == "tenantwatch"
    assert body["metadata"]["version"].startswith("1.")
    assert isinstance(body["time"], int) and body["count"] == 3
    assert {r["uid"] for r in body["resources"]} == {"t0001", "t0002"}
    update = render.message(incident(), "update", CTX, "n2").body
    assert (update["activity_id"], update["type_uid"]) == (2, 200402)


def test_a_300_kb_evidence_blob_is_cut_to_fit_256_kb() -> None:
    blob = {
        "event_ids": [f"evt-{i:06d}" for i in range(10_000)],
        "top_actions": [["GetObject" * 50, 10]] * 200,
        "details": "A" * 300_000,
    }
    inc = incident(evidence=json.dumps(blob), tenants=[f"t{i:04d}" for i in range(2000)])
    m = render.message(inc, "new", CTX, "n1")
    assert m.truncated
    assert m.size_bytes <= render.MAX_MESSAGE_BYTES < 256 * 1024
    assert len(m.envelope.encode()) + len(m.subject) < 256 * 1024
    assert "evidence shortened" in m.text
    assert m.body["unmapped"]["tenantwatch"]["evidence_truncated"] is True
    assert len(json.loads(m.attributes["tenant_id"]["StringValue"])) == render.MAX_TENANT_ATTRIBUTE


def test_small_evidence_is_not_cut() -> None:
    m = render.message(incident(), "new", CTX, "n1")
    assert not m.truncated and "evidence shortened" not in m.text


def test_digest_lists_updated_incidents() -> None:
    a = dataclasses.replace(incident(), status="updated", revision=2)
    b = dataclasses.replace(incident(severity="critical", dedup_key="k2"), status="updated")
    m = render.digest([a, b], CTX, "d1")
    assert m.kind == "digest" and m.attributes["severity"]["StringValue"] == "critical"
    assert len(m.subject) < 100 and a.incident_id in m.text and b.incident_id in m.text
    assert isinstance(m.body, list) and len(m.body) == 2
    assert [b["finding_info"]["uid"] for b in m.body] == [a.incident_id, b.incident_id]
