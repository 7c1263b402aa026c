"""Detectors as plugins would ship them, for the registry's tests (tests/test_plugins.py).

Threat
------
None: a test double.

Signal
------
Every event of tenant t0002 read by anyone.

Data needed
-----------
``target_tenant``.

Known false positives
---------------------
All of them.

Runbook
-------
1. Nothing.
2. Nothing.
3. Nothing.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Self

import pandas as pd

from detectors.base import SCORED, Detector, DetectorSettings
from detectors.evidence import positions


class Settings(DetectorSettings, frozen=True, forbid_unknown_fields=True, kw_only=True):
    tenant: str = "t0002"


class TenantTouched(Detector[Settings]):
    id = "tenant_touched"
    title = "Tenant touched"
    severity = "low"
    sources = ("cloudtrail",)
    columns = ("event_id", "event_time", "source", "target_tenant", "actor_principal")
    baseline_columns = ("event_time", "source")
    group_by = ("target_tenant",)
    lookback = timedelta(0)
    dedup_period = timedelta(hours=1)

    def fit(self, baseline: pd.DataFrame) -> Self:
        return self

    def score(self, window: pd.DataFrame) -> pd.DataFrame:
        w = window[window["target_tenant"] == self.settings.tenant]
        if w.empty:
            return pd.DataFrame(columns=list(SCORED))
        w = w.assign(key=self.settings.tenant)
        row = {
            "key": self.settings.tenant,
            "score": float(len(w)),
            "threshold": 1.0,
            "severity": "low",
            "actor": None,
            "actor_tenant": None,
            "tenants": [self.settings.tenant],
            "baseline": "rule",
            "rows": positions(w, ["key"])[self.settings.tenant],
            "details": {},
            "title": None,
        }
        return pd.DataFrame([row], columns=list(SCORED))


class Misnamed(TenantTouched):
    id = "not_what_it_is_registered_as"


NOT_A_DETECTOR = object()
