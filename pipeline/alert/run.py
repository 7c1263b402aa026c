"""The alert stage: findings in the lake -> incidents, snapshots, notifications, metrics.

Order matters for crash safety; each step is idempotent, so a run that dies anywhere is re-run
to the same result:

1. fold the findings into incidents, one per attacker's story (pure, ``incidents.group``);
2. snapshot each incident that has none, and add a part to each whose story grew (same
   evidence -> same files, never overwritten);
   then contain each incident that opens as ``[containment] auto`` asks (``pipeline.containment``:
   an entry per incident and subject, written once however often this runs; before the pages, as
   an entry takes effect within the authorizer's cache period and a page waits for a person);
3. write the outbox rows for the messages those changes call for (a row that exists is kept):
   a page when an incident opens, an escalation page when its severity rises above what it
   paged with, otherwise an update or the digest;
4. write the incidents' new state, with the severity paged (after 3: a stored incident always
   has its outbox row, and a re-run finds the same rows to write);
5. send the outbox (``delivery``: at most once, failures retried next run), once per channel
   configured, each over its own rows;
6. metrics (failures spooled, never fatal).

Whoever calls ``run_alert`` holds the lake's lease (``pipeline.lease``): two runs alerting at
once would both send what is pending. The pipeline's health metrics are not sent here but once
per run by the caller (``pipeline.health``): a run can alert many windows.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pyarrow.compute as pc

from pipeline import schema
from pipeline.alert import delivery, incidents, metrics, render, snapshot, store
from pipeline.alert.entities import Egress
from pipeline.alert.incidents import Incident
from pipeline.config import AlertingConfig, Config
from pipeline.lake import FINDINGS, Lake


@dataclass(frozen=True)
class Alerted:
    """What ``run_alert`` hands back (the orchestration reads it as
    ``pipeline.runs.AlertResult``)."""

    summary: dict[str, Any]  # JSON-able
    # Outbox rows the ``sns`` or ``local`` channel sent in this run (subject, text, ...): what
    # people were sent; the other channels' are counted in the summary.
    sent: list[dict[str, Any]]
    incidents: list[Incident]  # the incidents changed in this run


# The kinds of notification that page someone; ``update`` and ``digest`` inform (a pager's
# subscription filters on the ``kind`` attribute).
PAGES = ("new", "escalation")


def notification_id(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def _detector_info() -> tuple[dict[str, timedelta], dict[str, str]]:
    import detectors

    periods, runbooks = {}, {}
    for det_id in detectors.REGISTRY:
        try:
            cls = detectors.load(det_id)
        except Exception:  # noqa: S112 - a broken detector module must not stop alerting
            continue
        period = getattr(cls, "dedup_period", None)
        if isinstance(period, timedelta) and period > timedelta(0):
            periods[det_id] = period
        runbooks[det_id] = cls.runbook()
    return periods, runbooks


def read_findings(lake: Lake, since: datetime | None) -> list[dict[str, Any]]:
    # Whole files: ``detect`` may be rewriting one of them (store.read_table says why). A
    # window's findings are in the folder of its first day: with ``since``, the days from its.
    if since is None:
        table = store.read_folder(lake, FINDINGS, schema.FINDINGS)
    else:
        table = store.read_days(lake, FINDINGS, since, schema.FINDINGS)
        table = table.filter(pc.field("window_start") >= since)
    # A suppressed finding stays in the lake for the record; it never becomes part of a page.
    table = table.filter(pc.field("suppressed_by").is_null())
    return [r for r in table.to_pylist() if r["severity"] in schema.SEVERITIES]


def _snapshots(
    lake: Lake, cfg: Config, todo: list[Incident], errors: list[str]
) -> dict[str, Incident]:
    a = cfg.alerting
    margin = timedelta(minutes=a.snapshot_margin_minutes)
    root = snapshot.default_root(lake, a.snapshot_uri)
    out: dict[str, Incident] = {}
    if not todo:
        return out
    snap_store = snapshot.open_store(
        root, a.region, (a.snapshot_lock_mode, a.snapshot_retention_days)
    )
    for inc in todo:
        sql = render.evidence_query(inc, margin).sql(a.athena_table)
        previous = (
            (inc.snapshot_uri, inc.snapshot_sha256)
            if inc.snapshot_uri and inc.snapshot_sha256
            else None
        )
        try:
            w = snapshot.take(
                lake, snap_store, inc, margin, a.snapshot_max_events, sql, previous=previous
            )
        except Exception as exc:
            errors.append(f"{inc.incident_id}: {type(exc).__name__}: {exc}"[:300])
            continue
        out[inc.incident_id] = dataclasses.replace(
            inc,
            snapshot_uri=w.manifest_uri,
            snapshot_sha256=w.sha256,
            snapshot_revision=inc.revision,
        )
    return out


def _needs_snapshot(inc: Incident, changed: bool) -> bool:
    """No snapshot yet, or the story grew since its latest part (a later signal adds a part).
    An incident stored before parts were counted has ``snapshot_revision`` null: its snapshot
    covers it until the story changes."""
    if not inc.snapshot_uri:
        return True
    if inc.snapshot_revision is None:
        return changed and inc.status == "updated"
    return inc.snapshot_revision < inc.revision


def _outbox_rows(
    lake: Lake,
    cfg: Config,
    changed: Sequence[Incident],
    runbooks: Mapping[str, str],
    channels: Sequence[str],
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """New outbox rows for what ``changed`` calls for (none for what already has a row), and
    the severity each incident has now paged with (saved with its state).

    Each notification gets a row per channel in ``channels`` (``channel_names``: the ``sns`` or
    ``local`` one first), under that channel's id (``channel_id``). What a notification is
    (a first page, an escalation, an update) is decided by the first channel's rows, which are
    written last: a run that dies between the rows of one notification finds the first
    channel's row missing and makes the same notification again, for the channels still
    missing theirs. A channel configured later gets rows from the next notification on.

    Whether a rise in severity pages is judged against the severity the stored state says was
    paged: a run that dies after writing an escalation's row but before saving the state finds
    the same rise again, and the same notification id, so it neither pages twice nor takes its
    own escalation for an update. Incidents stored before that was kept fall back on the pages
    in the outbox."""
    a = cfg.alerting
    # The rows made for these incidents: each was made for a time between an incident's first
    # and its latest activity (``store.new_row``'s day), so only those days are listed, and of
    # them only their pages are read.
    existing: dict[str, str] = {}  # notification id -> path
    if changed:
        lo = min(min(i.window_start, i.first_seen or i.window_start) for i in changed)
        hi = max(max(i.window_end, i.last_seen or i.window_end) for i in changed)
        existing = store.outbox_names(lake, lo, hi)
    floor = incidents.RANK[a.notify_min_severity]
    margin = timedelta(minutes=a.snapshot_margin_minutes)

    def ctx(det: str) -> render.Context:
        return render.Context(runbooks.get(det, ""), lake.root, a.athena_table, margin)

    pages = [
        notification_id(i.incident_id, *kind)
        for i in changed
        for kind in [("new",), *(("escalation", s) for s in schema.SEVERITIES)]
    ]
    paged: dict[str, str] = {}  # incident id -> the worst severity it has paged with
    for row in store.read_rows(lake, [existing[n] for n in pages if n in existing]).values():
        if row["kind"] in PAGES and row["incident_id"]:
            cur = paged.get(row["incident_id"])
            paged[row["incident_id"]] = (
                row["severity"] if cur is None else incidents.worst(cur, row["severity"])
            )
    rows: list[dict[str, Any]] = []
    digest: list[Incident] = []
    now_paged: dict[str, str] = {}
    for inc in changed:
        if incidents.RANK[inc.severity] < floor:
            continue
        first = notification_id(inc.incident_id, "new")
        before = inc.paged_severity or paged.get(inc.incident_id)
        if first not in existing:
            # Also when an incident first crosses the bar through an update: its first page.
            nid, kind = first, "new"
            now_paged[inc.incident_id] = inc.severity
        elif before is not None and incidents.RANK[inc.severity] > incidents.RANK[before]:
            # A later signal made it worse: page again, once per severity it rises to.
            nid = notification_id(inc.incident_id, "escalation", inc.severity)
            kind = "escalation"
            now_paged[inc.incident_id] = inc.severity
            if all(channel_id(nid, c) in existing for c in channels):
                continue
        elif inc.status == "updated" and a.updates == "each":
            nid, kind = notification_id(inc.incident_id, "update", str(inc.revision)), "update"
            if all(channel_id(nid, c) in existing for c in channels):
                continue
        else:
            if inc.status == "updated" and a.updates == "digest":
                digest.append(inc)
            continue
        m = render.message(inc, kind, ctx(inc.detector), nid, previous=before)
        for c in _missing(nid, channels, existing):
            rows.append(_row(m, inc.incident_id, inc.detector, inc.severity, inc, c))
    if digest:
        key = sorted(f"{i.incident_id}:{i.revision}" for i in digest)
        nid = notification_id("digest", *key)
        if not all(channel_id(nid, c) in existing for c in channels):
            m = render.digest(digest, ctx(digest[0].detector), nid)
            worst = max(digest, key=lambda i: incidents.RANK[i.severity])
            dets = {i.detector for i in digest}
            det = dets.pop() if len(dets) == 1 else "multiple"
            for c in _missing(nid, channels, existing):
                rows.append(_row(m, None, det, worst.severity, worst, c))
    return rows, now_paged


def channel_names(a: AlertingConfig) -> list[str]:
    """The channels the configuration names: ``sns`` when a topic is set, else ``local``,
    then ``securityhub`` and ``eventbridge`` when set."""
    names = ["sns" if a.sns_topic_arn else "local"]
    if a.securityhub:
        names.append("securityhub")
    if a.eventbridge_bus:
        names.append("eventbridge")
    return names


def channel_id(nid: str, channel: str) -> str:
    """The outbox id of notification ``nid`` for ``channel``: ``nid`` itself for ``sns`` and
    ``local`` (one queue, as before other channels), a hash of both for any other."""
    return nid if channel in delivery.SHARED else notification_id(nid, channel)


def _missing(nid: str, channels: Sequence[str], existing: Mapping[str, str]) -> list[str]:
    """The channels in ``channels`` that lack their row of ``nid``, the first one last."""
    first, *rest = channels
    return [c for c in [*rest, first] if channel_id(nid, c) not in existing]


def _row(
    m: render.Message, incident_id: str | None, det: str, sev: str, inc: Incident, channel: str
) -> dict[str, Any]:
    return store.new_row(
        channel_id(m.notification_id, channel),
        incident_id,
        m.kind,
        det,
        sev,
        render.affected_tenants(inc),
        m.subject,
        m.text,
        m.envelope,
        m.attributes,
        m.size_bytes,
        m.truncated,
        channel,
        inc.last_seen or inc.window_end,
    )


def run_alert(
    lake_root: str,
    cfg: Config,
    *,
    since: datetime | None = None,
    resend: Sequence[str] = (),
    mark_sent: Sequence[str] = (),
    in_lambda: bool = False,
    progress: Callable[[int, int], None] | None = None,
    may_publish: Callable[[], bool] | None = None,
) -> Alerted:
    """Group findings into incidents and notify; see the module docstring.

    ``since`` limits the findings read to windows starting then or later (absorbed findings are
    skipped anyway, so it only saves reading); ``resend`` and ``mark_sent`` name ``in_doubt``
    notifications an engineer has checked: to send (they did not arrive) or to record as sent
    (they did). Any other id is an error, raised before anything is written. ``may_publish``:
    whether the caller still holds the lease, asked before each batch is sent.
    """
    started = time.perf_counter()
    lake = Lake(lake_root)
    a = cfg.alerting
    store.ensure_index(lake)
    delivery.check_resolutions(delivery.outbox_for(lake, resend, mark_sent), resend, mark_sent)
    periods, runbooks = _detector_info()
    findings = read_findings(lake, since)
    gap = timedelta(minutes=a.correlation_gap_minutes)
    # The incidents these findings can join or belong to, and those still owed a snapshot.
    existing = store.load_incidents(lake, since, gap)
    grouped = incidents.group(
        findings,
        existing,
        periods,
        timedelta(hours=a.dedup_period_hours),
        gap,
        Egress.of(a.shared_egress),
    )
    changed = {i.incident_id: i for i in grouped.changed}
    # Snapshot what has none or has grown since (new incidents, stories with new signals), and
    # older ones whose snapshot failed before.
    lacking = [i for i in changed.values() if _needs_snapshot(i, True)]
    lacking += [i for i in existing if i.incident_id not in changed and _needs_snapshot(i, False)]
    snap_errors: list[str] = []
    snapped = _snapshots(lake, cfg, lacking, snap_errors)
    changed.update({k: v for k, v in snapped.items() if k in changed})
    retried = [v for k, v in snapped.items() if k not in changed]
    contained = None
    if cfg.containment.auto:
        from pipeline import containment_auto

        opened = [i for i in changed.values() if i.status == "new"]
        contained = containment_auto.auto_contain(lake, cfg, opened)

    names = channel_names(a)
    channel_name = names[0]
    rows, now_paged = _outbox_rows(lake, cfg, list(changed.values()), runbooks, names)
    for row in rows:
        store.write_row(lake, row)
    for iid, sev in now_paged.items():
        changed[iid] = dataclasses.replace(changed[iid], paged_severity=sev)
    store.save_incidents(lake, [*changed.values(), *retried])

    # One delivery per channel, each over its own rows: the pager first.
    delivered = delivery.Delivered()
    by_channel: dict[str, dict[str, Any]] = {}
    people: list[dict[str, Any]] = []
    for channel in _channels(lake, a, names):
        got = delivery.deliver(
            lake, channel, resend, progress, mark_sent=mark_sent, may_publish=may_publish
        )
        if channel.name == channel_name:
            people = got.sent
        by_channel[channel.name] = got.as_dict()
        delivered.merge(got)

    new = [i for i in changed.values() if i.status == "new"]
    updated = [i for i in changed.values() if i.status == "updated"]
    summary: dict[str, Any] = {
        "lake": lake.root,
        "findings_read": len(findings),
        "findings_new": len(grouped.absorbed),
        "incidents_new": len(new),
        "incidents_updated": len(updated),
        "by_severity": _by_severity(new),
        "snapshots_written": len(snapped),
        "snapshot_errors": snap_errors[:5],
        "channel": channel_name,
        "channels": by_channel,
        "notifications_queued": len(rows),
        "pages_queued": sum(r["kind"] in PAGES for r in rows),
        "escalations_queued": sum(r["kind"] == "escalation" for r in rows),
        # Across the channels (``channels``: each one's).
        "notifications": delivered.as_dict(),
        # Every notification in doubt, not only this run's: reported until resolved.
        "in_doubt_ids": delivered.in_doubt,
    }
    if contained is not None:
        # Entries written, failures (each one line) and subjects a rule named but no authorizer
        # could match (a shared egress address, an AWS session).
        summary["containment"] = contained.as_dict()
    if a.cloudwatch_namespace:
        data = [
            *metrics.by_detector("Findings", grouped.absorbed),
            *metrics.by_detector("IncidentsNew", [dataclasses.asdict(i) for i in new]),
            *metrics.by_detector("IncidentsUpdated", [dataclasses.asdict(i) for i in updated]),
            metrics.Datum("NotificationsSent", len(delivered.sent), "Count"),
            metrics.Datum("NotificationsFailed", delivered.failed, "Count"),
            metrics.Datum("NotificationsInDoubt", len(delivered.in_doubt), "Count"),
        ]
        summary["metrics"] = metrics.send(lake, a.cloudwatch_namespace, data, a.region, in_lambda)
    summary["seconds"] = round(time.perf_counter() - started, 3)
    return Alerted(summary, people, list(changed.values()))


def _channels(lake: Lake, a: AlertingConfig, names: Sequence[str]) -> list[delivery.Channel]:
    out: list[delivery.Channel] = []
    for name in names:
        if name == "sns":
            from pipeline.alert.sns import SnsChannel

            out.append(SnsChannel(a.sns_topic_arn, a.region))
        elif name == "local":
            from pipeline.alert.local import LocalChannel

            out.append(LocalChannel(lake))
        elif name == "securityhub":
            from pipeline.alert.securityhub import SecurityHubChannel

            out.append(SecurityHubChannel(lake, a.securityhub_product_arn, a.region))
        elif name == "eventbridge":
            from pipeline.alert.eventbridge import EventBridgeChannel

            out.append(EventBridgeChannel(a.eventbridge_bus, a.eventbridge_source, a.region))
    return out


def _by_severity(incs: Sequence[Incident]) -> dict[str, int]:
    counts = {s: 0 for s in reversed(schema.SEVERITIES)}
    for i in incs:
        counts[i.severity] += 1
    return {k: v for k, v in counts.items() if v}
