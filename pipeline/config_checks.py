"""What msgspec's types cannot say about a configuration, checked once it has been decoded
(``pipeline.config.parse_config`` calls ``check``): patterns that compile in RE2 with their group,
lookups and ticket sources that are named well, field paths that parse, suppressions that
expire, automatic containment rules that name a detector, a duration and a table."""

from __future__ import annotations

import re

from pipeline.config import (
    AccessLogFields,
    AuthorizerContext,
    AuthorizerFields,
    BreakGlass,
    Config,
    DynamoDBTable,
    Field,
    S3Bucket,
    ServiceRole,
    claim_spellings,
)
from pipeline.config_suppressions import check_suppression
from pipeline.config_tenants import check_tenants
from pipeline.errors import ConfigError


def check(cfg: Config, where: str) -> None:
    """What msgspec's types cannot say: patterns that compile (in RE2, where Arrow runs them)
    with their group, lookups that exist, field paths that parse."""

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

    lookups: set[str] = set()
    for i, lk in enumerate(cfg.tenancy.lookup):
        at = f"{where}: tenancy.lookup[{i}]"
        if not lk.name.strip():
            raise ConfigError(f"{at}.name: expected a name that strategies can refer to")
        if lk.name in lookups:
            raise ConfigError(f"{at}.name: {lk.name!r} is defined twice")
        lookups.add(lk.name)
        given = [k for k in ("file", "dynamodb_table", "values") if getattr(lk, k)]
        if len(given) != 1:
            raise ConfigError(
                f"{at}: expected exactly one of file, dynamodb_table or values, got "
                + (", ".join(given) if given else "none")
            )
    for section in ("actor", "target"):
        for i, strat in enumerate(getattr(cfg.tenancy, section)):
            at = f"tenancy.{section}[{i}]"
            if getattr(strat, "pattern", ""):
                compile_(f"{at}.pattern", strat.pattern, "tenant", re2=True)
            elif isinstance(strat, S3Bucket | DynamoDBTable) and not strat.lookup:
                # The whole value as a tenant id is allowed for a field, never silently for
                # a bucket or table name: say so explicitly with a pattern.
                raise ConfigError(f"{where}: {at}: expected a pattern or a lookup")
            lookup = getattr(strat, "lookup", "")
            if lookup and lookup not in lookups:
                raise ConfigError(f"{where}: {at}.lookup: no [[tenancy.lookup]] named {lookup!r}")
            if isinstance(strat, Field):
                _check_field_path(where, f"{at}.path", strat.path, strat.source)
                for j, key in enumerate(strat.when):
                    _check_field_path(where, f"{at}.when[{j}]", key, strat.source)
    for source in ("apigateway", "authorizer"):
        fields = getattr(cfg.sources, source)
        for name in fields.__struct_fields__:
            value = getattr(fields, name)
            for j, path in enumerate((value,) if isinstance(value, str) else value):
                _check_path(where, f"sources.{source}.{name}[{j}]", path)
    claim_keys = {s.key for s in cfg.tenancy.actor if isinstance(s, AuthorizerContext)}
    if len(claim_keys) > 1:
        raise ConfigError(
            f"{where}: tenancy.actor: authorizer_context strategies name different keys "
            f"({', '.join(sorted(claim_keys))}); map the claim once with [sources.apigateway] "
            "tenant_claim"
        )
    claim = cfg.sources.apigateway.tenant_claim
    claim_paths = (claim,) if isinstance(claim, str) else claim
    # The key is the mapping's default: both set must agree (a key left at its default is
    # taken as not set: the mapping is then the one place the claim is named).
    for key in claim_keys - {"tenantId"}:
        if claim_paths and not set(claim_spellings(key)) & set(claim_paths):
            raise ConfigError(
                f"{where}: sources.apigateway.tenant_claim ({', '.join(claim_paths)}) and the "
                f"authorizer_context key {key!r} name different fields; set one of them"
            )
    import ipaddress

    for i, net in enumerate(cfg.alerting.shared_egress):
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise ConfigError(
                f"{where}: alerting.shared_egress[{i}]: expected an IP address or CIDR block, "
                f"got {net!r}"
            ) from None
    if cfg.alerting.correlation_gap_minutes < 0:
        raise ConfigError(f"{where}: alerting.correlation_gap_minutes: expected 0 or more")
    _check_channels(cfg, where)
    for i, rel in enumerate(cfg.relationships):
        if isinstance(rel, ServiceRole | BreakGlass):
            compile_(f"relationships[{i}].principal_pattern", rel.principal_pattern, None)
        if isinstance(rel, BreakGlass):
            compile_(f"relationships[{i}].ticket_pattern", rel.ticket_pattern, "ticket")
            if rel.tickets_file and rel.tickets_table:
                raise ConfigError(
                    f"{where}: relationships[{i}]: tickets_file and tickets_table: expected one"
                )
            if rel.approvals_required < 0:
                raise ConfigError(
                    f"{where}: relationships[{i}].approvals_required: expected 0 (no approval "
                    f"needed) or more, got {rel.approvals_required}"
                )
            for j, t in enumerate(rel.tickets):
                if t.expires.tzinfo is None:
                    raise ConfigError(
                        f"{where}: relationships[{i}].tickets[{j}].expires: "
                        "expected a date-time with a time zone, e.g. 2026-11-17T00:00:00Z"
                    )
    ids: set[str] = set()
    for i, sup in enumerate(cfg.suppressions):
        check_suppression(sup, f"{where}: suppressions[{i}]")
        if sup.id in ids:
            raise ConfigError(f"{where}: suppressions[{i}].id: {sup.id!r} is defined twice")
        ids.add(sup.id)
    for i, rule in enumerate(cfg.impact.actions):
        compile_(f"impact.actions[{i}].pattern", rule.pattern, None)
    for i, c in enumerate(cfg.classification):
        compile_(f"classification[{i}].pattern", c.pattern, None)
        if not c.pattern or not c.data_class.strip():
            raise ConfigError(
                f"{where}: classification[{i}]: expected a non-empty pattern and class"
            )
    if cfg.ingest.workers < 0:
        raise ConfigError(f"{where}: ingest.workers: expected 0 (all cores) or more")
    if cfg.tenancy.session_ttl_hours <= 0:
        raise ConfigError(f"{where}: tenancy.session_ttl_hours: expected a positive number")
    _check_containment(cfg, where)
    check_tenants(cfg.tenants, where)


