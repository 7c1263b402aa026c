"""The configuration: one TOML file, validated once at start into frozen objects.

Every key is optional; the defaults below describe the SaaS that ``tenantwatch simulate`` models
(and so ``sample_logs/``), which is why the demo needs no file. ``tenantwatch.toml`` at the top of
the repository spells every default out as the documented example.

Validation is msgspec's: unknown keys and wrong types are rejected with the key's path, which we
reshape into one line such as ``tenantwatch.toml: tenancy.actor[1].pattern: expected a string,
got an integer``. Checks msgspec cannot express (regexes that must compile and capture
``tenant``) run right after, with the same message shape.

The environment is read here and nowhere else: ``TENANTWATCH_<SECTION>_<KEY>`` overrides a scalar
key of a top-level section (for Lambda), e.g. ``TENANTWATCH_LAKE_ROOT=s3://bucket/lake`` or
``TENANTWATCH_ALERTING_SNS_TOPIC_ARN=arn:...``.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import msgspec

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


class RoleArn(_Base, frozen=True, tag="role_arn", tag_field="kind"):
    """A regex with a ``tenant`` group over the role ARN (one role per tenant)."""

    pattern: str


class SourceIdentity(_Base, frozen=True, tag="source_identity", tag_field="kind"):
    """A regex with a ``tenant`` group over ``sourceIdentity``."""

    pattern: str


class AuthorizerContext(_Base, frozen=True, tag="authorizer_context", tag_field="kind"):
    """A value of the Lambda authorizer's context (access logs) or the token's tenant claim
    (authorizer logs)."""

    key: str = "tenantId"


ActorStrategy = SessionTag | RoleSessionName | RoleArn | SourceIdentity | AuthorizerContext


class S3Key(_Base, frozen=True, tag="s3_key", tag_field="kind"):
    pattern: str
    buckets: tuple[str, ...] = ()  # empty: every bucket


class S3Bucket(_Base, frozen=True, tag="s3_bucket", tag_field="kind"):
    pattern: str


class DynamoDBKey(_Base, frozen=True, tag="dynamodb_key", tag_field="kind"):
    pattern: str
    tables: tuple[str, ...] = ()


class ResourceArn(_Base, frozen=True, tag="resource_arn", tag_field="kind"):
    pattern: str


class ApiPath(_Base, frozen=True, tag="api_path", tag_field="kind"):
    """A regex with a ``tenant`` group over the request path, stage prefix removed."""

    pattern: str


class Header(_Base, frozen=True, tag="header", tag_field="kind"):
    """A request header logged in the access log (for example ``X-Tenant-Id``)."""

    name: str


class Subdomain(_Base, frozen=True, tag="subdomain", tag_field="kind"):
    pattern: str


TargetStrategy = S3Key | S3Bucket | DynamoDBKey | ResourceArn | ApiPath | Header | Subdomain


class TenancyConfig(_Base, frozen=True):
    # STS sessions last at most 12 hours, so a session -> tenant mapping older than that is stale.
    session_ttl_hours: float = 12.0
    actor: tuple[ActorStrategy, ...] = (
        SessionTag(key="tenant_id"),
        RoleSessionName(pattern=r"^tenant-(?P<tenant>t\d{4})-", roles=("tenant-reports",)),
        AuthorizerContext(key="tenantId"),
    )
    target: tuple[TargetStrategy, ...] = (
        S3Key(pattern=r"^tenants/(?P<tenant>[^/]+)/"),
        DynamoDBKey(pattern=r"^TENANT#(?P<tenant>[^#]+)"),
        ApiPath(pattern=r"^/tenants/(?P<tenant>[^/]+)"),
    )


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


class BreakGlass(_Base, frozen=True, tag="break_glass", tag_field="kind"):
    """Support staff: principals matching the regex, with a ticket id in the role session name.

    Access under an open ticket for one of its tenants is recorded at low severity; anything else
    by this role pages.
    """

    principal_pattern: str
    ticket_pattern: str = r"(?P<ticket>[A-Z]+-\d+)"
    tickets: tuple[Ticket, ...] = ()


Relationship = Organisation | Reseller | Consultant | ServiceRole | BreakGlass

SAAS_ACCOUNT = "111122223333"

DEFAULT_RELATIONSHIPS: tuple[Relationship, ...] = (
    Organisation(parent="t0010", children=("t0011", "t0012", "t0013")),
    Consultant(principal="ext-consultant-ana", tenants=("t0020", "t0021", "t0022")),
    Consultant(principal="ext-consultant-ben", tenants=("t0030", "t0031")),
    ServiceRole(
        principal_pattern=rf"^arn:aws:sts::{SAAS_ACCOUNT}:assumed-role/"
        r"saas-(nightly-export|billing-aggregator)/"
    ),
    BreakGlass(
        principal_pattern=rf"^arn:aws:sts::{SAAS_ACCOUNT}:assumed-role/support-break-glass/",
        tickets=(
            Ticket(
                id="SUP-4821",
                tenants=("t0031",),
                expires=datetime.fromisoformat("2026-11-17T00:00:00+00:00"),
            ),
        ),
    ),
)


class LakeConfig(_Base, frozen=True):
    root: str = "lake"


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
    sns_topic_arn: str = ""
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


class Config(_Base, frozen=True):
    lake: LakeConfig = LakeConfig()
    ingest: IngestConfig = IngestConfig()
    tenancy: TenancyConfig = TenancyConfig()
    relationships: tuple[Relationship, ...] = DEFAULT_RELATIONSHIPS
    alerting: AlertingConfig = AlertingConfig()
    # Per-detector settings, keyed by detector id; each detector validates its own table.
    detectors: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)


# --- loading ---------------------------------------------------------------------------------

_MSGSPEC_TYPES = {
    "`str`": "a string",
    "`int`": "an integer",
    "`float`": "a number",
    "`bool`": "true or false",
    "`array`": "a list",
    "`object`": "a table",
    "`datetime`": "a date-time with a time zone",
    "`null`": "nothing",
}


def _describe(msg: str) -> str:
    """Turn msgspec's ``Expected `int`, got `str` - at `$.a.b` `` into ``a.b: expected ...``."""
    path = ""
    m = re.search(r" - at `\$\.?(.*)`$", msg)
    if m:
        path, msg = m.group(1), msg[: m.start()]
    m2 = re.match(r"Expected (.+?), got (.+)$", msg)
    if m2:
        expected = " or ".join(_MSGSPEC_TYPES.get(t, t) for t in m2.group(1).split(" | "))
        msg = f"expected {expected}, got {_MSGSPEC_TYPES.get(m2.group(2), m2.group(2))}"
    m3 = re.match(r"Object contains unknown field `(.+)`$", msg)
    if m3:
        path = f"{path}.{m3.group(1)}" if path else m3.group(1)
        msg = "unknown key"
    m4 = re.match(r"Object missing required field `(.+)`$", msg)
    if m4:
        path = f"{path}.{m4.group(1)}" if path else m4.group(1)
        msg = "required key is missing"
    m5 = re.match(r"Invalid value '(.+)'$", msg)
    if m5 and path.endswith("kind"):
        msg = f"unknown kind {m5.group(1)!r}"
    return f"{path}: {msg}" if path else msg


