"""access_pattern: an actor touched what neither it nor its peers ever touch, weighed by the data.

Threat
------
An insider or a stolen session of a legitimate user, inside its own tenant: a reporting user who
starts bulk-downloading the tenant's invoices, a support-desk account exporting payroll, a token
that only ever listed invoices now reading every object under a billing prefix. Nothing crosses
a tenant boundary, so only the actor's own habits (and its colleagues') tell it apart.

Signal
------
Per actor (principal and actor tenant), four kinds of value are read from each successful or
failed event (denied ones did nothing: ``authz_failure_spike``'s business) of CloudTrail and
API Gateway's access log:

- the action (``GetObject``, ``GET /tenants/{tenantId}/invoices/{id}``);
- the resource type (``s3``, ``dynamodb``, ``api path``, an ARN's service);
- the resource prefix: the bucket, table or ARN, then at most ``prefix_depth`` path segments
  of the key or path, never its last (the object), a segment holding a digit written ``*``
  and left out at the end (``s3://data/tenants/*/invoices``, ``s3://bkt/exports``: tenant
  ids, dates and item ids are not places);
- the region.

A value is *novel* for the actor when its own history (the lookback, 14 days) never shows it
AND fewer than ``peer_share`` of its peers show it. Peers are the other actors of its tenant with
the same role: the assumed role's name for IAM sessions, the identity type (``token`` ...) for
API principals (``peers = "tenant"``: every actor of the tenant). An event is novel when one of
its values is; an actor with ``min_events`` novel events in the window is a finding (the floor:
one stray request never pages).

The severity weighs what was touched: the novel events' resources are classified by
``[[classification]]`` (``pipeline.classification``, as ``tenantwatch impact`` classifies them),
and a class with ``min_class_events`` novel events raises the finding to ``classes[<class>]``
(``severity`` for a class not listed). Novelty over unclassified data alone stays
``severity_unclassified`` (low: recorded, not paged) unless it reaches ``large`` events, then
``severity``. An actor with no history at all (a new user, a new role session) is kept at
``severity_no_history`` (low) whatever it touched, its baseline saying "no history": novelty
alone says nothing about someone never seen.

Not actors: AWS services acting for themselves (``pipeline.principals``), the SaaS's service
roles (``[[relationships]]`` ``service_role``), and events without an actor tenant; those are
skipped, and a finding's evidence counts the skipped events of its tenant (their actor tenant,
else their target tenant: ``skipped``).

Data needed
-----------
CloudTrail (data events for S3 and DynamoDB) and API Gateway access logs, with
``[[classification]]`` patterns for the data that matters. ``action``, ``actor_principal``,
``actor_type``, ``actor_tenant``, ``resource``, ``region``, ``outcome`` over 14 days of history
(strings dictionary-encoded, never a Python object per event; denied events not read), and
``target_tenant``, ``source_ip``, ``user_agent`` in the window for the evidence.

Known false positives
---------------------
- A new duty: a user handed the month-end close reads the billing prefix for the first time.
  Its peers' history covers it once two colleagues share the duty (``peer_share``).
- A reorganised bucket or API: every actor's prefixes are new at once (many findings of one
  day, the same new prefix in each ``novel`` list); raise ``prefix_depth`` or wait a day.
- A role shared by people with different jobs: peers then say little; ``peers = "tenant"``.

Runbook
-------
1. Read the finding: the actor, its tenant, ``novel`` (what was new: actions, prefixes, types,
   regions), ``classes`` (the kinds of data among the new events) and the baseline (how much
   history the actor and its peers have). ``no history`` findings are low: a new user.
2. Ask whether the work is expected: the actor's manager or the tenant's admin (a new project,
   a month-end export, a migration). If it is, close as a false positive; a standing duty
   stops paging once its peers' history shows it.
3. Pull the evidence events from the lake by ``event_ids``: the objects read (``resource``),
   how many, from which address and user agent; compare the address with the actor's usual
   ones (the lake over the lookback).
4. If not expected, treat the session as compromised: ``tenantwatch contain INCIDENT
   --principal <actor> --mode read-only --expires 4h --reason ...``, revoke the role's active
   sessions or the user's tokens, and reset the user's credentials.
5. Scope: ``tenantwatch impact INCIDENT`` for which objects of which kind were read or written
   (its customer notice names the data classes); query the lake for the same actor and
   address over the last 30 days.
6. Escalate to the security lead for classified data read in bulk (financial, personal): a
   data incident with notification duties, even inside one tenant. Keep the snapshot.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import timedelta
from functools import partial
from typing import Any, Literal, Self, TypeAlias

import msgspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from detectors.base import SCORED, Detector, DetectorSettings, Partition, Severity, period
from detectors.evidence import any_of, describe_hours, text
from detectors.rules import Rules
from pipeline.classification import DataClasses
from pipeline.config import Classification, Relationship
from pipeline.principals import SERVICE_NAME, SERVICE_TYPE
from pipeline.schema import SEVERITY_RANK

DIMENSIONS = ("action", "type", "prefix", "region")
_ROLE = re.compile(r":assumed-role/(?P<role>[^/]+)/")
_SEP = "\x1f"
# Resource shapes ingest writes -> their type (an ARN: its service).
_TYPES = {"s3://": "s3", "dynamodb:": "dynamodb", "/": "api path"}
# Why an event is no actor's (``_Keys.skip``: 0 is an actor's event, -1 one not read at all).
SKIPPED = ("service principal", "no actor", "no actor tenant")
Column: TypeAlias = pa.Array | pa.ChunkedArray | pd.Series


class Settings(DetectorSettings, frozen=True, forbid_unknown_fields=True, kw_only=True):
    min_events: int = 10  # novel events of one actor in a window before it is a finding
    # A value at least this share of the actor's peers show in their history is not novel.
    peer_share: float = 0.1
    # An actor's peers: its tenant's actors of the same role (IAM) or identity type (API
    # principals); "tenant": all its tenant's actors.
    peers: Literal["role", "tenant"] = "role"
    prefix_depth: int = 3  # path segments of a key or path kept in its prefix
    dimensions: tuple[str, ...] = DIMENSIONS
    # [[classification]] class -> severity; a class not named here is ``severity``.
    classes: dict[str, Severity] = msgspec.field(default_factory=dict)
    min_class_events: int = 3  # novel events of one class before it raises the severity
    large: int = 200  # novel events on unclassified data that are ``severity`` all the same
    severity: Severity = "medium"
    severity_unclassified: Severity = "low"
    # Nothing is known of an actor without history: recorded, not paged.
    severity_no_history: Severity = "low"


class AccessPattern(Detector[Settings]):
    id = "access_pattern"
    title = "Access outside the actor's usual pattern"
    severity = "medium"
    sources = ("cloudtrail", "apigateway")
    columns = (
        "event_id",
        "event_time",
        "source",
        "action",
        "actor_principal",
        "actor_type",
        "actor_tenant",
        "target_tenant",
        "resource",
        "region",
        "outcome",
        "source_ip",
        "user_agent",
    )
    baseline_columns = (
        "event_time",
        "source",
        "action",
        "actor_principal",
        "actor_type",
        "actor_tenant",
        "resource",
        "region",
        "outcome",
    )
    baseline_only = (("outcome", ("success", "error")),)  # denied events did nothing
    fit_arrow = True  # 14 days of history stay dictionary-encoded Arrow, never a DataFrame
    group_by = ("actor", "actor_tenant")
    partitions = (Partition(("actor_tenant", "target_tenant")),)
    """By the actor's tenant: an actor is a principal of one actor tenant, and its peers (the
    tenant's actors of its role, or all of them) are of the same tenant, so its history, its
    peers' and its window events share the key. The skipped events a finding counts are its
    tenant's by the same coalesce (an event without an actor tenant counts for its target
    tenant)."""
    lookback = timedelta(days=14)
    dedup_period = timedelta(hours=24)

    def __init__(
        self,
        settings: Settings | None = None,
        relationships: tuple[Relationship, ...] = (),
        *,
        classification: tuple[Classification, ...] = (),
    ) -> None:
        """``classification``: ``[[classification]]`` as configured (``detectors.from_config``
        passes it); without it no data is classified and nothing is raised above ``low`` but
        ``large`` novelty."""
        super().__init__(settings, relationships)
        self.classes = DataClasses.of(classification)

    # --- what an event's values are ---------------------------------------------------------

    def _keys(self, data: pa.Table | pd.DataFrame) -> _Keys:
        """Each row's actor (or -1: not an actor, ``skip`` says why) and its codes per
        dimension, computed once per distinct value (Arrow kernels over the dictionaries)."""
        s = self.settings
        bad = sorted(set(s.dimensions) - set(DIMENSIONS))
        if bad:  # settings are validated at start; this guards objects built by hand
            raise ValueError(f"{self.id}: unknown dimension {bad[0]!r}")
        principals, p = _codes(data["actor_principal"])
        tenants, t = _codes(data["actor_tenant"])
        types, ty = _codes(data["actor_type"])
        outcomes, oc = _codes(data["outcome"])
        ok = oc >= 0
        denied = _where(outcomes, lambda v: v == "denied")
        ok &= ~denied[oc]
        skip = np.full(len(oc), -1, dtype=np.int8)  # not read: denied, or no outcome
        skip[ok] = 0
        rules = Rules.of(self.relationships)
        service_rx = re.compile(any_of([*rules.service_roles, SERVICE_NAME]) or SERVICE_NAME)
        names = principals.to_pylist()  # distinct principals: users x roles, never per event
        service = np.array([bool(service_rx.search(x or "")) for x in names] + [False])
        service_type = _where(types, lambda v: v == SERVICE_TYPE)
        is_service = ok & (service[p] | service_type[ty])
        skip[is_service] = 1
        ok &= ~is_service
        no_actor = ok & (p < 0)
        skip[no_actor] = 2
        no_tenant = ok & (p >= 0) & (t < 0)
        skip[no_tenant] = 3
        ok &= (p >= 0) & (t >= 0)
        pair = np.where(ok, p.astype(np.int64) * (len(tenants) + 1) + t, -1)
        uniq, first, actor = np.unique(pair, return_index=True, return_inverse=True)
        actor = np.where(ok, actor - int(uniq.size > 0 and uniq[0] == -1), -1)
        tenant_names = tenants.to_pylist()
        type_names = types.to_pylist()
        ids, groups = [], []
        for u, row in zip(uniq, first, strict=True):
            if u < 0:
                continue
            who, tenant = names[p[row]], tenant_names[t[row]]
            ids.append(f"{who}{_SEP}{tenant}")
            m = _ROLE.search(who or "")
            role = m.group("role") if m else (type_names[ty[row]] if ty[row] >= 0 else "-")
            groups.append(tenant if s.peers == "tenant" else f"{tenant}{_SEP}{role}")
        dims: dict[str, tuple[list[Any], np.ndarray]] = {}
        resources, rc = _codes(data["resource"])  # distinct resources: Arrow only, never listed
        for dim in s.dimensions:
            if dim == "action":
                values, codes = _codes(data["action"])
            elif dim == "region":
                values, codes = _codes(data["region"])
            elif dim == "type":
                values, codes = _derive(resources, rc, _resource_type)
            else:
                values, codes = _derive(resources, rc, partial(_prefix, depth=s.prefix_depth))
            dims[dim] = (values.to_pylist(), np.where(actor >= 0, codes, -1))
        return _Keys(actor, ids, groups, dims, skip, resources, rc)

    # --- fit ---------------------------------------------------------------------------------

    def fit(self, baseline: pd.DataFrame) -> Self:
        """Per actor, the values its history shows; per peer group, how many actors show each
        value; both from distinct (actor, value) pairs only."""
        p0, p1 = period(baseline)
        self.hours_ = 0.0 if p0 is None or p1 is None else (p1 - p0).total_seconds() / 3600
        k = self._keys(baseline)
        self.history_: dict[str, int] = {}
        self.group_of_: dict[str, str] = {}
        self.group_size_: Counter[str] = Counter()
        if k.ids:
            counts = np.bincount(k.actor[k.actor >= 0], minlength=len(k.ids))
            for i, (a, g) in enumerate(zip(k.ids, k.groups, strict=True)):
                self.history_[a] = int(counts[i])
                self.group_of_[a] = g
                self.group_size_[g] += 1
        self.seen_: dict[str, set[tuple[str, Any]]] = {}
        self.peer_count_: dict[str, Counter[tuple[str, Any]]] = {}
        for dim, (values, codes) in k.dims.items():
            seen: set[tuple[str, Any]] = set()
            peers: Counter[tuple[str, Any]] = Counter()
            for ai, v in _pairs(k.actor, codes, len(values)):
                seen.add((k.ids[ai], values[v]))
                peers[(k.groups[ai], values[v])] += 1
            self.seen_[dim], self.peer_count_[dim] = seen, peers
        return self

    # --- score -------------------------------------------------------------------------------

    def _novel(self, dim: str, actor: str, group: str, value: Any) -> bool:
        if (actor, value) in self.seen_[dim]:
            return False
        peers = self.group_size_[group] - (actor in self.history_)
        share = self.peer_count_[dim][(group, value)] / peers if peers > 0 else 0.0
        return share < self.settings.peer_share

    def score(self, window: pd.DataFrame) -> pd.DataFrame:
        s = self.settings
        k = self._keys(window)
        novel = np.zeros(len(window), dtype=bool)
        by_dim: dict[str, np.ndarray] = {}
        for dim, (values, codes) in k.dims.items():
            width = len(values) + 1
            key = np.where(codes >= 0, k.actor.astype(np.int64) * width + codes, -1)
            uniq, inverse = np.unique(key, return_inverse=True)
            flags = np.zeros(uniq.size, dtype=bool)
            for i, u in enumerate(uniq):  # distinct (actor, value) pairs of the window
                if u < 0:
                    continue
                a, v = divmod(int(u), width)
                flags[i] = self._novel(dim, k.ids[a], k.groups[a], values[v])
            by_dim[dim] = flags[inverse]
            novel |= by_dim[dim]
        counts = np.bincount(k.actor[novel], minlength=len(k.ids)) if k.ids else np.array([])
        # Each event's tenant for the skipped counts: its actor tenant, else its target tenant.
        scope = text(window["actor_tenant"]).fillna(text(window["target_tenant"])).to_numpy()
        out = []
        for ai in np.flatnonzero(counts >= s.min_events):
            rows = np.flatnonzero(novel & (k.actor == ai))
            out.append(self._finding(window, k, int(ai), rows, by_dim, scope))
        out.sort(key=lambda r: (-SEVERITY_RANK[str(r["severity"])], -r["score"], r["key"]))
        return pd.DataFrame(out, columns=list(SCORED))

    def _finding(
        self,
        window: pd.DataFrame,
        k: _Keys,
        a: int,
        rows: np.ndarray,
        by_dim: dict[str, np.ndarray],
        scope: np.ndarray,
    ) -> dict[str, Any]:
        s = self.settings
        actor_id, group = k.ids[a], k.groups[a]
        principal, tenant = actor_id.split(_SEP, 1)
        history = self.history_.get(actor_id, 0)
        classes = self._classes(k, rows)
        unclassified = len(rows) - sum(classes.values())
        if not history:
            sev = s.severity_no_history
        else:
            raised = [
                s.classes.get(c, s.severity) for c, n in classes.items() if n >= s.min_class_events
            ]
            if unclassified >= s.large:
                raised.append(s.severity)
            sev = max(raised, key=SEVERITY_RANK.__getitem__, default=s.severity_unclassified)
        novel: dict[str, list[list[Any]]] = {}
        for dim, flags in by_dim.items():
            values, codes = k.dims[dim]
            mine = codes[rows][flags[rows]]
            top = _most(Counter(values[c] for c in mine))[:5]  # distinct few per finding
            if top:
                novel[dim] = [[str(v), int(c)] for v, c in top]
        targets = text(window["target_tenant"].iloc[rows])
        tenants = sorted(set(targets.dropna()))
        peers = self.group_size_[group] - (actor_id in self.history_)
        what = ", ".join(f"{c} ({n})" for c, n in _most(classes)) or "unclassified data"
        skipped = np.bincount(k.skip[(scope == tenant) & (k.skip > 0)], minlength=len(SKIPPED) + 1)
        where = novel.get("prefix", novel.get("action", [["?", 0]]))[0][0]
        return {
            "key": f"{principal}|{tenant}",
            "score": float(len(rows)),
            "threshold": float(s.min_events),
            "severity": sev,
            "actor": principal,
            "actor_tenant": tenant,
            "tenants": tenants,
            "baseline": self._baseline_text(principal, history, peers, group),
            "rows": rows,
            "details": {
                "novel": novel,
                "classes": dict(classes),
                "unclassified": unclassified,
                "history_events": history,
                "peers": peers,
                "peer_group": group.replace(_SEP, " / "),
                "unresolved_targets": int(targets.isna().sum()),
                "skipped": {r: int(n) for r, n in zip(SKIPPED, skipped[1:], strict=True) if n},
            },
            "title": f"Unusual access by {principal} ({tenant}): {len(rows)} events new to it "
            f"and its peers, on {what}, e.g. {where}",
        }

    def _classes(self, k: _Keys, rows: np.ndarray) -> Counter[str]:
        """How many of ``rows`` touched each class of data (per distinct resource)."""
        out: Counter[str] = Counter()
        if not self.classes:
            return out
        codes, n = np.unique(k.resource_codes[rows], return_counts=True)
        names = k.resources.take(pa.array(np.maximum(codes, 0))).to_pylist() if codes.size else []
        for c, m, name in zip(codes, n, names, strict=True):
            cls = self.classes.data_class(name) if c >= 0 else None
            if cls is not None:
                out[cls] += int(m)
        return out

    def _baseline_text(self, principal: str, history: int, peers: int, group: str) -> str:
        span = describe_hours(self.hours_) if self.hours_ else "the lookback"
        group = group.replace(_SEP, " / ")
        mates = f"{peers} peers ({group})" if peers else f"no peers ({group}) in the history"
        if not history:
            return f"no history: {principal} has no events over {span}; {mates}"
        if not peers:
            return f"{history} events over {span}; new = never in its own history; {mates}"
        return (
            f"{history} events over {span}; new = never in its own history and in fewer than "
            f"{self.settings.peer_share:.0%} of {mates}"
        )


# --- columns as dictionaries ---------------------------------------------------------------------


class _Keys:
    """What ``_keys`` reads: ``actor`` per row (index into ``ids``/``groups``, -1: none);
    ``dims``: per dimension its distinct values and each row's code (-1: none); ``skip`` per
    row: 0 an actor's, else 1 + its index in ``SKIPPED`` (-1: not read, a denied event)."""

    def __init__(
        self,
        actor: np.ndarray,
        ids: list[str],
        groups: list[str],
        dims: dict[str, tuple[list[Any], np.ndarray]],
        skip: np.ndarray,
        resources: pa.Array,
        resource_codes: np.ndarray,
    ) -> None:
        self.actor, self.ids, self.groups, self.dims = actor, ids, groups, dims
        self.skip, self.resources, self.resource_codes = skip, resources, resource_codes


