"""Suppressions: findings a SaaS has decided not to be paged for, for a limited time.

Two places hold them: ``[[suppressions]]`` in the configuration, and the lake's
``suppressions/`` folder, where ``tenantwatch incident close --suppress`` writes one per verdict
(one file each, under its own id: two closes never overwrite each other). ``detect`` reads both
at start, sets a finding's ``suppressed_by`` to the id of the first one that matches, and still
writes the finding: nothing is dropped, and alerting leaves it out of every page.

A suppression past its ``expires`` no longer applies; ``detect`` says so at start, once per
suppression, so that it is renewed or deleted rather than forgotten.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
import orjson
import pyarrow as pa

from pipeline.config import Config
from pipeline.config_suppressions import SUPPRESSION_PATTERNS, Suppression, check_suppression
from pipeline.errors import ConfigError
from pipeline.lake import SUPPRESSIONS, Lake, suppression_file


@dataclass(frozen=True)
class InForce:
    """The suppressions ``detect`` applies, and the expired ones it reports instead."""

    active: tuple[Suppression, ...]
    expired: tuple[tuple[Suppression, str], ...]  # each with where it is kept

    def warnings(self) -> list[str]:
        return [
            f"suppression {s.id} ({where}) expired on {s.expires.isoformat()}: it no longer "
            f"applies (owner {s.owner}); renew its expires or delete it"
            for s, where in self.expired
        ]


def stored_path(suppression_id: str) -> str:
    return suppression_file(suppression_id)


def write(lake: Lake, sup: Suppression) -> str:
    """Keep ``sup`` in the lake (checked as the configuration's are); its URI."""
    from pipeline.alert import store

    check_suppression(sup, f"suppression {sup.id}")
    rel = stored_path(sup.id)
    store.write_bytes(lake, rel, msgspec.json.encode(sup))
    return lake.uri(rel)


def read_stored(lake: Lake) -> list[tuple[Suppression, str]]:
    """The lake's suppressions, each with its URI, in id order."""
    from pipeline.alert import store

    out = []
    for rel in lake.files(SUPPRESSIONS, suffix=".json"):
        where = lake.uri(rel)
        try:
            sup = msgspec.json.decode(store.read_bytes(lake, rel), type=Suppression)
        except msgspec.DecodeError as exc:
            raise ConfigError(f"{where}: not a valid suppression ({exc})") from None
        check_suppression(sup, where)
        out.append((sup, where))
    return out


def in_force(cfg: Config, lake: Lake, now: datetime | None = None) -> InForce:
    """The configuration's suppressions, then the lake's, split by ``now`` into those that
    apply and those that expired."""
    now = now or datetime.now(UTC)
    every = [(s, "configuration") for s in cfg.suppressions] + read_stored(lake)
    active = tuple(s for s, _ in every if s.expires > now)
    expired = tuple((s, w) for s, w in every if s.expires <= now)
    return InForce(active, expired)


# --- matching (pure) -----------------------------------------------------------------------------


def _values(finding: Mapping[str, Any], key: str, evidence: Mapping[str, Any]) -> list[str]:
    """The finding's values a pattern named ``key`` must match, each of them."""
    if key == "actor":
        return [finding["actor"]] if finding.get("actor") else []
    if key == "tenant":
        tenants = [finding.get("actor_tenant"), *(finding.get("tenants") or ())]
        return sorted({t for t in tenants if t})
    top = evidence.get("source_ips" if key == "address" else "top_actions") or []
    return [str(pair[0]) for pair in top if pair]


def matches(sup: Suppression, finding: Mapping[str, Any]) -> bool:
    if sup.detector not in ("any", finding["detector"]):
        return False
    evidence: Mapping[str, Any] = {}
    if sup.address or sup.action:
        decoded = orjson.loads(finding.get("evidence") or "{}")
        evidence = decoded if isinstance(decoded, dict) else {}
    for key in SUPPRESSION_PATTERNS:
        pattern = getattr(sup, key)
        if not pattern:
            continue
        values = _values(finding, key, evidence)
        rx = re.compile(pattern)
        if not values or not all(rx.fullmatch(v) for v in values):
            return False
    return True


def first_match(sups: Sequence[Suppression], finding: Mapping[str, Any]) -> str | None:
    return next((s.id for s in sups if matches(s, finding)), None)


def mark(findings: pa.Table, sups: Sequence[Suppression]) -> pa.Table:
    """``findings`` with ``suppressed_by`` set where a suppression matches."""
    if not sups or not findings.num_rows:
        return findings
    ids = [first_match(sups, row) for row in findings.to_pylist()]
    at = findings.schema.get_field_index("suppressed_by")
    return findings.set_column(at, findings.schema.field(at), pa.array(ids, pa.string()))


def exact(values: Iterable[str]) -> str:
    """A pattern matching exactly these values (for a suppression made from an incident)."""
    return "|".join(re.escape(v) for v in sorted({v for v in values if v}))
