"""The local channel: notifications as JSON lines in the lake, for laptops and the demo.

``incidents/notifications/date=<day>/<hash of the notification ids>.jsonl``, one line per
notification: subject, text, OCSF body and attributes, exactly what SNS would have been given.
The file name is a hash of its content's ids, so re-sending a batch rewrites the same file with the
same lines: this channel cannot duplicate even without the outbox protocol. The console rendering
is the CLI's: it prints the ``text`` of what was sent.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.alert import store
from pipeline.alert.delivery import Outcome
from pipeline.lake import Lake, notifications_file

BATCH = 100


class LocalChannel:
    name = "local"
    # A batch is a file named by its rows' ids: a row re-sent in another batch would be a second
    # line in another file, so what may have been written is not written again.
    retry_window: timedelta | None = None

    def __init__(self, lake: Lake) -> None:
        self.lake = lake

    def batches(self, rows: Sequence[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
        for i in range(0, len(rows), BATCH):
            yield list(rows[i : i + BATCH])

    def send(
        self, rows: Sequence[dict[str, Any]], retry_until: datetime | None = None
    ) -> list[Outcome]:
        ids = "\n".join(r["notification_id"] for r in rows)
        name = hashlib.sha256(ids.encode()).hexdigest()[:24]
        rel = notifications_file(f"{datetime.now(UTC):%Y-%m-%d}", name)
        lines = []
        for r in rows:
            envelope = json.loads(r["message"])
            lines.append(
                json.dumps(
                    {
                        "notification_id": r["notification_id"],
                        "incident_id": r["incident_id"],
                        "kind": r["kind"],
                        "severity": r["severity"],
                        "subject": r["subject"],
                        "text": r["text"],
                        "body": json.loads(envelope["sqs"]),
                        "attributes": json.loads(r["attributes"]),
                    },
                    sort_keys=True,
                    ensure_ascii=False,
                )
            )
        try:
            store.write_bytes(self.lake, rel, ("\n".join(lines) + "\n").encode())
        except OSError as exc:
            return [Outcome("failed", error=f"{type(exc).__name__}: {exc}"[:500]) for _ in rows]
        uri = self.lake.uri(rel)
        return [Outcome("sent", uri) for _ in rows]
