"""sigma: Sigma rules run over each detection window of the lake.

Threat
------
What the SaaS's own detectors are not about: trail tampering, persistence through new access
keys, snapshots or policies opened to outside accounts, secrets read in bulk, console logins
without MFA, root use, and whatever rules the security team already keeps in Sigma.

Signal
------
An event (or, for a correlation rule, a group of events within its timespan) that a rule's
detection matches. The project's rule pack (``rules/``) and every folder or ``s3://`` prefix of
``[sigma] rules`` are compiled once per run (``detectors.sigma.rules``) into SQL over the window's
events (``detectors.sigma.backend``) and run with DuckDB.

Data needed
-----------
Every source's events, the lake's columns and the original record (``raw``, secrets
fingerprinted) for the fields the lake has no column for. No history.

Known false positives
---------------------
Each rule's own ``falsepositives``. Change windows and automation (a deploy role updating a
trail) are the common ones: a suppression (``[[suppressions]]``) or the rule's own filter keeps
them quiet. A rule that matches everything pages once per actor and window, not per event.

Runbook
-------
1. Read the rule (``tenantwatch sigma show RULE``) and its finding's events (the Athena query).
2. Ask the actor's tenant whether the change was theirs and planned; for a tenant-aware rule,
   check the target tenant named in the finding first.
3. If not planned: revert the change (restart logging, delete the key, remove the share) and
   treat the actor's credentials as compromised.
4. If planned: suppress that actor and rule for the change's duration.

One finding per rule, actor (or correlation group) and window; its severity is the rule's
``level``, its title the rule's, and its evidence names the rule's id, file and ATT&CK tags.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
import pyarrow as pa

from detectors.base import SCORED, Detector, DetectorSettings, Severity
from pipeline import schema
from pipeline.config import Relationship

# The columns a rule may read: all of an event's (``raw`` included), and its window position.
ROW = "_tw_row"


class Settings(DetectorSettings, frozen=True, kw_only=True):
    """The rules themselves are configured under ``[sigma]`` (``pipeline.config.SigmaConfig``):
    which folders and prefixes, whether the project's pack, which lookup maps accounts."""


class SigmaRules(Detector[Settings]):
    id = "sigma"
    title = "Sigma rule matched"
    severity: ClassVar[Severity] = "medium"
    sources = schema.SOURCES
    columns = tuple(n for n in schema.EVENTS.names if n not in ("actor_ticket",))
    optional_columns = ("actor_ticket",)
    baseline_columns = ("event_time", "source")
    group_by = ("rule", "actor")
    partitions = ()
    """Whole. A plain rule's group is (rule, principal), but its unknown actor gathers the
    events whose principal is null and those whose principal is empty; a correlation rule
    groups by the fields the rule names (any CloudTrail field, read from ``raw``), which differ
    from rule to rule and may be no lake column. A rule reads no history."""
    lookback = timedelta(0)  # rules need no history
    dedup_period = timedelta(hours=24)

    def __init__(
        self,
        settings: Settings | None = None,
        relationships: tuple[Relationship, ...] = (),
        *,
        rules: Any = None,
        accounts: dict[str, str] | None = None,
    ) -> None:
        """``rules``: a ``detectors.sigma.rules.RuleSet`` (``detectors.from_config`` loads it
        from ``[sigma]``); ``accounts``: account id -> tenant, for ``foreign_accounts``."""
        super().__init__(settings, relationships)
        from detectors.sigma.rules import RuleSet, pack

        # Built without rules (a notebook, the contract tests): the project's rule pack.
        self.rules: RuleSet = rules if rules is not None else pack()
        self.accounts = dict(accounts or {})
        # Rules that failed in the last ``score``: rule id -> why (the others ran).
        self.failures: dict[str, str] = {}

    def fit(self, baseline: pd.DataFrame) -> Self:
        return self

    def score(self, window: pd.DataFrame) -> pd.DataFrame:
        from detectors.sigma.view import connect

        self.failures = {}
        out: list[dict[str, Any]] = []
        if not self.rules.rules or window.empty:
            return pd.DataFrame(columns=SCORED)
        table = _arrow(window)
        wants_accounts = any("foreign_accounts" in r.sql for r in self.rules.rules)
        con = connect(table, self.accounts if wants_accounts else None, derive=wants_accounts)
        try:
            for rule in self.rules.rules:
                try:
                    group = _GROUP_SQL if rule.kind != "rule" else "NULL"
                    # The rule's own SQL, every value in it a quoted literal (backend.sql_string).
                    query = f"SELECT {ROW}, {group} AS sigma_group FROM ({rule.sql}) ORDER BY {ROW}"  # noqa: S608
                    got = con.sql(query).to_arrow_table()
                except Exception as exc:
                    self.failures[rule.id] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                    continue
                out.extend(_groups(rule, window, got))
        finally:
            con.close()
        return pd.DataFrame(out, columns=SCORED)


_GROUP_SQL = "sigma_group"


def _arrow(window: pd.DataFrame) -> pa.Table:
    """The window as Arrow, with each row's position."""
    frame = window.copy(deep=False)
    frame.attrs = {}  # the window's period: not for DuckDB
    frame[ROW] = np.arange(len(frame), dtype=np.int64)
    # Categoricals become Arrow dictionaries, which DuckDB reads as text without a copy.
    return pa.Table.from_pandas(frame, preserve_index=False)


def _groups(rule: Any, window: pd.DataFrame, got: pa.Table) -> list[dict[str, Any]]:
    """One scored group per actor (a plain rule) or per correlation group."""
    if not got.num_rows:
        return []
    rows = np.asarray(got[ROW].to_numpy(zero_copy_only=False), dtype=np.int64)
    groups = got["sigma_group"].to_pylist()
    actors = window["actor_principal"].astype(object).to_numpy()[rows]
    by: dict[str, list[int]] = {}
    for r, g, a in zip(rows.tolist(), groups, actors, strict=True):
        key = g if rule.kind != "rule" else (a if isinstance(a, str) and a else "unknown actor")
        by.setdefault(str(key), []).append(r)
    out = []
    for key, positions in by.items():
        sub = window.iloc[positions]
        actor = _most(sub["actor_principal"])
        targets = {str(t) for t in sub["target_tenant"].dropna().astype(object)}
        actor_tenant = _most(sub["actor_tenant"])
        tenants = sorted(targets | ({actor_tenant} if actor_tenant else set()))
        details = {
            "rule_id": rule.id,
            "rule_title": rule.title,
            "rule_file": rule.path,
            "rule_kind": rule.kind,
            "level": rule.severity,
            "attack": list(rule.attack),
        }
        if rule.kind != "rule":
            details["group"] = key
        out.append(
            {
                "key": f"{rule.id}:{key}",
                "score": float(len(positions)),
                "threshold": 1.0,
                "severity": rule.severity,
                "actor": actor,
                "actor_tenant": actor_tenant,
                "tenants": tenants,
                "baseline": (
                    f"Sigma rule {rule.title!r} ({rule.id}) matched {len(positions)} event(s)"
                ),
                "rows": positions,
                "details": details,
                "title": f"Sigma: {rule.title}",
            }
        )
    return out


def _most(values: pd.Series) -> str | None:
    vals = [str(v) for v in values.dropna().astype(object) if str(v)]
    return Counter(vals).most_common(1)[0][0] if vals else None
