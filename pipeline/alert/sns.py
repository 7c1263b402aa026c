"""The SNS channel: ``Publish`` / ``PublishBatch`` with ``MessageStructure=json``.

A failure is classified by whether SNS can have published the message (see ``delivery``): an
error response, or an endpoint that could not be reached, means it did not (``failed``, retried
next run); a connection that broke after the request was sent means we cannot know
(``in_doubt``, never re-sent automatically).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from pipeline import aws
from pipeline.alert.delivery import Outcome
from pipeline.alert.render import MAX_MESSAGE_BYTES

BATCH_ENTRIES = 10  # PublishBatch: at most 10 entries and 256 KB for all of them together


class SnsChannel:
    name = "sns"

    def __init__(self, topic_arn: str, region: str = "") -> None:
        self.topic_arn = topic_arn
        self.fifo = topic_arn.endswith(".fifo")
        self.client = aws.client("sns", region)

    def batches(self, rows: Sequence[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
        batch: list[dict[str, Any]] = []
        size = 0
        for row in rows:
            n = int(row["size_bytes"])
            if batch and (len(batch) == BATCH_ENTRIES or size + n > MAX_MESSAGE_BYTES):
                yield batch
                batch, size = [], 0
            batch.append(row)
            size += n
        if batch:
            yield batch

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

    def send(self, rows: Sequence[dict[str, Any]]) -> list[Outcome]:
        from botocore.exceptions import ClientError, NoCredentialsError, ParamValidationError
        from botocore.exceptions import ConnectionError as BotoConnectionError

        try:
            if len(rows) == 1:
                r = self.client.publish(TopicArn=self.topic_arn, **self._params(rows[0]))
                return [Outcome("sent", r["MessageId"])]
            entries = [{"Id": row["notification_id"], **self._params(row)} for row in rows]
            r = self.client.publish_batch(
                TopicArn=self.topic_arn, PublishBatchRequestEntries=entries
            )
        except (ClientError, BotoConnectionError, NoCredentialsError, ParamValidationError) as exc:
            # SNS answered with an error, or was never reached: not published.
            err = f"{type(exc).__name__}: {exc}"[:500]
            return [Outcome("failed", error=err) for _ in rows]
        except Exception as exc:
            err = f"{type(exc).__name__}: {exc}"[:500]
            return [Outcome("in_doubt", error=err) for _ in rows]
        ok = {s["Id"]: s["MessageId"] for s in r.get("Successful", [])}
        bad = {
            f["Id"]: f"{f.get('Code')}: {f.get('Message', '')}"[:500] for f in r.get("Failed", [])
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