def _most(counts: Counter[Any]) -> list[tuple[Any, int]]:
    """``counts`` most first, ties by value: not by the order the rows came in."""
    return sorted(counts.items(), key=lambda vc: (-vc[1], str(vc[0])))


def _codes(col: Column) -> tuple[pa.Array, np.ndarray]:
    """A string column (Arrow, dictionary-encoded or not, or pandas) as its distinct values and
    each row's code into them (-1: null); categoricals and dictionaries are not re-encoded."""
    arr: Any = pa.array(col, from_pandas=True) if isinstance(col, pd.Series) else col
    if isinstance(arr, pa.ChunkedArray):
        if pa.types.is_dictionary(arr.type):
            arr = pa.table({"c": arr}).unify_dictionaries()["c"]
        arr = arr.combine_chunks() if arr.num_chunks else pa.array([], arr.type)
    if not pa.types.is_dictionary(arr.type):
        arr = arr.cast(pa.string()).dictionary_encode()
    codes = arr.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    return arr.dictionary.cast(pa.string()), codes


def _derive(values: pa.Array, codes: np.ndarray, fn: Any) -> tuple[pa.Array, np.ndarray]:
    """A value derived from each distinct value (``fn`` over the dictionary, an Arrow kernel),
    as its own distinct values and each row's code."""
    derived = fn(values).dictionary_encode() if len(values) else pa.array([], pa.string())
    if not len(values):
        return derived, np.full(codes.shape, -1, dtype=np.int64)
    remap = derived.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    return derived.dictionary, np.append(remap, -1)[codes]


