"""bulk_tenant_read: one actor reads many objects or records of one tenant within a window.

Threat
------
A session with legitimate access to a tenant (its own user, a support engineer under a ticket, a
cross-tenant path no detector caught) exports that tenant's data wholesale: the read that
matters is the thousandth, not the first.

Signal
------
Per actor and target tenant in the window: the successful reads (``Get*``, ``List*``,
``Describe*``, HTTP ``GET``). The group is reported from ``min_reads`` reads on; severity
``severity`` (``high`` at ``high_reads``). No history: a rule, so it runs in the fast path too.

Data needed
-----------
CloudTrail data events and API Gateway access logs; ``actor_principal``, ``target_tenant``,
``action``, ``outcome``.

Known false positives
---------------------
- Backups, exports and reports a tenant asked for (give their roles a relationship, or raise
  ``min_reads`` for them with a suppression).
- Service roles that read every tenant by design.

Runbook
-------
1. Read the finding: which actor, which tenant, how many reads, of which resources.
2. Check whether the tenant or a ticket asked for an export at that time.
3. If not, pull the evidence events from the lake by ``event_ids`` and contain the actor.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Self

import pandas as pd

from detectors.base import SCORED, Detector, DetectorSettings, Severity
from detectors.evidence import positions, text


class Settings(DetectorSettings, frozen=True, forbid_unknown_fields=True, kw_only=True):
    # Off until enabled in [detectors.bulk_tenant_read]: installing a plugin changes no run.
    enabled: bool = False
    min_reads: int = 100
    high_reads: int = 1000
    severity: Severity = "medium"


READS = ("Get", "List", "Describe", "GET ")


class BulkTenantRead(Detector[Settings]):
    id = "bulk_tenant_read"
    title = "Bulk read of one tenant's data"
    severity = "medium"
    sources = ("cloudtrail", "apigateway")
    columns = (
        "event_id",
        "event_time",
        "source",
        "action",
        "actor_principal",
        "actor_tenant",
        "target_tenant",
        "outcome",
        "source_ip",
        "user_agent",
    )
    baseline_columns = ("event_time", "source")
    group_by = ("actor", "target_tenant")
    lookback = timedelta(0)
    dedup_period = timedelta(hours=24)

    def fit(self, baseline: pd.DataFrame) -> Self:
        return self  # a rule: nothing to learn

    def score(self, window: pd.DataFrame) -> pd.DataFrame:
        s = self.settings
        action = text(window["action"]).fillna("")
        read = action.str.startswith(READS) & (text(window["outcome"]) == "success")
        w = window[read & window["target_tenant"].notna() & window["actor_principal"].notna()]
        if w.empty:
            return pd.DataFrame(columns=list(SCORED))
        w = w.assign(key=text(w["actor_principal"]) + "|" + text(w["target_tenant"]))
        rows = positions(w, ["key"])
        out = []
        for key, g in w.groupby("key", sort=True):
            n = len(g)
            if n < s.min_reads:
                continue
            actor, tenant = str(g["actor_principal"].iloc[0]), str(g["target_tenant"].iloc[0])
            out.append(
                {
                    "key": key,
                    "score": float(n),
                    "threshold": float(s.min_reads),
                    "severity": "high" if n >= s.high_reads else s.severity,
                    "actor": actor,
                    "actor_tenant": g["actor_tenant"].iloc[0],
                    "tenants": [tenant],
                    "baseline": f"rule: {s.min_reads} reads of one tenant in a window",
                    "rows": rows[key],
                    "details": {"reads": n},
                    "title": f"{self.title}: {actor} read {n} items of {tenant}",
                }
            )
        return pd.DataFrame(out, columns=list(SCORED))
