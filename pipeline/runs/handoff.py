"""The scheduled run's hand-off of large windows to the AWS Glue job (``pipeline.glue_job``).

A Lambda function has at most 10 GB of memory and 15 minutes. A window whose events pass
``RunSettings.spark_handoff_bytes`` (``TENANTWATCH_RUN_SPARK_HANDOFF_BYTES``; 0, the default:
never) is not detected by the function: the scheduled run starts a run of the Glue job for it
(``glue:StartJobRun``, the window in the run's arguments), which detects and alerts that one
window as the function would have (``pipeline.glue_job``), and the watermark waits for it.

**What is measured.** The bytes of the window's event files, as the lake's listing gives them
(``window_bytes``): no file is read. A file of an hour counts for the part of its hour inside the
window, a compacted day's file for the part of its day. The baseline is left out on purpose: it
is ``lookback`` of history before the window, the same span for every window, read a few columns
at a time and dictionary-encoded, so its size changes slowly and alike for all windows, while a
window's own events (every row read) are what jump: a burst, a daily log export, a backfill. A
baseline too large for the function would be so for every window; that is a deployment for the
Glue job (or a shorter ``lookback``), not a window to hand off.

**Exactly one run per attempt.** The run holds the lake's lease (ticks never overlap in this
code). Before it asks Glue for a run it writes the window's record,
``_state/handoff/<window start>.json``, with the attempt and the run id it gives the job
(``--run-id``); once Glue answers, it writes the record again with Glue's ``JobRunId``. A tick
that died between the two finds the record without a ``JobRunId`` and looks for the run among
the job's runs by its ``--run-id`` before starting one (``glue:GetJobRuns``). The start itself
goes through a client that never retries (``pipeline.aws.publisher``): botocore repeating a start
whose answer was lost would start two runs.

**Each later tick** asks Glue for the run's state (``glue:GetJobRun``):

- starting, waiting (queued), running or stopping: the window waits, and the windows after it
  (the watermark is one checkpoint); ingestion goes on;
- ``SUCCEEDED``, with the job's completion record of the window naming the attempt's run id
  (``_state/jobs/``): the window is done; the record is removed and the watermark moves on;
- anything else (``FAILED``, ``TIMEOUT``, ``STOPPED``, ``ERROR``, a run Glue no longer knows, or
  one that succeeded without its completion record): the attempt is over, and another run is
  started, up to ``RunSettings.spark_attempts`` runs in all. After the last, every tick reports the
  window in ``Report.failed`` and logs an ERROR naming the job run, and nothing after the window
  is detected until someone acts: delete the record (the next tick starts again, with fresh
  attempts), or run the job for the window by hand (a completion record written after the last
  attempt started is taken as the window done).

The same holds for a window detected again because events were delivered after its detection
(``_state/late``): one over the bound is handed off too. Events that arrive for a window while it
is on Glue are marked as late for it, and detected again once the watermark has passed it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from pipeline import aws

if TYPE_CHECKING:
    from pipeline.lake import Lake
    from pipeline.runs.unattended import Report, RunSettings

log = logging.getLogger("tenantwatch.handoff")

# What ``Handoffs.step`` says of a window: detect it here; wait for its job run; its job run
# did it; its job runs failed, every attempt.
Step = Literal["local", "waiting", "done", "failed"]
# Glue job run states in which the run may still succeed (WAITING: queued behind other runs).
UNDER_WAY = frozenset({"STARTING", "RUNNING", "STOPPING", "WAITING"})
SUCCEEDED = "SUCCEEDED"
GONE = "NOT_FOUND"  # the run is not among the job's runs (Glue keeps them for 90 days)
NAME = "%Y%m%dT%H%M"  # a window's start (and end) in the names under _state/
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


def window_bytes(lake: Lake, start: datetime, end: datetime) -> int:
    """The bytes of the event files of [start, end), from the listing of each day's folders:
    an hour's file counts for the share of its hour inside the window, a compacted day's file
    for the share of its day."""
    from pipeline import schema
    from pipeline.lake import event_day, file_hour

    total = 0.0
    day = start.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    while day < end:
        for source in schema.SOURCES:
            for rel in lake.files(event_day(source, f"{day:%Y-%m-%d}")):
                hour = file_hour(rel)
                lo = day if hour is None else day + int(hour) * HOUR
                span = DAY if hour is None else HOUR
                inside = min(lo + span, end) - max(lo, start)
                if inside > timedelta(0):
                    total += (lake.size(rel) or 0) * (inside / span)
        day += DAY
    return round(total)


@dataclass
class Record:
    """A window's hand-off, as ``_state/handoff/<start>.json`` holds it."""

    window_start: str  # ISO 8601
    window_end: str
    job_name: str
    attempt: int  # 1, 2, ... up to RunSettings.spark_attempts
    run_id: str  # the attempt's --run-id, which the job writes in its completion record
    started_at: str  # when the attempt was started (ISO 8601)
    window_bytes: int
    job_run_id: str = ""  # Glue's; empty until Glue has answered the start
    earlier: list[dict[str, str]] = field(default_factory=list)  # attempts over: id, state, error

    @classmethod
    def of(cls, doc: dict[str, Any]) -> Record:
        return cls(**{f.name: doc[f.name] for f in fields(cls) if f.name in doc})

    @property
    def window(self) -> str:
        return f"{self.window_start}/{self.window_end}"