def _where(values: pa.Array, test: Any) -> np.ndarray:
    """``test`` of each distinct value, indexable by a row's code (-1 -> False)."""
    return np.array([bool(test(v)) for v in values.to_pylist()] + [False])


def _pairs(actor: np.ndarray, codes: np.ndarray, n_values: int) -> list[tuple[int, int]]:
    """The distinct (actor, value code) pairs of the rows that have both."""
    ok = (actor >= 0) & (codes >= 0)
    key = np.unique(actor[ok].astype(np.int64) * (n_values + 1) + codes[ok])
    return [divmod(int(x), n_values + 1) for x in key]


def _resource_type(values: pa.Array) -> pa.Array:
    """``s3``, ``dynamodb``, ``api path`` or an ARN's service, from the resource's shape."""
    found = pc.extract_regex(values, r"^(?P<k>s3://|dynamodb:|arn:[^:]*:[^:]*:|/)")
    kind = pc.struct_field(found, "k")
    arn = pc.replace_substring_regex(kind, r"^arn:[^:]*:([^:]*):$", r"\1")
    named = kind
    for shape, name in _TYPES.items():
        named = pc.if_else(pc.equal(kind, shape), name, named)
    return pc.if_else(pc.starts_with(kind, "arn:"), arn, named)


def _prefix(values: pa.Array, depth: int) -> pa.Array:
    """The bucket, table, ARN or API root and at most ``depth`` segments of the key or path
    after it, never the last (the object itself); a segment holding a digit is ``*`` (and
    left out at the end)."""
    found = pc.extract_regex(
        values, rf"^(?P<root>(?:s3://)?[^/]*)(?P<rest>(?:/[^/]+){{0,{max(depth, 0)}}})/"
    )
    rest = pc.replace_substring_regex(pc.struct_field(found, "rest"), r"/[^/]*[0-9][^/]*", "/*")
    # A trailing ``*`` names no place: ``exports/<date>/`` is ``exports``, as its listing is.
    rest = pc.replace_substring_regex(rest, r"(?:/\*)+$", "")
    root = pc.struct_field(found, "root")
    joined = pc.binary_join_element_wise(root, rest, "")
    # No "/" after the root (a bucket, a table, an ARN): the resource is its own prefix; "s3:"
    # is the root a bucket alone would leave.
    joined = pc.if_else(pc.equal(root, "s3:"), pa.scalar(None, pa.string()), joined)
    return pc.coalesce(joined, values)
