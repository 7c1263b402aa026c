"""What the CLI prints of an alert run: each notification sent, as on-call reads it, and the
warnings the run leaves on stderr (notifications in doubt, errors). Plain text: the CLI echoes it
with click, not rich, so nothing in a message is taken for markup."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.alert.sanitize import clean


def notifications(sent: Sequence[Mapping[str, Any]]) -> str:
    """Each notification sent in this run, worst first (its text was sanitised when rendered)."""
    from pipeline.schema import SEVERITY_RANK

    order = sorted(sent, key=lambda r: (-SEVERITY_RANK[r["severity"]], r["subject"]))
    return "".join(f"{'=' * 100}\nSubject: {r['subject']}\n\n{r['text']}\n" for r in order)


def warnings(summary: Mapping[str, Any]) -> list[str]:
    """Lines for stderr: every notification in doubt (on every run until resolved), and the
    delivery and automatic containment errors of this run."""
    out = []
    ids = summary["in_doubt_ids"]
    if ids:
        out.append(
            f"tenantwatch: warning: {len(ids)} notification(s) in doubt: the channel may or may"
            " not have published them (an answer that never came, or a run that died while"
            " publishing), so they are not sent again automatically. Check whether each arrived,"
            " then `tenantwatch alert --resend ID` (it did not) or `--mark-sent ID` (it did): "
            + ", ".join(ids)
        )
    out += [f"tenantwatch: warning: {clean(e)}" for e in summary["notifications"]["errors"]]
    contained = summary.get("containment") or {}
    out += [
        f"tenantwatch: warning: automatic containment failed: {clean(e)}"
        for e in contained.get("errors", ())
    ]
    return out


def failed(summary: Mapping[str, Any]) -> bool:
    """Exit code 1: a notification failed (the next run retries it, but the scheduler should
    know) or is in doubt, or a snapshot or an automatic containment could not be written."""
    n = summary["notifications"]
    contained = summary.get("containment") or {}
    return bool(
        n["failed"] or n["in_doubt"] or summary["snapshot_errors"] or contained.get("errors")
    )
