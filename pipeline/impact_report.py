"""The impact assessment (``pipeline.impact``) in words: the analyst's report in Markdown and
the small formatting helpers it shares with ``tenantwatch impact`` and the customer notices."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from pipeline.impact import Impact, Provenance


def md(value: object, max_len: int = 300) -> str:
    """A value from logs as Markdown table text: visible controls, no table or code breaks."""
    from pipeline.alert.sanitize import clean

    return clean(value, max_len).replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`")


def when(ts: datetime | None) -> str:
    return "-" if ts is None else ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def provenance_line(p: Provenance) -> str:
    """Which events were assessed, in one line."""
    if p.used == "lake":
        return f"the lake ({p.lake_rows} events; no usable snapshot)"
    state = "complete" if p.snapshot_complete else f"cut off at {p.snapshot_rows}"
    line = f"the snapshot ({p.snapshot_rows} events, {state})"
    if p.used == "snapshot+lake":
        line += f" and the lake ({p.lake_rows} more events)"
    return line + ("" if p.complete else "; INCOMPLETE: the counts are a lower bound")


def short(items: Sequence[str], n: int = 3) -> str:
    return ", ".join(items[:n]) + (f" +{len(items) - n}" if len(items) > n else "") or "-"


def markdown(impact: Impact) -> str:
    """The assessment for the analyst (every name shown): summary, tenants, objects."""
    p = impact.provenance
    lines = [
        f"# Impact of incident {impact.incident_id}",
        "",
        f"- Severity: {impact.severity} (revision {impact.revision}); detectors: "
        f"{', '.join(impact.detectors)}",
        f"- Events assessed: {impact.events}, from {when(impact.first)} to {when(impact.last)}",
        f"- On other tenants' data: {impact.cross_tenant_events}; on the actor's own tenant: "
        f"{impact.own_tenant_events}; without a target tenant: {impact.unattributed_events}",
        f"- Evidence: {md(provenance_line(p), 1000)}",
        *(f"  - {md(n, 1000)}" for n in p.notes),
        "",
        "## Tenants",
        "",
        "| tenant | flagged | events | objects | read | write | denied | other | failed "
        "| actors | first | last |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t in impact.tenants:
        lines.append(
            f"| {md(t.tenant)} | {'yes' if t.flagged else 'no'} | {t.events} | {t.objects} "
            f"| {t.read} | {t.write} | {t.denied} | {t.other} | {t.failed} "
            f"| {md(short(t.actors))} | {when(t.first)} | {when(t.last)} |"
        )
    lines += [
        "",
        "## Objects",
        "",
        "| tenant | resource | data | events | read | write | denied | other | failed "
        "| actions | actors | first | last |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in impact.resources:
        lines.append(
            f"| {md(r.tenant)} | {md(r.resource or '-', 1000)} | {md(r.data_class or r.kind)} "
            f"| {r.events} | {r.read} | {r.write} | {r.denied} | {r.other} | {r.failed} "
            f"| {md(short(r.actions, 2))} | {md(short(r.actors, 2))} "
            f"| {when(r.first)} | {when(r.last)} |"
        )
    return "\n".join(lines) + "\n"
