"""token_replay: one bearer token used outside its context: by two clients at once, after its
expiry, or on another tenant than the one it claims.

Threat
------
A valid token stolen (a leaked log line, a compromised laptop, a browser extension, a proxy) and
replayed from the attacker's own machine while its owner goes on using it; a script that keeps
trying it after it expired; a token of tenant A sent to tenant B's URLs. Each request carries a
token the API accepts or judges on its own merits, so nothing but the token's *context* (who
sends it, when, for which tenant) gives the replay away.

Signal
------
A token is known by its fingerprint, never by itself: the Lambda authorizer logs the token's
digest (``token_fingerprint`` in ``[sources.authorizer]``; a token ingest finds in a log line is
replaced by ``redacted:sha256:<16 hex>``), and ingest keeps it in ``actor_session`` of the
authorizer's rows. API Gateway's access log carries no token, and a request served from the
authorizer cache has no authorizer row: such requests are not attributed to any token (never
guessed from the principal, who may hold several). So the signal is the authorizer's decisions
per fingerprint, each with its client (address and user agent): the authorizer row's own, else
those of the access-log line of the same request (``request_id``). A decision whose client is
unknown takes no part in (a) and is counted (``clients_unknown``). Per fingerprint, over the
window and the ``span_s`` before it:

- (a) ``concurrent``: decisions from two or more clients *interleaved*: a client comes back
  after another client used the token, within ``span_s`` (A, B, A). A device that changes
  network (A, A, B, B) never comes back and is not reported; two tabs share one client. Fires
  at ``min_returns`` returns.
- (b) ``expired``: the authorizer denied the token as expired (its decision reason matches
  ``expired_reason``; ingest keeps a Deny's reason in ``error_code``) ``min_expired`` times or
  more, or allowed it after it had said so (a success after expiry: an authorizer instance with
  a skewed clock, a verifier that stopped checking ``exp``). One stale tab's single 401 before
  its user logs in again stays under the floor.
- (c) ``tenant``: the authorizer's tenant claim (``actor_tenant``) differs from the tenant asked
  for (``target_tenant``) and no relationship explains it (``detectors.rules``). A decision
  where either tenant is not resolved is not judged and is counted (``tenant_unresolved``).

Severity: ``severity_succeeded`` (high) when a case fired with a request the authorizer
*allowed*: the replay reached data. ``severity_denied`` (medium) when every request of the
cases that fired was denied: the controls held, and someone should still look, because a token
that is being replayed was stolen and will be tried again after its owner logs in. One finding
per fingerprint and window, naming every case that fired.

Data needed
-----------
The Lambda authorizer's log with its token fingerprint, decision and reason (``actor_session``,
``outcome``, ``error_code``), its tenant claim and requested tenant (``actor_tenant``,
``target_tenant``), and the API Gateway access log for the client of each decision
(``source_ip``, ``user_agent`` joined on ``request_id``) where the authorizer does not log it.
One hour of history (decisions just before the window: a return or an expiry across the
window's start).

Known false positives
---------------------
- A phone flapping between Wi-Fi and mobile data within ``span_s`` with one token: the same
  user agent from two addresses, back and forth. The evidence shows one user agent and
  addresses of the same carrier / the user's home; raise ``min_returns`` if it is common.
- An office whose proxy leaves through several egress addresses in turn: one user agent, the
  company's addresses. Suppress the finding by ``address`` for those egress ranges.
- A token shared on purpose by two machines of one integration (a CI runner and a developer's
  laptop with the same API token): ask the tenant to give each its own.
- A release of the SaaS's login that lengthened tokens' lifetime while the authorizer still
  checks the old one: every token's expired denials rise together.

Runbook
-------
1. Read the finding: the token fingerprint, its principal and tenant, the cases (``concurrent``,
   ``expired``, ``tenant``), and per client (address, user agent) its decisions and times. A
   script user agent or a hosting provider's address beside the user's usual browser and office
   address is a replay; the same user agent from two addresses one after the other is a phone.
2. Ask whether anything was reached: ``succeeded`` counts the allowed decisions. Allowed:
   treat as account takeover from here on. Denied only: the controls held; go on to contain.
3. Contain: ``tenantwatch contain INCIDENT --token <fingerprint> --mode suspend --expires 24h
   --reason "token replay"`` (the reference authorizer then denies the token everywhere), and
   ``--address <ip>`` for the foreign client; revoke the user's refresh tokens and sessions in
   the identity provider so the thief cannot mint a new token, and flush the API Gateway
   authorizer cache for the stage.
4. Pull the evidence events from the lake by ``event_ids`` / ``request_ids``; query the lake
   for the foreign address and user agent over the last 30 days (other tokens, other tenants).
5. Scope: ``tenantwatch impact INCIDENT`` for what the allowed requests read or wrote; tell the
   tenant's admin and the user (how the token could have leaked: device, extension, a log).
6. Record the fingerprint, addresses and outcome on the incident; keep the forensic snapshot.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Self

import numpy as np
import pandas as pd

from detectors.base import SCORED, Detector, DetectorSettings, Partition, Severity
from detectors.evidence import epoch_us, text
from detectors.rules import Rules

CASES = ("concurrent", "expired", "tenant")
_US = 1_000_000


class Settings(DetectorSettings, frozen=True, forbid_unknown_fields=True, kw_only=True):
    # How close in time the uses of two clients must be to count as interleaved: a client coming
    # back to the token after another used it within this many seconds.
    span_s: int = 1800
    min_returns: int = 1  # such returns before a token's concurrent use is reported
    # The authorizer's decision reason for a token past its expiry (a regex, searched).
    expired_reason: str = r"(?i)\bexpired\b"
    min_expired: int = 3  # expired denials of one token before they are reported (one stale tab)
    tenant_mismatch: bool = True  # report (c): the claim is not the tenant asked for
    severity_succeeded: Severity = "high"
    severity_denied: Severity = "medium"

    def __post_init__(self) -> None:
        try:
            re.compile(self.expired_reason)
        except re.error as exc:  # a bad pattern fails at start, before any data is read
            raise ValueError(f"expired_reason: not a regular expression ({exc})") from None


_DECISION_COLS = (
    "event_time",
    "source",
    "actor_principal",
    "actor_session",
    "actor_tenant",
    "target_tenant",
    "outcome",
    "error_code",
    "source_ip",
    "user_agent",
    "request_id",
)


def decisions(frame: pd.DataFrame, expired_reason: str) -> pd.DataFrame:
    """The authorizer's decisions that name a token, one row each (indexed like ``frame``):
    ``t`` (µs), ``fp``, ``principal``, ``client`` (address and user agent, the authorizer's own
    or its request's access-log line's; None when neither is known), ``ip``, ``ua``, ``allowed``,
    ``expired``, ``claim``, ``target`` and ``twin`` (the access-log line's index, or -1)."""
    src = text(frame["source"])
    fp = text(frame["actor_session"])
    auth = frame[((src == "authorizer") & fp.notna()).to_numpy(dtype=bool)]
    access = frame[(src == "apigateway").to_numpy(dtype=bool)]
    req = text(access["request_id"])
    access = access[req.notna().to_numpy(dtype=bool)]
    req = text(access["request_id"])
    first = ~req.duplicated()
    by_req = pd.DataFrame(
        {
            "ip": text(access["source_ip"]).to_numpy(dtype=object),
            "ua": text(access["user_agent"]).to_numpy(dtype=object),
            "twin": access.index.to_numpy(),
        },
        index=req.to_numpy(dtype=object),
    )[first.to_numpy(dtype=bool)]
    areq = text(auth["request_id"])
    twin = by_req.reindex(areq.to_numpy(dtype=object))
    ip = text(auth["source_ip"]).fillna(pd.Series(twin["ip"].to_numpy(), index=auth.index))
    ua = text(auth["user_agent"]).fillna(pd.Series(twin["ua"].to_numpy(), index=auth.index))
    client = (ip.fillna("?") + " | " + ua.fillna("?")).where(ip.notna() | ua.notna(), None)
    outcome = text(auth["outcome"])
    reason = text(auth["error_code"]).fillna("")
    rx = re.compile(expired_reason)
    expired = (outcome == "denied") & reason.map(lambda r: bool(rx.search(r)))
    return pd.DataFrame(
        {
            "t": epoch_us(auth["event_time"]),
            "fp": text(auth["actor_session"]),
            "principal": text(auth["actor_principal"]),
            "client": client,
            "ip": ip,
            "ua": ua,
            "allowed": (outcome == "success").to_numpy(dtype=bool),
            "expired": expired.to_numpy(dtype=bool),
            "claim": text(auth["actor_tenant"]),
            "target": text(auth["target_tenant"]),
            "twin": twin["twin"].fillna(-1).to_numpy(dtype=np.int64),
        },
        index=auth.index,
    )


def returns(t: np.ndarray, client: np.ndarray, span_us: int) -> tuple[int, np.ndarray]:
    """How often a client came back to the token after another client used it, within
    ``span_us``, in time order; and the positions (into ``t``) of the interleaved uses."""
    last: dict[str, int] = {}
    marked = np.zeros(len(t), dtype=bool)
    n = 0
    prev: str | None = None
    for i in range(len(t)):
        c = client[i]
        if c is None:
            continue
        j = last.get(c)
        if prev is not None and c != prev and j is not None and t[i] - t[j] <= span_us:
            n += 1
            marked[j : i + 1] = True
        last[c] = i
        prev = c
    known = np.array([c is not None for c in client], dtype=bool)
    return n, marked & known


class TokenReplay(Detector[Settings]):
    id = "token_replay"
    title = "Token replayed outside its context"
    severity = "high"
    sources = ("apigateway", "authorizer")
    columns = ("event_id", "action", *_DECISION_COLS)
    baseline_columns = _DECISION_COLS
    group_by = ("token",)
    partitions = (Partition(("actor_session",), link="request_id", lead="authorizer"),)
    """By token fingerprint (the authorizer's ``actor_session``): a finding is one token's
    decisions, each with its client, read from the access-log line of the same request when
    the authorizer logs none. That line carries no token, only the request id: it is linked to
    its decision by it (``link``), and goes with the decision's token. The window is an hour of
    the API's logs and the history an hour before it."""
    # Decisions just before the window: a client's return or an expiry across its start.
    lookback = timedelta(hours=1)
    dedup_period = timedelta(hours=24)

    def fit(self, baseline: pd.DataFrame) -> Self:
        s = self.settings
        self.rules_ = Rules.of(self.relationships)
        _, p1 = baseline.attrs.get("period", (None, None))
        before = decisions(baseline, s.expired_reason)
        if p1 is not None and len(before):
            cut = int(pd.Timestamp(p1).value // 1000) - s.span_s * _US
            before = before[before["t"] >= cut]
        self.before_ = before.reset_index(drop=True)
        return self

    def score(self, window: pd.DataFrame) -> pd.DataFrame:
        s = self.settings
        now = decisions(window, s.expired_reason)
        if now.empty:
            return pd.DataFrame(columns=list(SCORED))
        explained = self.rules_.explained(
            pd.DataFrame(
                {
                    "actor_principal": now["principal"],
                    "actor_tenant": now["claim"],
                    "target_tenant": now["target"],
                }
            )
        ).to_numpy(dtype=bool)
        now = now.assign(
            pos=now.index.to_numpy(),
            mismatch=(now["claim"].notna() & now["target"].notna()).to_numpy(dtype=bool)
            & ~explained,
            unresolved=(now["claim"].isna() | now["target"].isna()).to_numpy(dtype=bool),
        )
        before = self.before_.assign(pos=-1, mismatch=False, unresolved=False)
        both = pd.concat([before, now], ignore_index=True) if len(before) else now
        both = both[both["fp"].isin(set(now["fp"]))]
        out = []
        for fp, g in both.groupby("fp", sort=True):
            found = self._token(str(fp), g.sort_values("t", kind="stable"), window)
            if found is not None:
                out.append(found)
        return pd.DataFrame(out, columns=list(SCORED))

    def _token(self, fp: str, g: pd.DataFrame, window: pd.DataFrame) -> dict[str, Any] | None:
        s = self.settings
        mine = (g["pos"] >= 0).to_numpy(dtype=bool)
        allowed = g["allowed"].to_numpy(dtype=bool)
        hits: dict[str, np.ndarray] = {}
        n_ret, inter = returns(
            g["t"].to_numpy(), g["client"].to_numpy(dtype=object), s.span_s * _US
        )
        if n_ret >= s.min_returns and (inter & mine).any():
            hits["concurrent"] = inter
        expired = g["expired"].to_numpy(dtype=bool)
        after = np.zeros(len(g), dtype=bool)
        if expired.any():
            after = allowed & (np.arange(len(g)) > int(np.flatnonzero(expired)[0]))
        if ((expired & mine).any() and expired.sum() >= s.min_expired) or (after & mine).any():
            hits["expired"] = expired | after
        mismatch = g["mismatch"].to_numpy(dtype=bool)
        if s.tenant_mismatch and (mismatch & mine).any():
            hits["tenant"] = mismatch
        if not hits:
            return None
        used = np.zeros(len(g), dtype=bool)
        for m in hits.values():
            used |= m
        sel = used & mine
        rows_auth = g["pos"].to_numpy()[sel]
        twins = g["twin"].to_numpy()[sel]
        rows = np.unique(np.concatenate([rows_auth, twins[twins >= 0]])).astype(np.int64)
        succeeded = {k: int((m & allowed).sum()) for k, m in hits.items()}
        high = any(succeeded.values())
        sub = g[used]
        principals = sub["principal"].dropna()
        principal = principals.mode().iloc[0] if len(principals) else None
        claims = sub["claim"].dropna()
        claim = claims.mode().iloc[0] if len(claims) else None
        targets = sorted(set(sub["target"].dropna()))
        clients = _clients(sub)
        details = {
            "token_fingerprint": fp,
            "principal": principal,
            "cases": list(hits),
            "succeeded": int((used & allowed).sum()),
            "denied": int((used & ~allowed).sum()),
            "succeeded_by_case": succeeded,
            "returns": n_ret,
            "clients": clients,
            "expired_denials": int(expired.sum()),
            "allowed_after_expiry": int(after.sum()),
            "tenant_mismatches": int(mismatch.sum()),
            "clients_unknown": int(g["client"].isna().sum()),
            "tenant_unresolved": int(g["unresolved"].sum()),
        }
        return {
            "key": fp,
            "score": float(len(hits)),
            "threshold": 1.0,
            "severity": s.severity_succeeded if high else s.severity_denied,
            "actor": fp,
            "actor_tenant": claim,
            "tenants": targets,
            "baseline": f"rule: interleaved clients within {s.span_s} s (>= {s.min_returns} "
            f"returns), >= {s.min_expired} expired denials or an allow after expiry, claim "
            "vs requested tenant",
            "rows": rows,
            "details": details,
            "title": _title(fp, principal, claim, hits, clients, expired, after, targets, high),
        }


def _clients(sub: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for _, c in sub.dropna(subset=["client"]).groupby("client", sort=False):
        out.append(
            {
                "source_ip": c["ip"].iloc[0],
                "user_agent": c["ua"].iloc[0],
                "decisions": len(c),
                "allowed": int(c["allowed"].sum()),
                "first": pd.Timestamp(int(c["t"].min()) * 1000, tz="UTC").isoformat(),
                "last": pd.Timestamp(int(c["t"].max()) * 1000, tz="UTC").isoformat(),
            }
        )
    out.sort(key=lambda c: (c["first"], str(c["source_ip"])))
    return out


def _title(
    fp: str,
    principal: str | None,
    claim: str | None,
    hits: dict[str, np.ndarray],
    clients: list[dict[str, Any]],
    expired: np.ndarray,
    after: np.ndarray,
    targets: list[str],
    high: bool,
) -> str:
    what = []
    if "concurrent" in hits:
        what.append(f"used from {len(clients)} clients at once")
    if "expired" in hits:
        n = int(after.sum())
        what.append(
            f"allowed {n} times after expiry" if n else f"tried {int(expired.sum())} times expired"
        )
    if "tenant" in hits:
        others = [t for t in targets if t != claim]
        what.append(f"sent to {', '.join(others[:3]) or 'another tenant'} against its claim")
    who = f"{principal or 'unknown principal'} ({claim or 'no tenant claim'})"
    outcome = "succeeded" if high else "all denied"
    return f"Token {fp} of {who} replayed: {'; '.join(what)} ({outcome})"