def _check_containment(cfg: Config, where: str) -> None:
    c = cfg.containment
    if not c.auto:
        return
    import detectors
    from pipeline.timeparse import duration

    for i, rule in enumerate(c.auto):
        at = f"{where}: containment.auto[{i}]"
        if rule.detector != "any" and rule.detector not in detectors.REGISTRY:
            valid = ", ".join(["any", *detectors.REGISTRY])
            raise ConfigError(f"{at}.detector: unknown detector {rule.detector!r}; valid: {valid}")
        try:
            duration(rule.expires)
        except ValueError as exc:
            raise ConfigError(f"{at}.expires: {exc}") from None
    if not c.table.strip():
        raise ConfigError(
            f"{where}: containment.auto: expected containment.table (or "
            "TENANTWATCH_CONTAINMENT_TABLE) to name the table its entries go to"
        )


# What Security Hub and EventBridge accept, checked at load rather than refused at 3 a.m.
_PRODUCT_ARN = re.compile(
    r"arn:aws[a-z-]*:securityhub:[a-z0-9-]+:(\d{12})?:product/[^/\s]+/[^/\s]+"
)
_BUS_NAME = re.compile(r"[/.\-_A-Za-z0-9]{1,256}")
_BUS_ARN = re.compile(r"arn:aws[a-z-]*:events:[a-z0-9-]+:\d{12}:event-bus/[/.\-_A-Za-z0-9]{1,256}")


def _check_channels(cfg: Config, where: str) -> None:
    a = cfg.alerting
    arn = a.securityhub_product_arn
    if arn and not _PRODUCT_ARN.fullmatch(arn):
        raise ConfigError(
            f"{where}: alerting.securityhub_product_arn: expected "
            f"arn:aws:securityhub:<region>:<account>:product/<company>/<product>, got {arn!r}"
        )
    bus = a.eventbridge_bus
    if bus and not (
        _BUS_ARN.fullmatch(bus) if bus.startswith("arn:") else _BUS_NAME.fullmatch(bus)
    ):
        raise ConfigError(
            f"{where}: alerting.eventbridge_bus: expected a bus name ([/.-_A-Za-z0-9], at most "
            f"256) or an event-bus ARN, got {bus!r}"
        )
    src = a.eventbridge_source
    if not 1 <= len(src) <= 256 or src.startswith("aws.") or not src.isprintable():
        raise ConfigError(
            f"{where}: alerting.eventbridge_source: expected 1 to 256 printable characters not "
            f"starting with 'aws.' (reserved for AWS services), got {src!r}"
        )


def _check_field_path(where: str, key: str, path: str, source: str) -> None:
    if not path.startswith("$"):
        _check_path(where, key, path)
        return
    mapped = {"apigateway": AccessLogFields, "authorizer": AuthorizerFields}.get(source)
    if mapped is None:
        raise ConfigError(f"{where}: {key}: $names are columns of [sources.*], not of {source}")
    if path[1:] not in mapped.__struct_fields__:
        names = ", ".join(f"${n}" for n in mapped.__struct_fields__)
        raise ConfigError(f"{where}: {key}: {path!r} is no column of [sources.{source}] ({names})")


def _check_path(where: str, key: str, path: str) -> None:
    from pipeline import fieldpath

    try:
        fieldpath.parse(path)
    except fieldpath.PathError as exc:
        raise ConfigError(f"{where}: {key}: {exc}") from None