class Handoffs:
    """The hand-offs of one scheduled run, over the lake at ``lake_root`` (``settings``:
    the bound, the job and the attempts; ``run_id``: the scheduled run's)."""

    def __init__(self, lake_root: str, settings: RunSettings, run_id: str) -> None:
        from pipeline.lake import Lake

        self.lake = Lake(lake_root)
        self.bound = settings.spark_handoff_bytes
        self.job = settings.spark_job
        self.attempts = settings.spark_attempts
        self.run_id = run_id

    # --- the records ----------------------------------------------------------------------------

    def pending(self) -> set[datetime]:
        """The starts of the windows handed off and not done (one listing of the folder)."""
        import pyarrow.fs as pafs

        from pipeline.lake import STATE_HANDOFF

        sel = pafs.FileSelector(self.lake.path(STATE_HANDOFF), allow_not_found=True)
        out = set()
        for info in self.lake.fs.get_file_info(sel):
            try:
                out.add(datetime.strptime(info.base_name, f"{NAME}.json").replace(tzinfo=UTC))
            except ValueError:
                continue  # not a record (a temporary of a write that died)
        return out

    def _read(self, start: datetime) -> Record | None:
        from pipeline.alert import store
        from pipeline.lake import handoff_file

        rel = handoff_file(f"{start:{NAME}}")
        if not self.lake.exists(rel):
            return None
        return Record.of(json.loads(store.read_bytes(self.lake, rel)))

    def _write(self, rec: Record, start: datetime) -> None:
        from pipeline.alert import store
        from pipeline.lake import handoff_file

        body = json.dumps(asdict(rec), indent=1).encode()
        store.write_bytes(self.lake, handoff_file(f"{start:{NAME}}"), body)

    def _completed(self, start: datetime, end: datetime) -> dict[str, Any] | None:
        """The Glue job's completion record of the window, if there is one."""
        from pipeline.alert import store
        from pipeline.lake import job_file

        rel = job_file(f"{start:{NAME}}", f"{end:{NAME}}")
        if not self.lake.exists(rel):
            return None
        doc: dict[str, Any] = json.loads(store.read_bytes(self.lake, rel))
        return doc

    # --- the job --------------------------------------------------------------------------------

    def _new_attempt(self, rec: Record, start: datetime) -> None:
        digest = hashlib.sha256(self.run_id.encode()).hexdigest()[:8]
        rec.run_id = f"handoff-{start:{NAME}}-{rec.attempt}-{digest}"
        rec.started_at = datetime.now(UTC).isoformat()
        rec.job_run_id = ""

    def _start(self, rec: Record, start: datetime) -> str:
        """Start the attempt's job run: recorded before (so that a tick that dies in between
        finds it by its run id) and after (with Glue's id). What to report of it."""
        self._write(rec, start)
        arguments = {
            "--window-start": rec.window_start,
            "--window-end": rec.window_end,
            "--run-id": rec.run_id,
        }
        try:
            got = aws.publisher("glue").start_job_run(JobName=rec.job_name, Arguments=arguments)
        except Exception as exc:
            if aws.error_code(exc) == "ConcurrentRunsExceededException":
                return "not started: the job's concurrent runs"  # the next tick starts it
            raise
        rec.job_run_id = str(got["JobRunId"])
        self._write(rec, start)
        return "started"

    def _find(self, rec: Record) -> str:
        """The id of the run started with the attempt's run id, if Glue has one."""
        pages = aws.client("glue").get_paginator("get_job_runs")
        for page in pages.paginate(JobName=rec.job_name, PaginationConfig={"MaxItems": 200}):
            for run in page.get("JobRuns", []):
                if (run.get("Arguments") or {}).get("--run-id") == rec.run_id:
                    return str(run["Id"])
        return ""

    def _state(self, rec: Record) -> tuple[str, str]:
        """The job run's state and error message."""
        try:
            run = aws.client("glue").get_job_run(JobName=rec.job_name, RunId=rec.job_run_id)
        except Exception as exc:
            if aws.error_code(exc) == "EntityNotFoundException":
                return GONE, f"Glue has no job run {rec.job_run_id}"
            raise
        return str(run["JobRun"]["JobRunState"]), str(run["JobRun"].get("ErrorMessage") or "")

    # --- a window -------------------------------------------------------------------------------

    def step(self, window: tuple[datetime, datetime], report: Report) -> Step:
        """What becomes of ``window`` at this tick (see the module docstring); what happened is
        added to ``report.handoff`` (and the window to ``report.failed`` when it failed)."""
        start, end = window
        rec = self._read(start)
        if rec is None:
            size = window_bytes(self.lake, start, end)
            if size < self.bound:
                return "local"
            rec = Record(start.isoformat(), end.isoformat(), self.job, 1, "", "", size)
            self._new_attempt(rec, start)
            return self._note(report, rec, self._start(rec, start), "waiting")
        if not rec.job_run_id:  # the start was not confirmed: a run may exist all the same
            rec.job_run_id = self._find(rec)
            if not rec.job_run_id:
                return self._note(report, rec, self._start(rec, start), "waiting")
            self._write(rec, start)
        state, error = self._state(rec)
        if state in UNDER_WAY:
            return self._note(report, rec, state, "waiting")
        done = self._completed(start, end)
        if state == SUCCEEDED and done is not None and done.get("run_id") == rec.run_id:
            return self._finish(report, rec, start, state)
        if state == SUCCEEDED:
            error = "the job run succeeded without the window's completion record"
        if rec.attempt < self.attempts:
            log.warning(
                "window %s: job run %s of %s ended %s (%s); starting attempt %d of %d",
                rec.window, rec.job_run_id, rec.job_name, state, error[:300], rec.attempt + 1,
                self.attempts,
            )  # fmt: skip
            rec.earlier.append({"job_run_id": rec.job_run_id, "state": state, "error": error})
            rec.attempt += 1
            self._new_attempt(rec, start)
            return self._note(report, rec, self._start(rec, start), "waiting")
        if done is not None and str(done.get("finished_at", "")) > rec.started_at:
            return self._finish(report, rec, start, "completed by another run")
        log.error(
            "window %s failed on Glue: job run %s of %s ended %s (%s), attempt %d of %d; "
            "the watermark waits: delete %s to start again, or run the job for the window",
            rec.window, rec.job_run_id, rec.job_name, state, error[:300], rec.attempt,
            self.attempts, f"_state/handoff/{start:{NAME}}.json",
        )  # fmt: skip
        report.failed.append(rec.window)
        return self._note(report, rec, state, "failed", error)

    def _finish(self, report: Report, rec: Record, start: datetime, state: str) -> Step:
        from pipeline import lake_io
        from pipeline.lake import handoff_file

        lake_io.delete(self.lake, handoff_file(f"{start:{NAME}}"))
        return self._note(report, rec, state, "done")

    @staticmethod
    def _note(report: Report, rec: Record, state: str, step: Step, error: str = "") -> Step:
        entry = {
            "window": rec.window,
            "step": step,
            "state": state,
            "job_run_id": rec.job_run_id,
            "attempt": rec.attempt,
            "bytes": rec.window_bytes,
        }
        if error:
            entry["error"] = error[:300]
        report.handoff.append(entry)
        return step
