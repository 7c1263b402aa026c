"""The configuration: one TOML file, validated once at start into frozen objects.

Every key is optional and the defaults are neutral: no tenant strategies, lookups,
relationships or tickets, and the field names API Gateway access logs and Powertools authorizer
logs commonly use. Everything a SaaS chooses (where its tenant ids live, its log field names, its
registries and tickets) is written in its own file; ``tenantwatch simulate`` writes one for the
world it simulates (``sample_logs/tenantwatch.toml``), and ``tenantwatch.example.toml`` at the
top of the repository is a commented starting point.

Validation is msgspec's: unknown keys and wrong types are rejected with the key's path, which we
reshape into one line such as ``tenantwatch.toml: tenancy.actor[1].pattern: expected a string,
got an integer``. Checks msgspec cannot express (regexes that must compile and capture
``tenant``, lookups that exist, field paths that parse) run right after, with the same message
shape. Relative file names in the file (lookup and ticket files) are relative to its folder.

The environment is read here and nowhere else: ``TENANTWATCH_<SECTION>_<KEY>`` overrides a scalar
key of a top-level section (for Lambda), e.g. ``TENANTWATCH_LAKE_ROOT=s3://bucket/lake``,
``TENANTWATCH_ALERTING_SNS_TOPIC_ARN=arn:...`` or ``TENANTWATCH_CONTAINMENT_TABLE=<table>``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from pipeline.config_suppressions import Suppression
from pipeline.config_tenants import Tenant
from pipeline.errors import ConfigError

DEFAULT_FILE = "tenantwatch.toml"
ENV_PREFIX = "TENANTWATCH_"


class _Base(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


# --- tenant resolution strategies -----------------------------------------------------------
# Each is tagged by ``kind``; a list of them, in order of trust, resolves a tenant: the first that
# yields a value wins and the row records its ``kind``.


class SessionTag(_Base, frozen=True, tag="session_tag", tag_field="kind"):
    """A principal tag passed at AssumeRole / AssumeRoleWithWebIdentity (CloudTrail logs it only
    on that call; later calls are joined to it by the session's access key id)."""

    key: str = "tenant_id"


class RoleSessionName(_Base, frozen=True, tag="role_session_name", tag_field="kind"):
    """A regex with a ``tenant`` group over the role session name of an assumed-role ARN."""

    pattern: str
    roles: tuple[str, ...] = ()  # role names it applies to; empty: every role
    lookup: str = ""


class RoleArn(_Base, frozen=True, tag="role_arn", tag_field="kind"):
    """A regex with a ``tenant`` group over the role ARN (one role per tenant)."""

    pattern: str
    lookup: str = ""


class SourceIdentity(_Base, frozen=True, tag="source_identity", tag_field="kind"):
    """A regex with a ``tenant`` group over ``sourceIdentity``."""

    pattern: str
    lookup: str = ""


class AuthorizerContext(_Base, frozen=True, tag="authorizer_context", tag_field="kind"):
    """A value of the Lambda authorizer's context (access logs) or the token's tenant claim
    (authorizer logs)."""

    key: str = "tenantId"


class SessionOrigin(_Base, frozen=True, tag="session_origin", tag_field="kind"):
    """The tenant of whoever called ``AssumeRole*`` to start the session, joined to later calls
    by the session's access key id (as ``session_tag``). Across a cross-account ``AssumeRole``
    the caller's tenant is kept; in a chain of roles, the first origin."""


SOURCES = ("cloudtrail", "apigateway", "authorizer")
SourceName = Literal["cloudtrail", "apigateway", "authorizer"]


class Field(_Base, frozen=True, tag="field", tag_field="kind"):
    """Any field of a record of ``source``, by a field path (``pipeline.fieldpath``):
    ``userIdentity.accountId``, ``resources[*].accountId``, ``claims.account``. For
    ``apigateway`` and ``authorizer``, ``$name`` is the column ``name`` of the source's
    ``[sources.*]`` mapping (``$requested_tenant``). For CloudTrail read from Amazon Security
    Lake, ``ocsf.`` paths read the OCSF row itself (``ocsf.actor.user.account.uid``).

    Without ``pattern`` the whole value is the candidate; ``when`` keeps the strategy to records
    whose fields (paths) hold one of the listed values (for a ``[*]`` path: one of them does)."""

    source: SourceName
    path: str
    pattern: str = ""
    lookup: str = ""
    when: dict[str, tuple[str, ...]] = msgspec.field(default_factory=dict)


ActorStrategy = (
    SessionTag
    | SessionOrigin
    | RoleSessionName
    | RoleArn
    | SourceIdentity
    | AuthorizerContext
    | Field
)


class S3Key(_Base, frozen=True, tag="s3_key", tag_field="kind"):
    pattern: str
    buckets: tuple[str, ...] = ()  # empty: every bucket
    lookup: str = ""


class S3Bucket(_Base, frozen=True, tag="s3_bucket", tag_field="kind"):
    """The bucket name: a regex with a ``tenant`` group, or (no pattern) the whole name, usually
    through a ``lookup`` (a bucket per tenant with opaque names)."""

    pattern: str = ""
    lookup: str = ""


class DynamoDBKey(_Base, frozen=True, tag="dynamodb_key", tag_field="kind"):
    pattern: str
    tables: tuple[str, ...] = ()
    lookup: str = ""


class DynamoDBTable(_Base, frozen=True, tag="dynamodb_table", tag_field="kind"):
    """The table name (a table per tenant): a regex with a ``tenant`` group, or the whole name
    through a ``lookup``."""

    pattern: str = ""
    lookup: str = ""


class ResourceArn(_Base, frozen=True, tag="resource_arn", tag_field="kind"):
    pattern: str
    lookup: str = ""


class ApiPath(_Base, frozen=True, tag="api_path", tag_field="kind"):
    """A regex with a ``tenant`` group over the request path, stage prefix removed."""

    pattern: str
    lookup: str = ""


class Header(_Base, frozen=True, tag="header", tag_field="kind"):
    """A request header logged in the access log (for example ``X-Tenant-Id``)."""

    name: str


class Subdomain(_Base, frozen=True, tag="subdomain", tag_field="kind"):
    pattern: str
    lookup: str = ""


TargetStrategy = (
    S3Key
    | S3Bucket
    | DynamoDBKey
    | DynamoDBTable
    | ResourceArn
    | ApiPath
    | Header
    | Subdomain
    | Field
)


class Lookup(_Base, frozen=True):
    """A table mapping values (account ids, bucket or table names, API key ids, domains, KMS key
    ARNs, Cognito pool or client ids ...) to tenants, read once per run from exactly one of:
    ``file`` (CSV, JSON or Parquet; a local path, relative to the configuration file, or
    ``s3://``), ``dynamodb_table`` (the SaaS's tenant registry, scanned), or inline ``values``.
    ``key`` and ``tenant`` name the columns (attributes) holding the value and its tenant."""

    name: str
    file: str = ""
    dynamodb_table: str = ""
    values: dict[str, str] = msgspec.field(default_factory=dict)
    key: str = "key"
    tenant: str = "tenant"
    region: str = ""  # of the DynamoDB table; empty: the AWS default region


class TenancyConfig(_Base, frozen=True):
    # STS sessions last at most 12 hours, so a session -> tenant mapping older than that is stale.
    session_ttl_hours: float = 12.0
    # No strategy by default: where a SaaS keeps its tenant ids is its own choice, and a guess
    # would resolve wrong tenants silently. ``tenantwatch tenancy report`` shows what is left.
    actor: tuple[ActorStrategy, ...] = ()
    target: tuple[TargetStrategy, ...] = ()
    lookup: tuple[Lookup, ...] = ()


# --- field mapping per source ------------------------------------------------------------------
# Where each normalized column of a per-line source comes from: a field path, or several (the
# first present wins). The defaults are the names these logs commonly use.

Paths = str | tuple[str, ...]


class AuthorizerFields(_Base, frozen=True):
    """A Lambda authorizer's log lines (Powertools Logger JSON by default)."""

    event_id: Paths = ("function_request_id", "request_id")
    time: Paths = "timestamp"
    decision: Paths = "decision"  # Allow / Deny, any case; anything else is an error outcome
    reason: Paths = "reason"
    method_arn: Paths = "method_arn"
    principal: Paths = "principal_id"
    token_fingerprint: Paths = "token_fingerprint"  # noqa: S105 - a field name, not a secret
    tenant_claim: Paths = "tenant_claim"
    requested_tenant: Paths = "requested_tenant"
    request_id: Paths = "request_id"
    source_ip: Paths = "source_ip"
    user_agent: Paths = "user_agent"
    function: Paths = ("function_name", "service")


class AccessLogFields(_Base, frozen=True):
    """API Gateway access logs (``$context`` variables, named as the log format chose)."""

    request_id: Paths = "requestId"
    time: Paths = ("requestTimeEpoch", "requestTime")
    status: Paths = "status"
    path: Paths = "path"
    http_method: Paths = "httpMethod"
    route: Paths = ("resourcePath", "routeKey")
    api_id: Paths = "apiId"
    stage: Paths = "stage"
    domain: Paths = "domainName"
    principal: Paths = (
        "authorizerPrincipalId",
        "authorizer.principalId",
        "authorizer_principalId",
        "user",
    )
    # Empty: the authorizer_context strategy's key, in the spellings above.
    tenant_claim: Paths = ()
    error: Paths = ("authorizerError", "authorizer.error", "authorizer_error")
    source_ip: Paths = ("ip", "sourceIp")
    user_agent: Paths = "userAgent"
    account_id: Paths = "accountId"


class SourcesConfig(_Base, frozen=True):
    apigateway: AccessLogFields = AccessLogFields()
    authorizer: AuthorizerFields = AuthorizerFields()


# --- relationships that make cross-tenant access legitimate -----------------------------------


class Organisation(_Base, frozen=True, tag="organisation", tag_field="kind"):
    """Users of the parent tenant may act on its children (not the other way round)."""

    parent: str
    children: tuple[str, ...]


class Reseller(_Base, frozen=True, tag="reseller", tag_field="kind"):
    """Users of the reseller tenant may act on its clients."""

    reseller: str
    clients: tuple[str, ...]


class Consultant(_Base, frozen=True, tag="consultant", tag_field="kind"):
    """One named principal may act on the listed tenants."""

    principal: str
    tenants: tuple[str, ...]


class ServiceRole(_Base, frozen=True, tag="service_role", tag_field="kind"):
    """Principals matching the regex (background jobs) may act on every tenant."""

    principal_pattern: str


class Ticket(_Base, frozen=True):
    id: str
    tenants: tuple[str, ...]
    expires: datetime
    approvers: tuple[str, ...] = ()
    # Why access was granted, as the ticket system wrote it: shown beside each use, never judged.
    justification: str = ""


class BreakGlass(_Base, frozen=True, tag="break_glass", tag_field="kind"):
    """Support staff: principals matching the regex, each use naming a ticket: the value of the
    session tag ``ticket_tag`` (set at AssumeRole), else ``ticket_pattern`` over the role
    session name.

    A use is valid when the ticket it names has at least ``approvals_required`` distinct
    approvers, the target tenant is one of its tenants and the use comes before its expiry: it is
    recorded at low severity; anything else by this role pages. Tickets come from ``tickets``
    and, read once per run, ``tickets_file`` (CSV, JSON or Parquet, local or ``s3://``: columns
    id, tenants, expires, approvers, justification) and ``tickets_table`` (DynamoDB, attributes
    of the same names): a ticket system's export.
    """

    principal_pattern: str
    ticket_pattern: str = r"(?P<ticket>[A-Z]+-\d+)"
    ticket_tag: str = ""
    # Distinct approvers a ticket needs before a use under it is valid (0: none needed).
    approvals_required: int = 2
    tickets: tuple[Ticket, ...] = ()
    tickets_file: str = ""
    tickets_table: str = ""


Relationship = Organisation | Reseller | Consultant | ServiceRole | BreakGlass


class RetentionDays(_Base, frozen=True):
    """How many days of each area the lake keeps (by the day of a partition; quarantine files by
    when they were written); unset: forever. Snapshots are not an area: they keep their Object
    Lock retention."""

    events: Annotated[int, msgspec.Meta(ge=1)] | None = None
    quarantine: Annotated[int, msgspec.Meta(ge=1)] | None = None
    findings: Annotated[int, msgspec.Meta(ge=1)] | None = None
    incidents: Annotated[int, msgspec.Meta(ge=1)] | None = None


class LakeConfig(_Base, frozen=True):
    root: str = "lake"
    # The size compaction aims at for each file (Athena and DuckDB advise 128 MB and up).
    compact_file_mb: Annotated[int, msgspec.Meta(ge=1)] = 128
    retention_days: RetentionDays = RetentionDays()


class IngestConfig(_Base, frozen=True):
    workers: int = 0  # 0: one process per core
    # Compressed input bytes per batch: bounds memory, which follows the decompressed bytes (a
    # CloudTrail file inflates 5-20x; measured with two workers, the largest process held 440 MB
    # for inputs inflating 18x, 754 MB with 8 MiB batches: 1 GB comes near 45x with 4 MiB, 25x
    # with 8 MiB, interpolated. 8 MiB was 3% faster on the benchmark's 5x files.)
    batch_input_bytes: int = 4 << 20
    # CloudTrail caps an event at 256 KB; anything far larger is not a record we can trust.
    max_record_bytes: int = 1 << 20
    # A gzip bomb stops here instead of filling memory. Decoding a file holds 5-12x its
    # decompressed size at its peak (the text, its rows, the batch's Arrow columns): legitimate
    # files of 64 MiB peaked at 0.37-0.8 GB with one worker, within a 1 GB budget.
    max_decompressed_bytes: int = 64 << 20
    cloudtrail_lag_minutes: int = 15


class AlertingConfig(_Base, frozen=True):
    # Where notifications go: every destination set here gets each notification, through outbox
    # rows of its own (``pipeline.alert.run``); with no SNS topic, the local channel as well.
    sns_topic_arn: str = ""
    # Each incident as one finding in Security Hub (ASFF, BatchImportFindings) of this account
    # and region; the product ARN defaults to the account's own "default" product.
    securityhub: bool = False
    securityhub_product_arn: str = ""
    # An EventBridge bus (name or ARN) that gets each notification's OCSF body as an event
    # from ``eventbridge_source``.
    eventbridge_bus: str = ""
    eventbridge_source: str = "tenantwatch"
    cloudwatch_namespace: str = ""
    snapshot_uri: str = ""  # empty: <lake>/snapshots
    region: str = ""
    # Findings sharing a dedup key within this period make one incident, for detectors that do
    # not declare a ``dedup_period`` of their own.
    dedup_period_hours: float = 24.0
    # Incidents below this are recorded (state, snapshot) but not sent: a break-glass access
    # under an open ticket is ``low`` and must not page anyone.
    notify_min_severity: Literal["info", "low", "medium", "high", "critical"] = "medium"
    # A later finding for an open incident: no message, one digest per run, or one message each.
    updates: Literal["none", "digest", "each"] = "digest"
    snapshot_margin_minutes: int = 60  # evidence from this long before first seen to after last
    snapshot_max_events: int = 100_000  # bounds memory; the manifest says when it was reached
    # Used only when the snapshot bucket has Object Lock enabled but no default retention rule.
    snapshot_retention_days: int = 365
    snapshot_lock_mode: Literal["GOVERNANCE", "COMPLIANCE"] = "GOVERNANCE"
    athena_table: str = "tenantwatch.events"  # named in the query each notification carries
    # Findings that share an entity (principal, session, token, address, request, or an API
    # principal and the role session acting for it) and lie within this many minutes of each
    # other make one incident: one attack, one page.
    correlation_gap_minutes: int = 60
    # Addresses and CIDR blocks many people share (NAT gateways, corporate proxies): sharing one
    # of these says nothing about being the same actor, so it never joins two findings.
    shared_egress: tuple[str, ...] = ()


class SigmaConfig(_Base, frozen=True):
    """Sigma rules the ``sigma`` detector runs (``detectors.sigma``)."""

    # Folders, files or s3:// prefixes of Sigma rules (a SigmaHQ checkout's rules/cloud/aws).
    rules: tuple[str, ...] = ()
    # The project's own rule pack (rules/): trail tampering, persistence, outside sharing ...
    pack: bool = True
    # A [[tenancy.lookup]] mapping account ids to tenants: an account of the event's own tenant
    # is then no "foreign" account (``foreign_accounts``). Empty: any account but the event's.
    account_lookup: str = ""


# --- impact assessment (pipeline/impact.py) ------------------------------------------------------


class ActionRule(_Base, frozen=True):
    """What an action does to the data it names, for ``tenantwatch impact``: ``pattern`` is a
    regular expression that must match the whole action (CloudTrail's ``eventName``, ``GET
    /tenants/{tenantId}/invoices`` for API Gateway, ``authorize GET /path`` for the authorizer);
    ``sources`` keeps the rule to those lake sources (empty: every source). A denied event is
    ``denied`` whatever its action: its outcome says so."""

    pattern: str
    access: Literal["read", "write", "other"]
    sources: tuple[SourceName, ...] = ()


class ImpactConfig(_Base, frozen=True):
    """How ``tenantwatch impact`` reads actions: ``actions`` first, in order, then (unless
    ``builtin_actions`` is false) the built-in rules, ``pipeline.impact.BUILTIN_ACTIONS`` (AWS
    API verbs and HTTP methods). An action no rule matches is ``other``, never a read."""

    actions: tuple[ActionRule, ...] = ()
    builtin_actions: bool = True


class Classification(_Base, frozen=True):
    """A kind of data: a resource (``s3://bucket/key``, ``dynamodb:table/key``, an API path, an
    ARN) in which the regular expression ``pattern`` is found holds data of ``class``
    (``financial``, ``health`` ...); the first that matches wins. None: data is described by the
    type of its resource."""

    pattern: str
    data_class: str = msgspec.field(name="class")


# --- containment ------------------------------------------------------------------------------

ContainmentMode = Literal["suspend", "read-only"]


class AutoContainment(_Base, frozen=True):
    """A rule of ``[containment] auto``: an incident the alert stage opens, of ``detector`` (a
    detector id, or ``any``; the lead finding's or any signal's) at ``severity`` or worse, gets a
    containment entry for each of its ``subject``: its target tenants (``tenant``), its actor's
    tenant (``actor_tenant``) or its actor (``actor``: a principal, token or address), in
    ``mode``, for ``expires`` (a duration: ``30m``, ``4h``, ``2d``). For one incident and subject
    the first matching rule applies."""

    detector: str
    severity: Literal["info", "low", "medium", "high", "critical"]
    mode: ContainmentMode
    expires: str
    subject: Literal["tenant", "actor_tenant", "actor"] = "tenant"


class ContainmentConfig(_Base, frozen=True):
    """Where containment entries go (``pipeline.containment``), and which incidents are
    contained as soon as they open."""

    # The DynamoDB table an authorizer reads (environment: TENANTWATCH_CONTAINMENT_TABLE).
    table: str = ""
    region: str = ""  # of the table; empty: the AWS default region
    # Off by default: containment turns part of the SaaS off for a tenant or an actor, which a
    # deployer chooses per detector and severity, never a default.
    auto: tuple[AutoContainment, ...] = ()


class Config(_Base, frozen=True):
    lake: LakeConfig = LakeConfig()
    ingest: IngestConfig = IngestConfig()
    sources: SourcesConfig = SourcesConfig()
    tenancy: TenancyConfig = TenancyConfig()
    relationships: tuple[Relationship, ...] = ()
    alerting: AlertingConfig = AlertingConfig()
    # Per-detector settings, keyed by detector id; each detector validates its own table.
    detectors: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
    # Findings recorded without paging (``Suppression``); ``incident close --suppress`` adds
    # more, kept in the lake.
    suppressions: tuple[Suppression, ...] = ()
    sigma: SigmaConfig = SigmaConfig()
    # What ``tenantwatch impact`` calls a read or a write, and which data is of which kind (its
    # customer notices name the kind). Neutral: no classes; actions by AWS and HTTP verbs.
    impact: ImpactConfig = ImpactConfig()
    classification: tuple[Classification, ...] = ()
    containment: ContainmentConfig = ContainmentConfig()
    tenants: tuple[Tenant, ...] = ()  # each tenant's regions and data class (config_tenants)


# --- loading ---------------------------------------------------------------------------------


def _env_overrides(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """Apply ``TENANTWATCH_<SECTION>_<KEY>`` to scalar keys of the top-level sections."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    sections: dict[str, type[_Base]] = {
        "lake": LakeConfig,
        "ingest": IngestConfig,
        "alerting": AlertingConfig,
        "containment": ContainmentConfig,
    }
    for section, struct in sections.items():
        for field in struct.__struct_fields__:
            if field == "auto":  # a list of tables, not a scalar
                continue
            name = f"{ENV_PREFIX}{section.upper()}_{field.upper()}"
            if name in environ:
                out.setdefault(section, {})[field] = environ[name]
    # ``[lake] retention_days`` is a table: TENANTWATCH_LAKE_RETENTION_DAYS_<AREA>.
    for area in RetentionDays.__struct_fields__:
        name = f"{ENV_PREFIX}LAKE_RETENTION_DAYS_{area.upper()}"
        if environ.get(name, "").strip():
            lake = out.setdefault("lake", {})
            lake["retention_days"] = {**lake.get("retention_days", {}), area: environ[name]}
    return out


def claim_spellings(key: str) -> tuple[str, ...]:
    """Where access-log formats commonly put the authorizer context value ``key``:
    authorizerTenantId, authorizer.tenantId (a literal key, or nested) or authorizer_tenantId."""
    return (f"authorizer{key[:1].upper()}{key[1:]}", f"authorizer.{key}", f"authorizer_{key}")


def parse_config(
    data: Mapping[str, Any], where: str = DEFAULT_FILE, environ: Mapping[str, str] | None = None
) -> Config:
    """Validate a decoded TOML document (plus environment overrides) into a frozen ``Config``."""
    merged = _env_overrides(dict(data), os.environ if environ is None else environ)
    try:
        # strict=False lets environment strings such as "4" become integers.
        cfg = msgspec.convert(merged, Config, strict=False)
    except msgspec.ValidationError as exc:
        from pipeline.config_errors import describe

        raise ConfigError(f"{where}: {describe(str(exc))}") from None
    from pipeline.config_checks import check

    check(cfg, where)
    return cfg


def load_config(
    path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> Config:
    """Load ``path``; with no path, ``./tenantwatch.toml`` if present, else the defaults.

    A path that was named but does not exist is an error, not a silent fall-back.
    """
    if path is None:
        candidate = Path(DEFAULT_FILE)
        if not candidate.is_file():
            return parse_config({}, "defaults", environ)
        path = candidate
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: configuration file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read the configuration file ({exc})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML ({exc})") from None
    return _anchored(parse_config(data, str(p), environ), p.resolve().parent)


def _anchored(cfg: Config, folder: Path) -> Config:
    """``cfg`` with relative lookup and ticket file names made relative to ``folder`` (the
    configuration file's), so a run behaves the same from any working directory."""

    def at(name: str) -> str:
        if not name or "://" in name or Path(name).is_absolute():
            return name
        return str(folder / name)

    rep = msgspec.structs.replace
    lookups = tuple(rep(lk, file=at(lk.file)) for lk in cfg.tenancy.lookup)
    rels = tuple(
        rep(r, tickets_file=at(r.tickets_file)) if isinstance(r, BreakGlass) else r
        for r in cfg.relationships
    )
    return rep(cfg, tenancy=rep(cfg.tenancy, lookup=lookups), relationships=rels)
