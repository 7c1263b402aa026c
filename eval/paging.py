"""Pages per attack: the attack day's findings alerted as a scheduled deployment would see them.

The day's findings are handed to ``alert`` hour by hour, each when its last event is over (a
finding is known once the activity it describes has ended), into the same lake: so an attack
seen by one detector at 10:00 and another at 11:00 is either joined into the incident that has
already paged, or pages again. What is counted, per labelled attack (a page is a notification of
kind ``new`` or ``escalation``; ``update`` and ``digest`` do not page):

- ``pages``: first pages of incidents whose findings match the attack (``evaluate.matches``); the
  goal is exactly one;
- ``escalations``: further pages of those incidents because their severity rose (allowed: each
  is for a severity above every earlier page's);
- ``merged``: the attack shares an incident with another labelled attack or negative (two
  attackers told as one story; the goal is none);
- per run, ``negatives_paged``: pages of incidents that match a labelled negative and no attack,
  and ``unlabelled``: pages matching no label at all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa

HOUR = timedelta(hours=1)
PAGES = ("new", "escalation")

Matches = Callable[[dict[str, Any], dict[str, Any]], bool]


@dataclass
class Paging:
    attacks: int = 0  # labelled attacks expected to page (medium or worse)
    paged_once: int = 0  # ... with exactly one first page
    unpaged: list[str] = field(default_factory=list)
    repaged: list[str] = field(default_factory=list)  # more than one first page: "<id>: n"
    pages: int = 0  # first pages of attack incidents
    escalations: int = 0
    bad_escalations: int = 0  # an escalation not above every earlier page of its incident
    merged: list[str] = field(default_factory=list)  # "<attack> + <other label>"
    negatives_paged: list[str] = field(default_factory=list)
    unlabelled: list[str] = field(default_factory=list)

    def add(self, other: Paging, prefix: str = "") -> None:
        for k in ("attacks", "paged_once", "pages", "escalations", "bad_escalations"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        for k in ("unpaged", "repaged", "merged", "negatives_paged", "unlabelled"):
            getattr(self, k).extend(f"{prefix}{x}" for x in getattr(other, k))


def replay(lake: str, cfg: Any, findings: pa.Table, day: datetime) -> None:
    """Write ``findings`` into the lake an hour at a time and alert after each hour."""
    from pipeline.alert.run import run_alert
    from pipeline.lake import Lake, findings_file
    from pipeline.schema import FINDINGS

    lk = Lake(lake)
    rows = findings.to_pylist()
    end = [f["last_seen"] or f["window_end"] for f in rows]
    cuts = [day + HOUR * h for h in range(1, 25)]
    cuts.append(max([*end, cuts[-1]]) + HOUR)  # whatever ends later (none on a day's window)
    lo = None
    for cut in cuts:
        part = [f for f, e in zip(rows, end, strict=True) if e < cut and (lo is None or e >= lo)]
        lo = cut
        if not part:
            continue
        name = findings_file(f"{day:%Y-%m-%d}", f"replay-{cut:%Y%m%dT%H%M}")
        lk.write_table(name, pa.Table.from_pylist(part, schema=FINDINGS))
        run_alert(lake, cfg)


def score_pages(
    lake: str,
    cfg: Any,
    findings: list[dict[str, Any]],
    labels: list[dict[str, Any]],
    matches: Matches,
) -> Paging:
    """Each page of the replay beside the labels (see the module docstring)."""
    from pipeline.alert import store
    from pipeline.lake import Lake
    from pipeline.schema import SEVERITY_RANK as RANK

    lk = Lake(lake)
    incidents = {i.incident_id: i for i in store.load_incidents(lk)}
    by_id = {f["finding_id"]: f for f in findings}
    outbox = sorted(
        (r for r in store.load_outbox(lk, full=True).values() if r["kind"] in PAGES),
        key=lambda r: (r["updated_at"], r["kind"] != "new"),
    )
    floor = RANK[cfg.alerting.notify_min_severity]
    attacks = [
        lb
        for lb in labels
        if lb["kind"] == "attack" and RANK.get(lb["expected_severity"], -1) >= floor
    ]
    named = {lb["id"]: lb for lb in labels}

    def labels_of(incident_id: str) -> set[str]:
        inc = incidents.get(incident_id)
        fs = [by_id[x] for x in (inc.finding_ids if inc else ()) if x in by_id]
        return {lb["id"] for lb in labels for f in fs if matches(f, lb)}

    out = Paging(attacks=len(attacks))
    first: dict[str, int] = {lb["id"]: 0 for lb in attacks}
    worst: dict[str, str] = {}
    merged: set[tuple[str, str]] = set()
    for row in outbox:
        hit = labels_of(row["incident_id"])
        on_attack = [x for x in hit if named[x]["kind"] == "attack"]
        if row["kind"] == "escalation":
            prev = worst.get(row["incident_id"])
            if prev is not None and RANK[row["severity"]] <= RANK[prev]:
                out.bad_escalations += 1
            out.escalations += bool(on_attack)
        else:
            for x in on_attack:
                first[x] = first.get(x, 0) + 1
            out.pages += bool(on_attack)
        prev = worst.get(row["incident_id"])
        if prev is None or RANK[row["severity"]] > RANK[prev]:
            worst[row["incident_id"]] = row["severity"]
        if not hit:
            out.unlabelled.append(f"{row['severity']} {row['subject']}")
        elif not on_attack and row["kind"] == "new":
            out.negatives_paged.append(f"{', '.join(sorted(hit))}: {row['subject']}")
        for a in on_attack:
            for b in hit - {a}:  # two attacks are one pair whichever is named first
                merged.add((min(a, b), max(a, b)) if b in on_attack else (a, b))
    out.merged = sorted(f"{a} + {b}" for a, b in merged)
    for lb in attacks:
        n = first.get(lb["id"], 0)
        if n == 1:
            out.paged_once += 1
        elif n == 0:
            out.unpaged.append(lb["id"])
        else:
            out.repaged.append(f"{lb['id']}: {n} pages")
    return out
