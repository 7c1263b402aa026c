"""authz_failure_spike: far more authorization failures than usual for a tenant, actor or address.

Threat
------
Credential stuffing against one tenant's login, a stolen or expired token replayed tenant after
tenant, a script probing which tenants' URLs answer: all show up first as a burst of denials.

Signal
------
Denied events (``outcome == "denied"``: CloudTrail ``AccessDenied`` / ``Unauthorized*``, API
Gateway 401/403, which includes every authorizer Deny) are counted in one-hour buckets per
group, for three kinds of group, each counted by its own cause of alarm:

- the tenant (target, else the actor's): its *distinct failing actors or addresses* (the
  principal, else the session, else the source address). A tenant-level spike is many callers
  failing; one caller's repeats, however many, are one (that is the actor's group's business);
- the actor (principal): every denial, its own repeats included;
- the source address: every authorizer *decision* once. API Gateway caches an authorizer's
  result (``cache_ttl_s``, 300 s by default): a Deny makes each request of the same token in
  the next minutes a 403 without the authorizer running (``authorizerLatency`` ``-``, no
  authorizer log line). Such a 403, within the TTL after a Deny the authorizer logged for the
  same principal, is that one decision repeated and adds nothing to the address's count.

AWS services acting for themselves (``delivery.logs.amazonaws.com``, any ``AWSService``
identity; ``pipeline.principals``) are no actor: their denials are left out
(``include_service_principals`` puts them back) and ``pipeline.health`` counts them as
``ServicePrincipalDenials``, so a log delivery that lost its bucket permission shows as the
pipeline's health, not as an attack.

Each bucket is compared with the same group's history, counted the same way, over the lookback:

- level = median count of the comparable history buckets: the same hour of the week when the
  history covers ``seasonal_min_weeks`` weeks (Monday mornings compare with Monday mornings),
  else the same hour of the day when it covers ``daily_min_days`` days, else every hour;
- spread = the largest of the MAD of those buckets, the MAD of every hour, sqrt(level) (counts
  are Poisson-like) and ``mad_floor``;
- score = 0.6745 * (count - level) / spread (PyOD's MAD score, a robust z).

A bucket is a spike when its score reaches ``threshold`` *and* its count reaches the floor
(``min_actors`` for a tenant, ``min_count`` for an actor or address): the floor stops 2 -> 6
failures from paging. Buckets are also counted shifted by half an hour so
a burst across the hour boundary is not cut in two. One group gives at most one finding per
window (the whole burst); a finding whose events lie mostly (``overlap``) inside a larger one
(the token's failures inside its address's) is folded into it as ``also``.
Severity: high when the count reaches ``high_actors`` (tenant) or ``high_count`` and the score
twice the threshold, else medium. When the lake holds no history before the window, the
baseline says so ("no history before <time>: baseline unknown") and the finding is
``severity_no_history`` (medium): the floor alone made it, and nothing says what is usual, so
it pages for a look but never claims high.

Data needed
-----------
CloudTrail and API Gateway access logs; the Lambda authorizer's log, where ingested, to tell
its fresh decisions from cached ones (its decisions are not counted themselves: each is also
an access-log line). ``event_time``, ``outcome``, ``status_code``, ``request_id``,
``actor_principal``, ``actor_type``, ``actor_session``, ``actor_tenant``, ``target_tenant``,
``source_ip``. 14 days of history, of which only the denied events are read.

Known false positives
---------------------
- A release that breaks login or a permission (every tenant's failures rise together; the
  ``also`` list and the other tenants' findings show it).
- A customer's integration with a revoked key retrying in a loop: one actor, one tenant, the
  same action over and over.
- A new tenant or a new address with no history: the floor (``min_count``) is what protects it.
- One user refused by the authorizer, clicking on while the Deny is cached: the actor's group
  counts every 403 and pages only past ``min_count``; the tenant and the address count it once.

Runbook
-------
1. Read the finding: which group (tenant, actor or address), how many failures against what
   baseline, the top actions and addresses. Login (``POST .../session``) failures from many
   addresses: credential stuffing. One address, many tenants: token replay or enumeration.
2. Check for a deploy or an authorizer change at ``first_seen`` (release channel, CloudTrail for
   ``UpdateFunctionCode`` / ``UpdateAuthorizer``). If the failures are everyone's, it is an
   outage: hand over to the service's on-call and close this as not a security incident.
3. Pull the evidence events from the lake by ``event_ids``; list the distinct source addresses,
   user agents and user names tried.
4. Look for a success after the failures from the same addresses or token (query the lake for
   ``outcome = 'success'`` from those addresses after ``first_seen``): a success means an account
   may be taken over - escalate to high and force a password / token reset for it.
5. Contain: add the addresses to the WAF block list (or a rate-based rule on the login route);
   tell the tenant's admin if their users are the target.
6. Record the addresses and the outcome on the incident; keep the forensic snapshot.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Self

import numpy as np
import pandas as pd

from detectors.base import SCORED, Detector, DetectorSettings, Severity
from detectors.evidence import (
    HOUR_US,
    cache_answers,
    describe_hours,
    epoch_us,
    fold,
    most,
    request_keys,
    text,
)
from detectors.rules import service_principals

# group kind -> how its value is read from the events
DIMENSIONS = ("tenant", "actor", "ip")
# What one unit of a group's hourly count is (evidence and plots say it).
COUNTS = {
    "tenant": "distinct failing actors or addresses",
    "actor": "denials",
    "ip": "denials, a cached authorizer decision once",
}
# The sources whose denials count. The authorizer's log is read only to tell fresh decisions from
# cached ones: each of its Deny decisions is also an access-log line (401/403) of the same request.
COUNTED = ("cloudtrail", "apigateway")
_HALF = HOUR_US // 2


class Settings(DetectorSettings, frozen=True, forbid_unknown_fields=True, kw_only=True):
    min_count: int = 20  # failures in one hour before an actor or an address can page
    min_actors: int = 10  # distinct failing actors or addresses in one hour before a tenant can
    threshold: float = 5.0  # robust z of the hour against the group's history
    mad_floor: float = 1.0
    seasonal_min_weeks: int = 2
    daily_min_days: int = 7
    dimensions: tuple[str, ...] = DIMENSIONS
    overlap: float = 0.8
    high_count: int = 50
    high_actors: int = 25
    # API Gateway's authorizer result TTL (its default): a 403 without an authorizer decision this
    # soon after a Deny for the same principal is that Deny served again from the cache.
    cache_ttl_s: int = 300
    # AWS services acting for themselves (delivery.logs.amazonaws.com) are pipeline health, not
    # actors: ``pipeline.health`` counts their denials.
    include_service_principals: bool = False
    severity: Severity = "medium"
    severity_high: Severity = "high"
    # With no history at all nothing says what is usual: the floor alone decided.
    severity_no_history: Severity = "medium"


def _values(frame: pd.DataFrame, dim: str) -> pd.Series:
    if dim == "tenant":
        return text(frame["target_tenant"]).fillna(text(frame["actor_tenant"]))
    if dim == "actor":
        return text(frame["actor_principal"])
    return text(frame["source_ip"])


def cached_repeats(frame: pd.DataFrame, ttl_s: int) -> np.ndarray:
    """Per row: an API Gateway 403 that is an authorizer Deny served again from the cache.

    Such a request was answered from the cache (``detectors.evidence.cache_answers``: no
    authorizer decision of its own) and follows, within the cache TTL, a Deny the authorizer
    logged for the same principal. Without the authorizer's log nothing can be told apart, and
    every denial counts (as before the log was read)."""
    out = np.zeros(len(frame), dtype=bool)
    answers = cache_answers(frame)
    if answers is None:
        return out
    principal = text(frame["actor_principal"])
    known = principal.notna().to_numpy(dtype=bool)
    status = pd.to_numeric(frame["status_code"], errors="coerce").to_numpy(dtype=float)
    candidate = answers[0] & (status == 403)
    is_auth = (text(frame["source"]) == "authorizer").to_numpy(dtype=bool)
    denies = is_auth & known & (text(frame["outcome"]) == "denied").to_numpy(dtype=bool)
    if not candidate.any() or not denies.any():
        return out
    t = epoch_us(frame["event_time"])
    p = principal.to_numpy(dtype=object)
    left = pd.DataFrame({"t": t[candidate], "p": p[candidate], "row": np.flatnonzero(candidate)})
    right = pd.DataFrame({"t": t[denies], "p": p[denies]})
    right["deny"] = right["t"]
    joined = pd.merge_asof(
        left.sort_values("t", kind="stable"),
        right.sort_values("t", kind="stable"),
        on="t",
        by="p",
        direction="backward",
        tolerance=ttl_s * 1_000_000,
    )
    out[joined["row"].to_numpy()[joined["deny"].notna().to_numpy()]] = True
    return out


def _units(denied: pd.DataFrame, dim: str, repeat: np.ndarray) -> pd.Series:
    """What each denial adds to its group's count (nulls add nothing): a tenant counts its
    distinct failing actors (principal, else session, else address), an address each decision
    (a cached repeat adds nothing), an actor every denial (its own repeats are its business)."""
    if dim == "tenant":
        return (
            text(denied["actor_principal"])
            .fillna(text(denied["actor_session"]))
            .fillna(text(denied["source_ip"]))
        )
    units = pd.Series(np.arange(len(denied), dtype=np.float64), index=denied.index)
    return units.where(~repeat) if dim == "ip" else units


def _measure(frame: pd.DataFrame, dim: str, keys: list[str]) -> pd.Series:
    grouped = frame.groupby(keys)["unit"]
    return grouped.nunique() if dim == "tenant" else grouped.count()


class AuthzFailureSpike(Detector[Settings]):
    id = "authz_failure_spike"
    title = "Authorization-failure spike"
    severity = "medium"
    # The authorizer's log only tells fresh decisions from cached ones (``COUNTED``).
    sources = ("cloudtrail", "apigateway", "authorizer")
    columns = (
        "event_id",
        "event_time",
        "source",
        "action",
        "actor_principal",
        "actor_type",
        "actor_session",
        "actor_tenant",
        "target_tenant",
        "outcome",
        "error_code",
        "status_code",
        "source_ip",
        "user_agent",
        "request_id",
    )
    baseline_columns = (
        "event_time",
        "source",
        "actor_principal",
        "actor_type",
        "actor_session",
        "actor_tenant",
        "target_tenant",
        "outcome",
        "status_code",
        "source_ip",
        "request_id",
    )
    baseline_only = (("outcome", ("denied",)),)  # a few per cent of 14 days of events
    window_only = baseline_only  # only denials are counted, and only they are evidence
    group_by = ("dimension", "value")
    partitions = ()
    """Whole. A group of one dimension (a tenant, an actor, an address) would depend only on the
    events of its value, one pass per dimension, but a finding whose requests lie mostly inside
    a larger one of another dimension is folded into it (``fold``: the token's failures inside
    its address's), and which are folded depends on the other dimension's spikes; a cached 403
    also needs the authorizer's Deny for the same principal, which an address's pass may not
    hold. Its history is the denied events only, a few per cent of the lookback."""
    lookback = timedelta(days=14)
    dedup_period = timedelta(hours=6)

    def _denials(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
        """The denials that count (``COUNTED`` sources, service principals left out unless
        included), and which of them are cached repeats."""
        s = self.settings
        denied = (text(frame["outcome"]) == "denied").to_numpy(dtype=bool)
        frame = frame[denied]
        repeat = cached_repeats(frame, s.cache_ttl_s)
        keep = text(frame["source"]).isin(COUNTED).to_numpy(dtype=bool, copy=True)
        if not s.include_service_principals:
            keep &= ~service_principals(frame)
        return frame[keep], repeat[keep]

    def fit(self, baseline: pd.DataFrame) -> Self:
        s = self.settings
        bad = sorted(set(s.dimensions) - set(DIMENSIONS))
        if bad:
            # Settings are validated at start; this guards objects built by hand.
            raise ValueError(f"{self.id}: unknown dimension {bad[0]!r}")
        p0, p1 = baseline.attrs.get("period", (None, None))
        self.history_end_ = None if p1 is None else pd.Timestamp(p1)
        if p0 is None or p1 is None or p1 <= p0:
            self.first_hour_, self.hours_ = 0, 0
        else:
            self.first_hour_ = int(pd.Timestamp(p0).floor("h").value // 1000 // HOUR_US)
            self.hours_ = max(int(pd.Timestamp(p1).value // 1000 // HOUR_US) - self.first_hour_, 0)
        # Only denials are kept: a 14-day history is a few per cent of the events.
        denied, repeat = self._denials(baseline)
        hour = epoch_us(denied["event_time"]) // HOUR_US - self.first_hour_
        self.counts_: dict[str, pd.Series] = {}
        for dim in s.dimensions:
            frame = pd.DataFrame(
                {"value": _values(denied, dim), "hour": hour, "unit": _units(denied, dim, repeat)}
            ).dropna(subset=["value"])
            frame = frame[(frame["hour"] >= 0) & (frame["hour"] < self.hours_)]
            self.counts_[dim] = _measure(frame, dim, ["value", "hour"])
        if self.hours_ >= s.seasonal_min_weeks * 168:
            self.season_, self.slots_ = "hour-of-week", 168
        elif self.hours_ >= s.daily_min_days * 24:
            self.season_, self.slots_ = "hour-of-day", 24
        else:
            self.season_, self.slots_ = "all hours", 1
        return self

    def _history(self, dim: str, values: list[str]) -> np.ndarray:
        """Dense counts [group, hour] of the history, zeros included (quiet hours are data)."""
        dense = np.zeros((len(values), self.hours_), dtype=np.float64)
        counts = self.counts_[dim]
        if self.hours_ == 0 or counts.empty:
            return dense
        have = counts[counts.index.get_level_values("value").isin(values)]
        pos = {v: i for i, v in enumerate(values)}
        rows = [pos[v] for v in have.index.get_level_values("value")]
        dense[rows, have.index.get_level_values("hour").to_numpy(dtype=np.int64)] = have.to_numpy()
        return dense

    def _level(self, history: np.ndarray, abs_hour: int) -> tuple[float, float, float]:
        """(level, spread, n samples) of one group's history for the bucket starting at
        ``abs_hour`` (hours since the epoch)."""
        s = self.settings
        if self.hours_ == 0:
            return 0.0, s.mad_floor, 0
        hours = np.arange(self.hours_) + self.first_hour_
        same = (hours - abs_hour) % self.slots_ == 0 if self.slots_ > 1 else np.ones_like(hours)
        sample = history[same.astype(bool)]
        level = float(np.median(sample))
        mad = float(np.median(np.abs(sample - level)))
        mad_all = float(np.median(np.abs(history - np.median(history))))
        spread = max(mad, mad_all, float(np.sqrt(level)), s.mad_floor)
        return level, spread, len(sample)

    def _floor(self, dim: str) -> tuple[int, int]:
        """(floor, count from which a spike is high) in the dimension's unit."""
        s = self.settings
        if dim == "tenant":
            return s.min_actors, s.high_actors
        return s.min_count, s.high_count

    def _baseline_text(self, dim: str, level: float, spread: float, samples: int) -> str:
        floor = f"floor {self._floor(dim)[0]}/h"
        if self.hours_ == 0:
            since = "the window" if self.history_end_ is None else _when(self.history_end_)
            return f"no history before {since}: baseline unknown; {floor} ({COUNTS[dim]})"
        return (
            f"median {level:.1f}/h, spread {spread:.1f} ({self.season_}, {samples} samples) "
            f"over {describe_hours(self.hours_)}; {floor} ({COUNTS[dim]})"
        )

    def hourly(self, window: pd.DataFrame, dimension: str, value: str) -> pd.DataFrame:
        """One group's hourly count, history and window, with what each window hour was
        compared with (for plots and notebooks; call after ``fit``). The count is in the
        dimension's unit (``COUNTS``): distinct failing actors for a tenant, denials otherwise.

        Columns: ``hour`` (start, UTC), ``part`` (``history`` or ``window``), ``count``, and for
        window hours ``level``, ``spread``, ``samples``, ``alert_at`` (the count at which the
        hour pages: the robust z reaches ``threshold`` and the count its floor) and
        ``flagged``. Only the on-the-hour buckets are shown; ``score`` also looks at buckets
        shifted by half an hour, so a burst cut by the hour can page while no hour here does.
        """
        s = self.settings
        if dimension not in self.counts_:
            raise ValueError(f"{self.id}: dimension {dimension!r} is not among {s.dimensions}")
        history = self._history(dimension, [value])[0]
        rows = [
            {"hour": self.first_hour_ + i, "part": "history", "count": int(n)}
            for i, n in enumerate(history)
        ]
        frame = window[text(window["source"]).isin(self.sources).to_numpy()]
        denied, repeat = self._denials(frame)
        mine = (_values(denied, dimension) == value).to_numpy(dtype=bool)
        units = pd.DataFrame(
            {
                "bucket": epoch_us(denied["event_time"])[mine] // HOUR_US,
                "unit": _units(denied, dimension, repeat)[mine].to_numpy(),
            }
        )
        per_hour = _measure(units, dimension, ["bucket"])
        p0, p1 = window.attrs.get("period", (None, None))
        if p0 is not None and p1 is not None:
            first = int(pd.Timestamp(p0).value // 1000 // HOUR_US)
            last = -(-int(pd.Timestamp(p1).value // 1000) // HOUR_US)  # ceiling
        elif len(per_hour):
            first, last = int(per_hour.index.min()), int(per_hour.index.max()) + 1
        else:
            first = last = 0
        floor = self._floor(dimension)[0]
        for b in range(first, last):
            n = int(per_hour.get(b, 0))
            level, spread, samples = self._level(history, b)
            alert_at = max(float(floor), level + s.threshold * spread / 0.6745)
            rows.append(
                {
                    "hour": b,
                    "part": "window",
                    "count": n,
                    "level": level,
                    "spread": spread,
                    "samples": samples,
                    "alert_at": alert_at,
                    "flagged": n >= alert_at,
                }
            )
        out = pd.DataFrame(
            rows,
            columns=[
                "hour",
                "part",
                "count",
                "level",
                "spread",
                "samples",
                "alert_at",
                "flagged",
            ],
        )
        out["hour"] = pd.to_datetime(out["hour"].astype(np.int64) * HOUR_US, unit="us", utc=True)
        out["flagged"] = out["flagged"].astype("boolean")
        return out

    def score(self, window: pd.DataFrame) -> pd.DataFrame:
        s = self.settings
        denied, repeat = self._denials(window)
        t_us = epoch_us(denied["event_time"])
        found = []
        for rank, dim in enumerate(s.dimensions):
            value = _values(denied, dim)
            unit = _units(denied, dim, repeat)
            floor = self._floor(dim)[0]
            for phase in (0, _HALF):
                bucket = (t_us - phase) // HOUR_US
                frame = pd.DataFrame(
                    {"value": value, "bucket": bucket, "unit": unit}, index=denied.index
                )
                frame = frame.dropna(subset=["value"])
                sizes = _measure(frame, dim, ["value", "bucket"])
                cand = sizes[sizes >= floor]
                if cand.empty:
                    continue
                values = sorted(set(cand.index.get_level_values("value")))
                history = self._history(dim, values)
                for (v, b), n in cand.items():
                    h = history[values.index(v)]
                    # A shifted bucket straddles two hours: compare with the busier one.
                    stats = [self._level(h, int(b))]
                    if phase:
                        stats.append(self._level(h, int(b) + 1))
                    level, spread, samples = max(stats)
                    z = 0.6745 * (n - level) / spread
                    mine = frame.index[(frame["value"] == v) & (frame["bucket"] == b)]
                    found.append((rank, dim, v, int(n), z, level, spread, samples, mine))
        repeats = pd.Series(repeat, index=denied.index)
        return self._findings_from(window, found, repeats)

    def _findings_from(
        self, window: pd.DataFrame, found: list[tuple], repeats: pd.Series
    ) -> pd.DataFrame:
        s = self.settings
        spikes = [f for f in found if f[4] >= s.threshold]
        by_group: dict[tuple[str, str], list[tuple]] = {}
        for f in spikes:
            by_group.setdefault((f[1], f[2]), []).append(f)
        groups = []
        for (dim, v), fs in by_group.items():
            rows = np.unique(np.concatenate([f[8].to_numpy() for f in fs]))
            top = max(fs, key=lambda f: (f[4], f[3]))
            groups.append((dim, v, rows, top, fs[0][0]))
        groups.sort(key=lambda g: (-len(g[2]), g[4], g[1]))
        out: list[dict] = []
        for dim, v, rows, top, _ in groups:
            _, _, _, n, z, level, spread, samples, _ = top
            sub = window.loc[rows]
            tenants = sorted(
                set(text(sub["target_tenant"]).dropna()) | ({v} if dim == "tenant" else set())
            )
            actor_tenants = text(sub["actor_tenant"]).dropna()
            high = self._floor(dim)[1]
            if self.hours_ == 0:
                sev = s.severity_no_history
            elif n >= high and z >= 2 * s.threshold:
                sev = s.severity_high
            else:
                sev = s.severity
            what = {"tenant": "tenant", "actor": "actor", "ip": "address"}[dim]
            unit = "actors or addresses failing" if dim == "tenant" else "failures"
            usual = "no history" if self.hours_ == 0 else f"usually {level:.0f}"
            out.append(
                {
                    "key": f"{dim}|{v}",
                    "score": z,
                    "threshold": s.threshold,
                    "severity": sev,
                    "actor": None if dim == "tenant" else v,
                    "actor_tenant": actor_tenants.mode().iloc[0] if len(actor_tenants) else None,
                    "tenants": tenants,
                    "baseline": self._baseline_text(dim, level, spread, samples),
                    "rows": rows,
                    "details": {
                        "dimension": dim,
                        "value": v,
                        "counts": COUNTS[dim],
                        "peak_count": n,
                        "peak_score": round(float(z), 3),
                        "history": self.hours_ > 0,
                        "cached_repeats": int(repeats.reindex(rows, fill_value=False).sum()),
                        "error_codes": most(text(sub["error_code"]), 5),
                        "also": [],
                    },
                    "title": f"Authorization failures spike for {what} {v}: {n} {unit} in an "
                    f"hour ({usual})",
                }
            )
        # Largest first; a group mostly inside a kept one is folded into it, not paged again.
        kept = fold(out, request_keys(window), s.overlap)
        return pd.DataFrame(kept, columns=list(SCORED))


def _when(ts: pd.Timestamp) -> str:
    return ts.tz_convert("UTC").strftime("%Y-%m-%d %H:%M UTC")
