"""Sending the outbox: every notification at most once, and every known failure retried.

The protocol, per batch of notifications (one ``Publish`` or ``PublishBatch`` call):

1. write each one's outbox row as ``publishing`` (attempts + 1): the intent, durable first;
2. call the channel;
3. write each one's outcome: ``sent`` (with the message id), or ``failed`` when the service
   answered with an error or could not be reached, i.e. when it certainly did not publish.

``failed`` rows are sent again by the next run. A row still ``publishing`` when a run starts means
a process died between 1 and 3: the message may or may not have gone out, and nothing can tell
(SNS standard topics have no idempotency key and no way to ask what was published). We choose
**at most once** for that window: the row becomes ``in_doubt``, is reported in the run summary,
the console and the ``NotificationsInDoubt`` metric, and is not re-sent automatically; the
incident itself is in the lake and in the snapshot either way, so it is not lost, and an engineer
can re-send it (``tenantwatch alert --resend <notification id>``). Paging someone twice for one
incident teaches them to ignore pages; one unsent page in a crash window is visible and rare.

Two honest limits. botocore's standard retries re-send a request after a read timeout or a 5xx
*within* one call, which can duplicate a message SNS did accept: each message carries
``notification_id`` as a message attribute so that subscribers can drop such repeats, and a FIFO
topic (``.fifo``) gets it as ``MessageDeduplicationId`` so that SNS drops them itself. And runs must
not overlap (the scheduler runs one at a time): two concurrent runs could both send a row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pipeline.alert import store
from pipeline.lake import Lake

SENDABLE = ("pending", "failed")


@dataclass(frozen=True)
class Outcome:
    state: str  # sent | failed | in_doubt
    message_id: str | None = None
    error: str | None = None


class Channel(Protocol):
    name: str

    def batches(self, rows: Sequence[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]: ...

    def send(self, rows: Sequence[dict[str, Any]]) -> list[Outcome]: ...


@dataclass
class Delivered:
    sent: list[dict[str, Any]] = field(default_factory=list)  # full rows, sent in this run
    failed: int = 0
    in_doubt: list[str] = field(default_factory=list)  # notification ids found or left in doubt
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": len(self.sent),
            "failed": self.failed,
            "in_doubt": len(self.in_doubt),
            "errors": self.errors[:5],
        }


def deliver(
    lake: Lake,
    channel: Channel,
    resend: Sequence[str] = (),
    on_progress: Callable[[int, int], None] | None = None,
) -> Delivered:
    """Send every sendable outbox row through ``channel``; see the module docstring."""
    out = Delivered()
    index = store.load_outbox(lake)
    todo: list[dict[str, Any]] = []
    for nid, row in sorted(index.items()):
        if row["state"] == "publishing":  # a run died mid-publish: at most once, so stop here
            full = store.read_row(lake, row["_path"])
            full.update(state="in_doubt", last_error="interrupted between publish and record")
            store.write_row(lake, full)
            out.in_doubt.append(nid)
        elif row["state"] in SENDABLE or (nid in resend and row["state"] == "in_doubt"):
            todo.append(store.read_row(lake, row["_path"]))
    done = 0
    for batch in channel.batches(todo):
        for row in batch:  # 1. the intent, before anything leaves the process
            row.update(state="publishing", attempts=row["attempts"] + 1, channel=channel.name)
            store.write_row(lake, row)
        outcomes = channel.send(batch)  # 2.
        for row, res in zip(batch, outcomes, strict=True):  # 3.
            row.update(state=res.state, message_id=res.message_id, last_error=res.error)
            store.write_row(lake, row)
            if res.state == "sent":
                out.sent.append(row)
            elif res.state == "in_doubt":
                out.in_doubt.append(row["notification_id"])
            else:
                out.failed += 1
                if res.error:
                    out.errors.append(res.error)
        done += len(batch)
        if on_progress:
            on_progress(done, len(todo))
    return out
