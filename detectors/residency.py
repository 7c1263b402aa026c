"""residency: a tenant's data read or written in an AWS region outside the tenant's regions.

Threat
------
Data that must stay in a tenant's regions (an EU customer pinned to ``eu-west-1`` by contract or
law) leaves them without anyone deciding it: a replication or export job copies the tenant's
items to a replica or bucket in ``us-east-1``, a global table gains a replica in another region,
a migration reads the tenant's data from a stack in the wrong region, a regional API serves the
tenant from the wrong region. Nothing is denied and no tenant boundary is crossed, so the other
detectors see nothing; the residency promise is broken all the same.

Signal
------
One row at a time, no history needed. Every event with a target tenant that ``[[tenants]]``
gives regions to is judged by the region it happened in:

- CloudTrail: ``awsRegion`` (the ``region`` column), the region of the resource's endpoint (an
  S3 bucket's, a DynamoDB table replica's). Calls to global and identity services (IAM, STS,
  sign-in, Organizations, CloudFront, Route 53: ``ignore_services``) say nothing about where data
  lives and are not judged.
- API Gateway access logs carry no region. A request was processed in its API's region: the
  ``api_regions`` setting maps API ids (``$context.apiId``, the ``execute-api:<id>/<stage>`` of
  the ``service`` column; a custom domain's requests carry their API's id too) to regions; an API
  not mapped takes the region of the authorizer decision of the same request (its method ARN,
  ``arn:aws:execute-api:<region>:...``, written by API Gateway), unless
  ``api_region_from_authorizer`` is false. A request whose API region is known neither way (a
  cached decision of an API not mapped) is not judged and is counted (``unknown_region``).
  Authorizer lines are the same requests as access-log lines and are not judged on their own.
  (Where a window holds the access log but not yet its authorizer line, such as one new object's
  events, the request waits, counted, for the window that holds both.)

``data_outside``: the region is not one of the tenant's. Optionally (``actor_egress``, empty and
so off by default) ``actor_outside``: the event happened inside the tenant's regions, but its
source address is one of the SaaS's own egress addresses (NAT gateways) of a region outside them,
so the data was processed there. Only configured egress counts: an address the configuration
does not place in a region (a user on the internet, a customer's office) says nothing about
where data is processed and is never judged.

Severity: a write (``write_actions``) or a read of classified data outside the regions is
``severity_high`` (high); classified means the tenant's ``classification`` or a
``[[classification]]`` pattern found in the resource, of one of ``classes`` (empty: any class).
Any other successful read is ``severity_read`` (medium). A denied or failed attempt is
``severity_denied`` (low: recorded, not paged; nothing was read or written). One finding per
(kind, target tenant, actor) and window; its severity is the worst of its events.

What is not judged is counted, never guessed: events without a target tenant
(``no_target_tenant``: the platform's own operations, and events whose target tenant could not be
resolved), events of tenants ``[[tenants]]`` gives no regions (``tenants_without_regions``
tenants, ``events_of_tenants_without_regions`` events), events whose region is unknown
(``unknown_region``). Every finding's evidence carries the window's counts (``not_judged``).

Data needed
-----------
CloudTrail (``region``), API Gateway access logs and, for the API's region when ``api_regions``
does not map it, the authorizer's log. ``target_tenant``, ``outcome``, ``action``, ``service``,
``resource``, ``source_ip``, ``request_id``. ``[[tenants]]`` with each tenant's ``regions`` (and
``classification``); ``[[classification]]`` patterns.

Known false positives
---------------------
- A tenant whose regions changed (a contract now allows a second region) before
  ``[[tenants]]`` did: update its ``regions``.
- A new regional API not yet in ``api_regions`` whose authorizer runs in another region than
  the API (a shared authorizer): map the API id.
- Metadata calls that name a tenant's resource but move no data from a region's endpoint: add
  the service to ``ignore_services``.

Runbook
-------
1. Read the finding: the tenant, its allowed regions, the regions seen with counts, the actor,
   and how many events were writes or reads of classified data. ``denied`` only: nothing moved;
   find who tried and why, and lower the urgency.
2. Check ``[[tenants]]`` and the tenant's contract: is the region in fact allowed (a recent
   change)? If so, fix the configuration and close the incident as a false positive.
3. Pull the evidence events from the lake by the ``event_ids`` (``raw`` holds the records): list
   the resources written or read in the wrong region (bucket, table replica, API) and the job or
   person behind the actor (its role, session name, source address).
4. Stop the flow: disable the replication rule, the global table replica or the export job (for
   a person or a token, ``tenantwatch contain INCIDENT --principal ... --mode read-only
   --expires 4h --reason ...``; ``--tenant`` only if the tenant's data must not move at all).
5. Scope: ``tenantwatch impact INCIDENT`` for which of the tenant's data was read or written,
   then delete the copies outside the tenant's regions and keep a record of each deletion.
6. Escalate to the data protection officer or security lead: data outside its promised regions
   may be a contractual or legal notice duty (``tenantwatch impact INCIDENT --notice`` drafts
   the tenant's notice). Keep the forensic snapshot; after the fix, ``tenantwatch verify-fix``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Self

import msgspec
import numpy as np
import pandas as pd

from detectors.base import SCORED, Detector, DetectorSettings, Severity
from detectors.evidence import match, positions, severity_max, text
from pipeline.config import Classification, Relationship
from pipeline.config_tenants import REGION, Tenant
from pipeline.errors import ConfigError
from pipeline.schema import SEVERITY_RANK

# The write verbs of AWS APIs and HTTP methods (as ``tenantwatch impact`` reads actions).
WRITES = (
    r"^(?:Put|Delete|Update|Create|BatchWrite|BatchDelete|TransactWrite|Copy|Restore|Upload"
    r"|CompleteMultipartUpload|Modify|Import|Write|Replace|Replicate)"
    r"|^(?:PUT|POST|PATCH|DELETE) "
)
# Global and identity services: their events name no region where data lives.
GLOBAL_SERVICES = (
    "sts.amazonaws.com",
    "iam.amazonaws.com",
    "signin.amazonaws.com",
    "organizations.amazonaws.com",
    "cloudfront.amazonaws.com",
    "route53.amazonaws.com",
)
_API_ID = r"^execute-api:(?P<api>[^/]+)/"


class Settings(DetectorSettings, frozen=True, forbid_unknown_fields=True, kw_only=True):
    min_events: int = 1  # events of one group before it is a finding
    # API id (``$context.apiId``) -> the region the API runs in. Unmapped: the authorizer's.
    api_regions: dict[str, str] = msgspec.field(default_factory=dict)
    # An unmapped API's region from the authorizer decision of the same request (method ARN).
    api_region_from_authorizer: bool = True
    # Region -> the SaaS's own egress addresses there (CIDRs of its NAT gateways). Empty: the
    # actor's region is not judged (an address says nothing about a region unless placed here).
    actor_egress: dict[str, tuple[str, ...]] = msgspec.field(default_factory=dict)
    # Data classes whose reads outside the regions are high; empty: any class.
    classes: tuple[str, ...] = ()
    write_actions: str = WRITES
    ignore_services: tuple[str, ...] = GLOBAL_SERVICES
    severity_high: Severity = "high"  # a write, or a read of classified data
    severity_read: Severity = "medium"  # any other successful read
    severity_denied: Severity = "low"  # denied or failed: nothing moved


_TITLES = {
    "data_outside": "Tenant data outside its regions",
    "actor_outside": "Tenant data processed from outside its regions",
}
_JUDGED = ("cloudtrail", "apigateway")


class Residency(Detector[Settings]):
    id = "residency"
    title = "Tenant data outside its regions"
    severity = "high"
    sources = ("cloudtrail", "apigateway", "authorizer")
    columns = (
        "event_id",
        "event_time",
        "source",
        "service",
        "action",
        "actor_principal",
        "actor_session",
        "actor_tenant",
        "target_tenant",
        "resource",
        "outcome",
        "source_ip",
        "user_agent",
        "region",
        "request_id",
    )
    baseline_columns = ("event_time", "source")
    group_by = ("kind", "target_tenant", "actor")
    partitions = ()
    """Whole. A group is (kind, target tenant, actor), but every finding's evidence carries the
    whole window's ``not_judged`` counts (events without a target tenant, of tenants without
    regions, of unknown region), which no part of the window knows; and an API request's
    region may come from the authorizer line of the same request, whose target tenant the
    configuration may resolve otherwise. A rule: no history is read."""
    lookback = timedelta(0)  # a rule: no history needed
    dedup_period = timedelta(hours=24)

    def __init__(
        self,
        settings: Settings | None = None,
        relationships: tuple[Relationship, ...] = (),
        tenants: tuple[Tenant, ...] = (),
        classification: tuple[Classification, ...] = (),
    ) -> None:
        """``tenants`` and ``classification`` as configured (``[[tenants]]``,
        ``[[classification]]``): with no tenants, nothing is judged."""
        super().__init__(settings, relationships)
        self.tenants = tenants
        self.classification = classification

    @classmethod
    def parse_settings(cls, data: Mapping[str, Any]) -> DetectorSettings:
        """The types, then the regions' spelling, the CIDRs and the write pattern."""
        s = super().parse_settings(data)
        assert isinstance(s, Settings)
        at = f"detectors.{cls.id}"
        for api, region in s.api_regions.items():
            if not REGION.fullmatch(region):
                raise ConfigError(
                    f"{at}.api_regions.{api}: expected an AWS region such as eu-west-1, "
                    f"got {region!r}"
                )
        for region, nets in s.actor_egress.items():
            if not REGION.fullmatch(region):
                raise ConfigError(
                    f"{at}.actor_egress.{region}: expected an AWS region such as eu-west-1"
                )
            for i, net in enumerate(nets):
                try:
                    ipaddress.ip_network(net, strict=False)
                except ValueError:
                    raise ConfigError(
                        f"{at}.actor_egress.{region}[{i}]: expected an IP address or CIDR "
                        f"block, got {net!r}"
                    ) from None
        try:
            re.compile(s.write_actions)
        except re.error as exc:
            raise ConfigError(
                f"{at}.write_actions: not a valid regular expression ({exc})"
            ) from None
        return s

    def fit(self, baseline: pd.DataFrame) -> Self:
        # Nothing to learn from history: "fitting" reads the configuration into lookups.
        self.regions_ = {t.id: frozenset(t.regions) for t in self.tenants}
        self.classes_ = {t.id: t.classification for t in self.tenants if t.classification}
        self.patterns_ = [(re.compile(c.pattern), c.data_class) for c in self.classification]
        self.egress_ = [
            (ipaddress.ip_network(net, strict=False), region)
            for region, nets in sorted(self.settings.actor_egress.items())
            for net in nets
        ]
        return self

    # --- where each event happened ----------------------------------------------------------

    def _regions(self, w: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
        """Per event: the region it happened in (None: unknown) and how that is known."""
        s = self.settings
        source = text(w["source"])
        region = text(w["region"])
        how = pd.Series(None, index=w.index, dtype=object)
        how[region.notna()] = "region"
        api = (source == "apigateway") & region.isna()
        if api.any():
            ids = match(w.loc[api, "service"], _API_ID, "api")
            mapped = ids.map(lambda a: s.api_regions.get(a) if a is not None else None)
            region.loc[api] = mapped
            how[mapped[mapped.notna()].index] = "api_regions"
            left = api & region.isna()
            if s.api_region_from_authorizer and left.any():
                auth = (source == "authorizer") & region.notna() & w["request_id"].notna()
                by_request = dict(zip(text(w.loc[auth, "request_id"]), region[auth], strict=True))
                found = text(w.loc[left, "request_id"]).map(by_request)
                region.loc[left] = found
                how[found[found.notna()].index] = "authorizer"
        return region, how

    def _egress_region(self, ips: pd.Series) -> pd.Series:
        """Per event: the region whose configured egress its source address is (None: none)."""
        found: dict[str, str | None] = {}
        for ip in ips.dropna().unique():
            try:
                addr = ipaddress.ip_address(str(ip))
            except ValueError:
                found[ip] = None
                continue
            found[ip] = next((r for net, r in self.egress_ if addr in net), None)
        return ips.map(found)

    def _outside(self, target: pd.Series, region: pd.Series) -> pd.Series:
        """Per event (a tenant with regions, a known region): the region is not the tenant's.
        Judged once per distinct (tenant, region), not per event."""
        pairs = pd.MultiIndex.from_arrays([target, region])
        bad = [(t, r) for t, r in pairs.unique() if r not in self.regions_[t]]
        return pd.Series(pairs.isin(bad) if bad else False, index=target.index, dtype=bool)

    def _class(self, tenant: str, resource: str | None) -> str | None:
        for rx, data_class in self.patterns_:
            if resource and rx.search(resource):
                return data_class
        return self.classes_.get(tenant)

    # --- scoring ------------------------------------------------------------------------------

    def score(self, window: pd.DataFrame) -> pd.DataFrame:
        s = self.settings
        w = window
        source = text(w["source"])
        judged_source = source.isin(_JUDGED) & ~text(w["service"]).isin(s.ignore_services)
        target = text(w["target_tenant"])
        region, how = self._regions(w)
        has_regions = target.isin(self.regions_.keys())
        candidates = judged_source & has_regions & region.notna()
        not_judged = {
            "no_target_tenant": int((judged_source & target.isna()).sum()),
            "tenants_without_regions": int(target[judged_source & ~has_regions].nunique()),
            "events_of_tenants_without_regions": int(
                (judged_source & target.notna() & ~has_regions).sum()
            ),
            "unknown_region": int((judged_source & has_regions & region.isna()).sum()),
        }
        outside = self._outside(target[candidates], region[candidates]).reindex(
            w.index, fill_value=False
        )
        kind = pd.Series("", index=w.index, dtype=object)
        kind[outside] = "data_outside"
        where = region.where(outside)
        if self.egress_:
            inside = candidates & ~outside
            egress = self._egress_region(text(w.loc[inside, "source_ip"]))
            known = egress.notna()
            far = self._outside(target[egress.index][known], egress[known]).reindex(
                w.index, fill_value=False
            )
            kind[far] = "actor_outside"
            where[far] = egress[far[far].index]
        hit = kind != ""
        if not hit.any():
            return pd.DataFrame(columns=list(SCORED))
        c = pd.DataFrame(
            {
                "kind": kind[hit],
                "target": target[hit],
                "where": where[hit],
                "how": how[hit],
                "action": text(w.loc[hit, "action"]),
                "resource": text(w.loc[hit, "resource"]),
                "outcome": text(w.loc[hit, "outcome"]),
                "actor_tenant": text(w.loc[hit, "actor_tenant"]),
                "actor": text(w.loc[hit, "actor_principal"])
                .fillna(text(w.loc[hit, "actor_session"]))
                .fillna(text(w.loc[hit, "source_ip"]))
                .fillna("unknown"),
            }
        )
        write = c["action"].fillna("").str.contains(s.write_actions, regex=True)
        data_class = pd.Series(
            [self._class(t, r) for t, r in zip(c["target"], c["resource"], strict=True)],
            index=c.index,
            dtype=object,
        )
        classified = data_class.notna() & (
            data_class.isin(s.classes) if s.classes else pd.Series(True, index=c.index)
        )
        ok = c["outcome"] == "success"
        c["write"], c["class"] = write & ok, data_class
        c["sev"] = np.select(
            [~ok, write | classified],
            [s.severity_denied, s.severity_high],
            default=s.severity_read,
        )
        c["key"] = c["kind"] + "|" + c["target"] + "|" + c["actor"]
        rows = positions(c, ["key"])
        out = []
        for key, g in c.groupby("key", sort=True):  # per finding, not per event
            kind_, tenant = str(g["kind"].iloc[0]), str(g["target"].iloc[0])
            actor, actor_tenant = g["actor"].iloc[0], g["actor_tenant"].dropna()
            seen = {str(r): int(n) for r, n in g["where"].value_counts().items()}
            regions = sorted(self.regions_[tenant])
            outcomes = g["outcome"].value_counts().to_dict()
            title = (
                f"{_TITLES[kind_]}: {tenant}'s data in {', '.join(sorted(seen))} "
                f"(its regions: {', '.join(regions)}) by {actor}"
            )
            details = {
                "kind": kind_,
                "tenant": tenant,
                "tenant_regions": regions,
                "regions_seen": seen,
                "region_from": {str(k): int(n) for k, n in g["how"].value_counts().items()},
                "writes": int(g["write"].sum()),
                "classes": {str(k): int(n) for k, n in g["class"].value_counts().items()},
                "succeeded": int(outcomes.get("success", 0)),
                "denied": int(outcomes.get("denied", 0)),
                "not_judged": not_judged,
            }
            out.append(
                {
                    "key": key,
                    "score": float(len(g)),
                    "threshold": float(s.min_events),
                    "severity": severity_max(g["sev"]),
                    "actor": actor,
                    "actor_tenant": actor_tenant.iloc[0] if len(actor_tenant) else None,
                    "tenants": [tenant],
                    "baseline": f"rule: {len(self.regions_)} tenants with regions configured; "
                    f"{tenant}: {', '.join(regions)}",
                    "rows": rows[key],
                    "details": details,
                    "title": title,
                }
            )
        out.sort(key=lambda r: (-SEVERITY_RANK[str(r["severity"])], str(r["key"])))
        return pd.DataFrame(out, columns=list(SCORED))
