"""Sending the outbox: every notification at most once, and every known failure retried.

The protocol, per batch of notifications (one ``Publish`` or ``PublishBatch`` call):

1. write each one's outbox row as ``publishing`` (attempts + 1): the intent, durable first;
2. call the channel;
3. write each one's outcome: ``sent`` (with the message id); ``failed`` when the service
   answered with an error or could not be reached, i.e. when it certainly did not publish; or
   ``in_doubt`` when the call went out and no answer proves either way (a timeout, a connection
   that broke, a 5xx: see ``sns``).

``failed`` rows are sent again by the next run. A row still ``publishing`` when a run starts means
a process died between 1 and 3: the message may or may not have gone out. We choose **at most
once** for what cannot be known: such a row becomes ``in_doubt`` too, and an ``in_doubt`` row is
never re-sent automatically. Every run reports every ``in_doubt`` row until someone resolves it
(the summary, a warning on stderr, the ``NotificationsInDoubt`` metric and its alarm, exit code 1):
after checking whether it arrived, ``tenantwatch alert --resend ID`` sends it (it did not) and
``--mark-sent ID`` records it as sent (it did). The incident itself is in the lake and in its
snapshot either way. Paging someone twice for one incident teaches them to ignore pages; one
unsent page, visible until handled, is the smaller harm.

The exception is a channel that can repeat a message harmlessly for a while
(``Channel.retry_window``: an SNS FIFO topic drops a repeated deduplication id for five minutes).
There, a row found ``publishing`` whose one attempt is recent enough is simply sent again.

Several channels at once (SNS, Security Hub, EventBridge) each have outbox rows of their own, one
per notification, with their own id, state and attempts; ``deliver`` is called once per channel
and looks only at that channel's rows (``owns``), so an outage of one never holds back, fails or
repeats another's. Rows of ``sns`` and ``local`` are the exception: they are the same
notification ids, and a lake that moved from one to the other sends what it had queued through
the one it has now (as before there were other channels).

Runs must not overlap: two runs could both send a row. Every path that publishes holds the
lake's lease (``pipeline.lease.Lease``), and ``may_publish`` stops a run that lost it before its
next batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pipeline.alert import store
from pipeline.errors import TenantwatchError
from pipeline.lake import Lake

SENDABLE = ("pending", "failed")
# Channels whose rows are one queue: a run has one of them (``sns`` if a topic is set, else
# ``local``) and sends the rows of both through it. Any other channel sends its own rows only.
SHARED = ("sns", "local")


class NotificationNotInDoubt(TenantwatchError):
    """``--resend`` or ``--mark-sent`` named a notification that is unknown or not in doubt."""

    exit_code = 2


@dataclass(frozen=True)
class Outcome:
    state: str  # sent | failed | in_doubt
    message_id: str | None = None
    error: str | None = None


class Channel(Protocol):
    name: str
    # How long after a first attempt the service still drops a repeat of the same message
    # (None: it never does, so what may have been sent is never sent again automatically).
    retry_window: timedelta | None

    def batches(self, rows: Sequence[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]: ...

    def send(
        self, rows: Sequence[dict[str, Any]], retry_until: datetime | None = None
    ) -> list[Outcome]: ...


@dataclass
class Delivered:
    """What one ``deliver`` call did (``merge`` adds up those of several channels)."""

    sent: list[dict[str, Any]] = field(default_factory=list)  # full rows, sent in this run
    failed: int = 0
    in_doubt: list[str] = field(default_factory=list)  # every notification id in doubt now
    marked_sent: list[str] = field(default_factory=list)  # resolved by hand in this run
    errors: list[str] = field(default_factory=list)

    def merge(self, other: Delivered) -> None:
        self.sent += other.sent
        self.failed += other.failed
        self.in_doubt = sorted([*self.in_doubt, *other.in_doubt])
        self.marked_sent += other.marked_sent
        self.errors += other.errors

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": len(self.sent),
            "failed": self.failed,
            "in_doubt": len(self.in_doubt),
            "marked_sent": len(self.marked_sent),
            "errors": self.errors[:5],
        }


def check_resolutions(
    outbox: Mapping[str, Mapping[str, Any]], resend: Sequence[str], mark_sent: Sequence[str]
) -> None:
    """Raise unless every id given to ``--resend`` or ``--mark-sent`` is an ``in_doubt`` row
    (before anything is written: a typo must not pass for a check done)."""
    both = sorted(set(resend) & set(mark_sent))
    if both:
        raise NotificationNotInDoubt(
            f"notification {both[0]}: given to both --resend and --mark-sent"
        )
    for option, ids in (("--resend", resend), ("--mark-sent", mark_sent)):
        for nid in ids:
            row = outbox.get(nid)
            if row is None:
                raise NotificationNotInDoubt(f"{option} {nid}: no such notification in the outbox")
            if row["state"] != "in_doubt":
                raise NotificationNotInDoubt(
                    f"{option} {nid}: the notification is {row['state']}, not in doubt"
                )


def outbox_for(
    lake: Lake, resend: Sequence[str] = (), mark_sent: Sequence[str] = ()
) -> dict[str, dict[str, Any]]:
    """The outbox rows a delivery looks at: those not sent yet (``store.load_unsent``), or the
    whole outbox when ``--resend``/``--mark-sent`` name another (to say what it is)."""
    rows = store.load_unsent(lake)
    if any(nid not in rows for nid in (*resend, *mark_sent)):
        rows = store.load_outbox(lake)
    return rows


def owns(channel: str, row_channel: str) -> bool:
    """Whether the channel named ``channel`` sends an outbox row made for ``row_channel``."""
    if channel in SHARED and row_channel in SHARED:
        return True
    return channel == row_channel


def _may_repeat(channel: Channel, row: Mapping[str, Any], now: datetime) -> bool:
    """A row a dead run left ``publishing``: can it be sent again without a second page?"""
    window = channel.retry_window
    # One attempt only: its time is the row's last update. After more, an earlier attempt may
    # have gone out earlier than that.
    return (
        window is not None
        and row["channel"] == channel.name
        and row["attempts"] == 1
        and now - row["updated_at"] < window
    )


def deliver(
    lake: Lake,
    channel: Channel,
    resend: Sequence[str] = (),
    on_progress: Callable[[int, int], None] | None = None,
    *,
    mark_sent: Sequence[str] = (),
    may_publish: Callable[[], bool] | None = None,
) -> Delivered:
    """Send every sendable outbox row through ``channel``; see the module docstring."""
    out = Delivered()
    now = datetime.now(UTC)
    index = outbox_for(lake, resend, mark_sent)
    check_resolutions(index, resend, mark_sent)
    todo: list[dict[str, Any]] = []
    for nid, row in sorted(index.items()):
        if not owns(channel.name, row["channel"]):
            continue  # another channel's row: its own ``deliver`` call sends and reports it
        state = row["state"]
        if state == "sent" and row.get("_marked"):
            store.unmark(lake, row)  # marked by a run that died before it could unmark it
        elif state == "publishing":  # a run died mid-publish
            full = store.read_row(lake, row["_path"])
            if _may_repeat(channel, full, now):
                full["_first_attempt"] = full["updated_at"]
                todo.append(full)
                continue
            full.update(state="in_doubt", last_error="interrupted between publish and record")
            store.write_row(lake, full)
            out.in_doubt.append(nid)
        elif nid in mark_sent:
            full = store.read_row(lake, row["_path"])
            full.update(state="sent", last_error="marked sent by hand: it arrived")
            store.write_row(lake, full)
            out.marked_sent.append(nid)
        elif state in SENDABLE or nid in resend:
            todo.append(store.read_row(lake, row["_path"]))
        elif state == "in_doubt":
            out.in_doubt.append(nid)  # reported by every run until someone resolves it
    done = 0
    for batch in channel.batches(todo):
        if may_publish is not None and not may_publish():
            out.errors.append("the lake's lease was lost: the rest is left for the next run")
            break
        began = datetime.now(UTC)
        first = min(row.get("_first_attempt") or began for row in batch)
        retry_until = first + channel.retry_window if channel.retry_window else None
        for row in batch:  # 1. the intent, before anything leaves the process
            row.update(state="publishing", attempts=row["attempts"] + 1, channel=channel.name)
            store.write_row(lake, row)
        outcomes = channel.send(batch, retry_until)  # 2.
        for row, res in zip(batch, outcomes, strict=True):  # 3.
            row.update(state=res.state, message_id=res.message_id, last_error=res.error)
            store.write_row(lake, row)
            if res.state == "sent":
                out.sent.append(row)
            elif res.state == "in_doubt":
                out.in_doubt.append(row["notification_id"])
            else:
                out.failed += 1
            if res.state != "sent" and res.error:
                out.errors.append(res.error)
        done += len(batch)
        if on_progress:
            on_progress(done, len(todo))
    out.in_doubt.sort()
    return out