def _env_overrides(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """Apply ``TENANTWATCH_<SECTION>_<KEY>`` to scalar keys of the top-level sections."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    sections = {"lake": LakeConfig, "ingest": IngestConfig, "alerting": AlertingConfig}
    for section, struct in sections.items():
        for field in struct.__struct_fields__:
            name = f"{ENV_PREFIX}{section.upper()}_{field.upper()}"
            if name in environ:
                out.setdefault(section, {})[field] = environ[name]
    return out


def _check_patterns(cfg: Config, where: str) -> None:
    def compile_(path: str, pattern: str, group: str | None, re2: bool = False) -> None:
        try:
            rx = re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"{where}: {path}: not a valid regular expression ({exc})") from None
        if group and group not in rx.groupindex:
            raise ConfigError(f"{where}: {path}: the pattern needs a (?P<{group}>...) group")
        if re2:  # run by Arrow, whose engine is RE2: no look-arounds, no back-references
            import pyarrow as pa
            import pyarrow.compute as pc

            try:
                pc.extract_regex(pa.nulls(0, pa.string()), pattern=pattern)  # imports no pandas
            except pa.ArrowInvalid as exc:
                raise ConfigError(f"{where}: {path}: not supported by RE2 ({exc})") from None

    for section in ("actor", "target"):
        for i, strat in enumerate(getattr(cfg.tenancy, section)):
            if hasattr(strat, "pattern"):
                compile_(f"tenancy.{section}[{i}].pattern", strat.pattern, "tenant", re2=True)
    for i, rel in enumerate(cfg.relationships):
        if isinstance(rel, ServiceRole | BreakGlass):
            compile_(f"relationships[{i}].principal_pattern", rel.principal_pattern, None)
        if isinstance(rel, BreakGlass):
            compile_(f"relationships[{i}].ticket_pattern", rel.ticket_pattern, "ticket")
            for j, t in enumerate(rel.tickets):
                if t.expires.tzinfo is None:
                    raise ConfigError(
                        f"{where}: relationships[{i}].tickets[{j}].expires: "
                        "expected a date-time with a time zone, e.g. 2026-11-17T00:00:00Z"
                    )
    if cfg.ingest.workers < 0:
        raise ConfigError(f"{where}: ingest.workers: expected 0 (all cores) or more")
    if cfg.tenancy.session_ttl_hours <= 0:
        raise ConfigError(f"{where}: tenancy.session_ttl_hours: expected a positive number")


def parse_config(
    data: Mapping[str, Any], where: str = DEFAULT_FILE, environ: Mapping[str, str] | None = None
) -> Config:
    """Validate a decoded TOML document (plus environment overrides) into a frozen ``Config``."""
    merged = _env_overrides(dict(data), os.environ if environ is None else environ)
    try:
        # strict=False lets environment strings such as "4" become integers.
        cfg = msgspec.convert(merged, Config, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{where}: {_describe(str(exc))}") from None
    _check_patterns(cfg, where)
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
    return parse_config(data, str(p), environ)
