"""The lake's layout: every folder and file name of the lake, as paths relative to its root
(``pipeline.lake`` describes the layout in its docstring and names these for its callers)."""

from __future__ import annotations

import posixpath
import re

# --- the layout (see the module docstring) -------------------------------------------------------
EVENTS = "events"
QUARANTINE = "quarantine"
FINDINGS = "findings"
INCIDENT_STATE = "incidents/state"
OUTBOX = "incidents/outbox"
NOTIFICATIONS = "incidents/notifications"
# Written by ``tenantwatch incident close``: one file per verdict and per suppression, each
# written once under a name of its own, so closes made at the same time never overwrite each
# other.
VERDICTS = "incidents/verdicts"
# Written by ``tenantwatch contain`` and by automatic containment: one file per action (contain
# or lift), like verdicts: actions on an incident, kept with it (and expired with it).
CONTAINMENT = "incidents/containment"
SUPPRESSIONS = "suppressions"
SNAPSHOTS = "snapshots"
STATE = "_state"
STATE_INGESTED = f"{STATE}/ingested"
STATE_SESSIONS = f"{STATE}/sessions"
STATE_DIGESTS = f"{STATE}/digests"
STATE_LOGS = f"{STATE}/logs"
STATE_METRICS = f"{STATE}/metrics"
# Indexes that let a run read only the incidents and notifications that can still change.
STATE_OPEN_INCIDENTS = f"{STATE}/incidents"
SNAPSHOT_DUE = f"{STATE_OPEN_INCIDENTS}/snapshot-due"
STATE_UNSENT = f"{STATE}/unsent"
STATE_INDEXED = f"{STATE}/indexed"
# Empty markers, one per detection window that events delivered after it was detected fall in:
# ``<window start, YYYYmmddTHHMM>``, removed once the window has been detected again.
STATE_LATE = f"{STATE}/late"
WATERMARK = f"{STATE}/watermark/scheduled.parquet"
# The scheduled run's hand-offs of large windows to the AWS Glue job (``pipeline.runs.handoff``):
# one JSON document per window, ``<window start, YYYYmmddTHHMM>.json``, kept until it is done.
STATE_HANDOFF = f"{STATE}/handoff"
# The Glue job's completion records (``pipeline.glue_job``): one JSON document per window it
# detected and alerted, ``<start>-<end>.json`` (YYYYmmddTHHMM), rewritten by a later run of it.
STATE_JOBS = f"{STATE}/jobs"
LEASE = f"{STATE}/lease.json"
LEASE_LOCK = f"{STATE}/lease.lock"


# A file that holds the rows of other files of its folder, and the footer key naming them.
COMPACTED = "compacted-"
REPLACES = b"tenantwatch.replaces"


def event_partition(source: str, date: str, hour: str) -> str:
    return f"{event_day(source, date)}/hour={hour}"


# An event hour's folder (``event_partition``); a day's compacted files lie directly in its
# day's folder (``event_day``), beside the hours' folders.
_HOUR_FOLDER = re.compile(
    rf"^{EVENTS}/source=[^/]+/date=(?P<date>\d{{4}}-\d{{2}}-\d{{2}})/hour=(?P<hour>\d{{2}})$"
)


_DATE_FOLDER = re.compile(r"^date=\d{4}-\d{2}-\d{2}$")
_FILE_HOUR = re.compile(r"/hour=(\d\d)/")


def file_hour(rel: str) -> str | None:
    """The hour (HH) of an event file in an hour's folder; None for a day's compacted file."""
    m = _FILE_HOUR.search(f"/{rel}")
    return m.group(1) if m else None


def event_day(source: str, date: str) -> str:
    """The folder of one source's events of one day (``date``: YYYY-MM-DD)."""
    return f"{EVENTS}/source={source}/date={date}"


def quarantine_file(batch_id: str) -> str:
    return f"{QUARANTINE}/part-{batch_id}.parquet"


def state_file(folder: str, name: str) -> str:
    """A Parquet file of one of the ``STATE_*`` folders (``name``: a batch id or a hash)."""
    return f"{folder}/{name}.parquet"


def ingested_file(partition: str, batch_id: str) -> str:
    """A batch's records of its inputs of one partition (``date=YYYY-MM-DD`` or
    ``prefix=<hash>``: ``pipeline.ingest.seen.ingested_partition``)."""
    return f"{STATE_INGESTED}/{partition}/{batch_id}.parquet"


def sessions_day(date: str) -> str:
    """The folder of the sessions that started on ``date`` (YYYY-MM-DD)."""
    return f"{STATE_SESSIONS}/date={date}"


def sessions_file(date: str, batch_id: str) -> str:
    return f"{sessions_day(date)}/{batch_id}.parquet"


def open_incident_marker(active: str, period: str, incident_id: str) -> str:
    """Marks an incident (stored under ``incident_file(period, incident_id)``) as active up to
    the day ``active``."""
    return f"{STATE_OPEN_INCIDENTS}/date={active}/{period}.{incident_id}"


def snapshot_due_marker(period: str, incident_id: str) -> str:
    return f"{SNAPSHOT_DUE}/{period}.{incident_id}"


def unsent_marker(date: str, notification_id: str) -> str:
    """Marks the outbox row ``outbox_file(date, notification_id)`` as perhaps not sent yet."""
    return f"{STATE_UNSENT}/{date}.{notification_id}"


def marked(name: str) -> tuple[str, str]:
    """(day, id) from a marker's file name (``<YYYY-MM-DD>.<id>``)."""
    day, _, ident = posixpath.basename(name).partition(".")
    return day, ident


def findings_file(date: str, name: str) -> str:
    """One detector's findings for one window, in the folder of the window's first day."""
    return f"{FINDINGS}/date={date}/part-{name}.parquet"


def incident_file(date: str, incident_id: str) -> str:
    return f"{INCIDENT_STATE}/date={date}/{incident_id}.parquet"


def outbox_file(date: str, notification_id: str) -> str:
    return f"{OUTBOX}/date={date}/{notification_id}.parquet"


def notifications_file(date: str, name: str) -> str:
    return f"{NOTIFICATIONS}/date={date}/{name}.jsonl"


def verdict_file(date: str, verdict_id: str) -> str:
    return f"{VERDICTS}/date={date}/{verdict_id}.parquet"


def containment_file(date: str, action_id: str) -> str:
    return f"{CONTAINMENT}/date={date}/{action_id}.parquet"


def suppression_file(suppression_id: str) -> str:
    return f"{SUPPRESSIONS}/{suppression_id}.json"


def handoff_file(start: str) -> str:
    """A window's hand-off to the Glue job (``start``: the window's start, YYYYmmddTHHMM)."""
    return f"{STATE_HANDOFF}/{start}.json"


def job_file(start: str, end: str) -> str:
    """The Glue job's completion record of the window [start, end) (YYYYmmddTHHMM each)."""
    return f"{STATE_JOBS}/{start}-{end}.json"


def metrics_spool_file(name: str) -> str:
    return f"{STATE_METRICS}/{name}.json"
