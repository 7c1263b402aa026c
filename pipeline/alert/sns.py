"""The SNS channel: ``Publish`` / ``PublishBatch`` with ``MessageStructure=json``.

``Publish`` is not idempotent on a standard topic: a request SNS accepted whose answer was lost
(a read timeout, a connection that broke, a 5xx from something in between) is a message sent,
and sending it again is a second page. So the client never retries by itself
(``aws.publisher``), and each failure is judged by what it proves:

- SNS answered with an error (4xx), or could not be reached at all: nothing was published.
  Throttling and a refused connection are tried again here (``calls``, shared with the other
  channels), a few times with backoff; any other error is ``failed``, and the next run sends
  it again.
- No answer, or a 5xx (SNS, or a proxy, may have published before failing): nobody can know.
  On a standard topic that is ``in_doubt``: never re-sent automatically (see ``delivery``).

A FIFO topic (``.fifo``) is different: each message carries its notification id as
``MessageDeduplicationId``, and SNS drops any message whose id it accepted in the last five
minutes. Within that window an unanswered call can be repeated without a second page, so on a
FIFO topic it is, until ``RETRY_WINDOW`` after the first attempt (a minute short of SNS's five,
for clocks that differ between machines); after that it is ``in_doubt`` like elsewhere.
``MessageGroupId`` is the detector: deterministic (a retry carries the same group, which matters
where deduplication is scoped to the group, as on high-throughput topics), and it orders an
incident's update after its first page without serialising unrelated detectors.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline import aws
from pipeline.alert import calls
from pipeline.alert.delivery import Outcome
from pipeline.alert.render import MAX_MESSAGE_BYTES

BATCH_ENTRIES = 10  # PublishBatch: at most 10 entries and 256 KB for all of them together
RETRY_WINDOW = timedelta(minutes=4)  # FIFO only: SNS deduplicates for 5 minutes


class SnsChannel:
    name = "sns"

    def __init__(self, topic_arn: str, region: str = "") -> None:
        self.topic_arn = topic_arn
        self.fifo = topic_arn.endswith(".fifo")
        self.client = aws.publisher("sns", region)
        self.retry_window = RETRY_WINDOW if self.fifo else None

    def batches(self, rows: Sequence[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
        return calls.batched(
            rows, lambda row: int(row["size_bytes"]), MAX_MESSAGE_BYTES, BATCH_ENTRIES
        )

    def _params(self, row: dict[str, Any]) -> dict[str, Any]:
        p: dict[str, Any] = {
            "Subject": row["subject"],
            "Message": row["message"],
            "MessageStructure": "json",
            "MessageAttributes": json.loads(row["attributes"]),
        }
        if self.fifo:
            p["MessageGroupId"] = row["detector"]
            p["MessageDeduplicationId"] = row["notification_id"]
        return p

    def send(
        self, rows: Sequence[dict[str, Any]], retry_until: datetime | None = None
    ) -> list[Outcome]:
        """Publish ``rows`` (one call per attempt). ``retry_until``: on a FIFO topic, the time
        after which an unanswered call is no longer repeated (``RETRY_WINDOW`` after the first
        attempt; earlier for a message a dead run may already have sent)."""
        until = retry_until or datetime.now(UTC) + RETRY_WINDOW
        verdict, answer, error = calls.call(
            lambda: self._publish(rows), lambda wait: self._may_repeat(until, wait)
        )
        if verdict == "answered":
            return self._outcomes(rows, answer)
        state = "in_doubt" if verdict == "unknown" else "failed"
        return [Outcome(state, error=error) for _ in rows]

    def _may_repeat(self, until: datetime, wait: float) -> bool:
        """FIFO only: the repeat, however long it takes, reaches SNS while it still drops it."""
        if not self.fifo:
            return False
        worst = timedelta(seconds=wait + aws.CONNECT_TIMEOUT_S + aws.READ_TIMEOUT_S)
        return datetime.now(UTC) + worst < until

    def _publish(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """One call: SNS's answer, in ``PublishBatch``'s shape for one message too. Its errors
        are judged by ``calls`` (refused, busy, or unknown: it may have been published)."""
        if len(rows) == 1:
            r = self.client.publish(TopicArn=self.topic_arn, **self._params(rows[0]))
            ok = {"Id": rows[0]["notification_id"], "MessageId": r["MessageId"]}
            return {"Successful": [ok]}
        entries = [{"Id": row["notification_id"], **self._params(row)} for row in rows]
        answer: dict[str, Any] = self.client.publish_batch(
            TopicArn=self.topic_arn, PublishBatchRequestEntries=entries
        )
        return answer

    @staticmethod
    def _outcomes(rows: Sequence[dict[str, Any]], answer: dict[str, Any]) -> list[Outcome]:
        ok = {s["Id"]: s["MessageId"] for s in answer.get("Successful", [])}
        bad = {
            f["Id"]: f"{f.get('Code')}: {f.get('Message', '')}"[:500]
            for f in answer.get("Failed", [])
        }
        out = []
        for row in rows:
            nid = row["notification_id"]
            if nid in ok:
                out.append(Outcome("sent", ok[nid]))
            else:  # listed as failed, or (never seen) missing from both lists: not published
                out.append(
                    Outcome("failed", error=bad.get(nid, "absent from the PublishBatch response"))
                )
        return out
