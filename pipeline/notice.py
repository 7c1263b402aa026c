"""Customer notices: per affected tenant, a Markdown draft of what a SaaS tells that customer.

A draft says, for its tenant alone: when (first and last event on its data), what kind of data
(the ``[[classification]]`` class of each object, else the type of resource), how many requests
and objects, whether they read, wrote or were denied, its own objects by name, and who acted in
generic words only ("a user of another customer's account"). What is being done about it, what
the customer can do and whom to contact are left to the analyst, marked ``[TO COMPLETE: ...]``;
the draft opens with a note to remove before sending.

**Nothing of another tenant.** What one customer may be told is what happened to its own data.
The draft is built from that tenant's events only, and never names an actor, a session, an
address, the incident's title, or another tenant's id or resources. One of its own objects whose
name contains anything of the others (another tenant's id, a resource of theirs, an actor's name
or address: compared as whole tokens, ignoring case) is not named: it is counted as withheld.
Then the whole text is searched for every one of those names, and each one found is a warning for
the analyst (``Notice.warnings``, never in the text): a tenant id that is also a word of the
template, say.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from pipeline.errors import InputError
from pipeline.impact import Impact, ResourceImpact, TenantImpact
from pipeline.impact_report import when

MAX_OBJECTS = 50  # objects named in a draft; the rest are counted
TO_COMPLETE = "**[TO COMPLETE: {}]**"


@dataclass(frozen=True)
class Notice:
    tenant: str
    text: str  # Markdown
    withheld: int  # objects not named: their name contains another tenant's or an actor's
    warnings: tuple[str, ...]  # for the analyst; never part of ``text``


def forbidden(impact: Impact, tenant: str) -> set[str]:
    """What a notice to ``tenant`` must not contain: every other tenant's id, every resource not
    (only) of ``tenant`` (but the containers of its own), every actor, session and address of
    the incident."""
    columns = ["actor_tenant", "target_tenant", "resource", "actor_principal", "actor_session"]
    rows = impact.rows.select([*columns, "source_ip"]).to_pylist()
    names = set(impact.named)
    mine: set[str] = set()
    theirs: set[str] = set()
    for r in rows:
        names |= {r["actor_tenant"], r["target_tenant"], r["actor_principal"], r["actor_session"]}
        names.add(r["source_ip"])
        if r["resource"]:
            (mine if r["target_tenant"] == tenant else theirs).add(r["resource"])
    # A container of the tenant's own objects (a shared bucket or table, a path prefix) is in
    # their names already: it tells the tenant nothing of anyone else.
    names |= {r for r in theirs if not any(_contains(m, r) for m in mine)}
    names.discard(tenant)
    return {str(n) for n in names if n}


def _contains(resource: str, prefix: str) -> bool:
    """Whether ``prefix`` is a proper path prefix of ``resource`` (``s3://bucket`` of
    ``s3://bucket/key``, ``dynamodb:table`` of ``dynamodb:table/key``)."""
    if len(prefix) >= len(resource) or not resource.startswith(prefix):
        return False
    return prefix[-1] in "/:#" or resource[len(prefix)] in "/:#"


def _pattern(names: Iterable[str]) -> re.Pattern[str] | None:
    """Any of ``names`` as a whole token (not inside a longer word or number), ignoring case."""
    alts = sorted((re.escape(n) for n in names if n.strip()), key=len, reverse=True)
    if not alts:
        return None
    return re.compile(r"(?<![A-Za-z0-9])(?:" + "|".join(alts) + r")(?![A-Za-z0-9])", re.I)


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


def _who(t: TenantImpact) -> str:
    """The actors in words a customer may read: never a name, a tenant or an address."""
    users = len(t.actors)
    parts = []
    if t.actor_tenants:
        whose = (
            "another customer's account"
            if len(t.actor_tenants) == 1
            else "other customers' accounts"
        )
        known = "a user" if users <= 1 else f"{users} user identities"
        parts.append(f"{known} of {whose}")
    if t.unknown_actor_events:
        parts.append("a caller whose account could not be determined")
    return " and ".join(parts) or "a caller whose account could not be determined"


# The types of resource in words a customer reads (``impact.resource_kind``'s names).
PLAIN_KINDS = {
    "S3 object": "files",
    "S3 bucket": "file storage",
    "DynamoDB item": "database records",
    "DynamoDB table": "database tables",
    "API path": "data served by our API",
    "API method": "data served by our API",
}


def data_label(o: ResourceImpact) -> str:
    """The kind of data an object holds: its ``[[classification]]`` class, else its type."""
    return o.data_class or PLAIN_KINDS.get(o.kind, o.kind)


def _esc(text: str) -> str:
    from pipeline.impact_report import md

    return md(text, 1000)


def _code(text: str) -> str:
    """``text`` as a Markdown code span in a table cell (shown as written, pipes escaped)."""
    from pipeline.alert.sanitize import clean

    shown = clean(text, 1000).replace("|", "\\|")
    return f"`` {shown} ``" if "`" in shown else f"`{shown}`"


def _span(t: TenantImpact) -> str:
    if t.first == t.last:
        return f"At **{when(t.first)}**"
    return f"Between **{when(t.first)}** and **{when(t.last)}**"


def _access_lines(t: TenantImpact, objs: list[ResourceImpact]) -> list[str]:
    def objects(kind: str) -> int:
        return sum(1 for o in objs if getattr(o, kind))

    lines = [
        "| access | requests | objects |",
        "|---|---|---|",
        f"| read | {t.read} | {objects('read')} |",
        f"| write (created, changed or deleted) | {t.write} | {objects('write')} |",
        f"| denied (refused by our access controls) | {t.denied} | {objects('denied')} |",
    ]
    if t.other:
        lines.append(f"| other | {t.other} | {objects('other')} |")
    lines.append("")
    if t.read == t.write == t.other == 0:
        lines.append(
            "Every request was refused by our access controls: no data of your account was "
            "returned or changed."
        )
    else:
        said = []
        if t.read:
            said.append(f"{_plural(t.read, 'request')} to read data")
        if t.write:
            said.append(f"{_plural(t.write, 'request')} to create, change or delete data")
        if t.other:
            said.append(f"{_plural(t.other, 'other request')} on your data")
        lines.append(f"The requests that were not refused: {', '.join(said)}.")
    if t.failed:
        lines.append(
            f"{_plural(t.failed, 'request')} failed with an error; "
            f"{'it is' if t.failed == 1 else 'they are'} counted above."
        )
    return lines


def draft(impact: Impact, tenant: str) -> Notice:
    """The draft notice for ``tenant``; ``InputError`` if the incident touched none of its
    data."""
    t = impact.tenant(tenant)
    if t is None:
        raise InputError(
            f"tenant {tenant!r}: none of incident {impact.incident_id[:12]}'s events acted on "
            "its data"
        )
    deny = forbidden(impact, tenant)
    leak = _pattern(deny)
    objs = [r for r in impact.resources if r.tenant == tenant]
    p = impact.provenance
    lines = [
        "# Notice of access to your data by another customer's account",
        "",
        "> DRAFT prepared from tenantwatch incident "
        f"{impact.incident_id[:12]}: check every statement, complete the parts marked "
        "[TO COMPLETE], and remove this note before sending.",
    ]
    if not p.complete:
        lines.append(
            "> "
            + TO_COMPLETE.format(
                "the evidence read was incomplete (some events are no longer in the lake): "
                "the counts below are a lower bound; check them before sending"
            )
        )
    lines += [
        "",
        f"**Your account:** {_code(tenant)}  ",
        f"**Reference:** {impact.incident_id[:12]}",
        "",
        "## What happened",
        "",
        f"{_span(t)}, {_who(t)} made "
        f"**{_plural(t.events, 'request')}** concerning "
        f"**{_plural(t.objects, 'object')}** of your account's data.",
        "",
        *_access_lines(t, objs),
        "",
        "## Data concerned",
        "",
    ]
    kinds: dict[str, int] = {}
    for o in objs:
        label = data_label(o)
        kinds[label] = kinds.get(label, 0) + 1
    lines.append(
        "Kinds of data: "
        + "; ".join(f"{_esc(k)} ({_plural(n, 'object')})" for k, n in sorted(kinds.items()))
        + "."
    )
    lines += [
        "",
        "| object | kind of data | read | write | denied | first | last |",
        "|---|---|---|---|---|---|---|",
    ]
    withheld = 0
    for o in objs[:MAX_OBJECTS]:
        name = o.resource or "(no object name recorded)"
        if o.resource and leak is not None and leak.search(o.resource):
            withheld += 1
            name = "(name withheld)"
            shown = name
        else:
            shown = _code(name) if o.resource else name
        lines.append(
            f"| {shown} | {_esc(data_label(o))} | {o.read} | {o.write} "
            f"| {o.denied} | {when(o.first)} | {when(o.last)} |"
        )
    if len(objs) > MAX_OBJECTS:
        lines.append("")
        lines.append(
            f"… and {_plural(len(objs) - MAX_OBJECTS, 'more object')} (the full list is "
            "available on request)."
        )
    lines += [
        "",
        "## What we are doing",
        "",
        TO_COMPLETE.format(
            "containment and next steps: when the access was stopped, how the cause was "
            "fixed, what is being checked"
        ),
        "",
        "## What you can do",
        "",
        TO_COMPLETE.format("recommendations for the customer, if any"),
        "",
        "## Contact",
        "",
        TO_COMPLETE.format("whom to contact about this notice"),
        "",
    ]
    text = "\n".join(lines)
    warnings = []
    if withheld:
        warnings.append(
            f"{_plural(withheld, 'object')} of {tenant} not named: the name contains another "
            "tenant's or an actor's"
        )
    if leak is not None:
        for found in sorted({m.group(0) for m in leak.finditer(text)}):
            warnings.append(
                f"the text contains {found!r}, a name of another tenant or actor: edit it out"
            )
    return Notice(tenant, text, withheld, tuple(warnings))


def drafts(impact: Impact, tenant: str | None = None) -> list[Notice]:
    """A draft for ``tenant``, or for every flagged tenant (``Impact.affected``)."""
    if tenant is not None:
        return [draft(impact, tenant)]
    return [draft(impact, t.tenant) for t in impact.affected()]


def file_name(impact: Impact, tenant: str) -> str:
    """``notice-<incident>-<tenant>.md``: a tenant id is text from logs, so anything but
    letters, digits, ``.``, ``_`` and ``-`` is replaced, and a hash keeps such names apart."""
    import hashlib

    safe = re.sub(r"[^A-Za-z0-9._-]", "_", tenant)[:64].lstrip(".") or "_"
    if safe != tenant:
        safe += "-" + hashlib.sha256(tenant.encode()).hexdigest()[:8]
    return f"notice-{impact.incident_id[:12]}-{safe}.md"
