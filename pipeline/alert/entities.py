"""Who a finding is about, and what ties two findings to one actor: pure functions of a finding.

A finding names one actor (a principal, a session or token, an address) and its evidence lists
the addresses, event ids and request ids of its events. From these come two things:

- the **entities** people read: ``principal:<arn or API principal>``, ``session:<access key or
  token fingerprint>``, ``address:<ip>``, and ``egress:<ip>`` for an address on the shared
  egress list (shown, never used to join);
- the **links** that join findings into one incident: the actor, its addresses, its event and
  request ids (an API request shares its id across the access log, the authorizer log and the
  backend's CloudTrail calls; the two copies of a cross-account CloudTrail call share it too), and
  the role session name (``<account>/<session>``, which the requester's assumed-role ARN and the
  resource owner's ``aws-account:<id>/<session>`` both carry).

An API principal is joined to the IAM role session acting for it when the session name is the
principal or ends with it after a separator (``tenant-t0008-usr-4e4ee6be`` acts for
``usr-4e4ee6be``): the session offers ``user?:`` candidates, which join only an API principal's
``user:`` link, never another session's candidate (two sessions ending in ``-admin`` are not one
actor).

A tenant is never a link: two actors who only touched the same tenant are two stories.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# An assumed role's ARN, or another account's caller as ingest names it.
_ROLE_SESSION = re.compile(
    r"^(?:arn:[\w-]+:sts::(?P<a1>\d*):assumed-role/[^/]+|aws-account:(?P<a2>\d{12}))/(?P<s>.+)$"
)
_ACCESS_KEY = re.compile(r"^(?:AKIA|ASIA|AROA|AIDA)[A-Z0-9]{12,}$")
_SEPARATORS = re.compile(r"[-.:@_]")
# Kinds of entity shown to people, in the order they are listed.
KINDS = ("principal", "session", "address", "egress")


@dataclass(frozen=True)
class Egress:
    """The shared egress list (``[alerting] shared_egress``), parsed once."""

    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def of(cls, entries: Iterable[str]) -> Egress:
        return cls(tuple(ipaddress.ip_network(e, strict=False) for e in entries))

    def shared(self, address: str) -> bool:
        ip = _ip(address)
        return ip is not None and any(ip in net for net in self.networks)


@dataclass(frozen=True)
class Profile:
    entities: frozenset[str]
    links: frozenset[str]


# A token's fingerprint as an actor: the authorizer's (``sha256:``), ingest's for a token found in
# a log line (``redacted:sha256:``), and the older spellings.
_TOKEN_PREFIXES = ("fp:", "sha256:", "redacted:sha256:", "token:")


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def _evidence(f: Mapping[str, Any]) -> dict[str, Any]:
    try:
        ev = json.loads(f.get("evidence") or "{}")
    except ValueError:
        return {}
    return ev if isinstance(ev, dict) else {}


def _addresses(ev: Mapping[str, Any]) -> list[str]:
    out = []
    for item in ev.get("source_ips") or ():
        value = item[0] if isinstance(item, list | tuple) else item
        if isinstance(value, str) and _ip(value) is not None:
            out.append(value)
    return out


def _session_candidates(session: str) -> set[str]:
    """The session name itself and every tail of it after a separator."""
    out = {session}
    for m in _SEPARATORS.finditer(session):
        tail = session[m.end() :]
        if tail:
            out.add(tail)
    return out


def profile(f: Mapping[str, Any], egress: Egress) -> Profile:
    """The entities and links of one finding (a FINDINGS row)."""
    ev = _evidence(f)
    entities: set[str] = set()
    links: set[str] = set()

    def address(value: str) -> None:
        if egress.shared(value):
            entities.add(f"egress:{value}")
        else:
            entities.add(f"address:{value}")
            links.add(f"ip:{value}")

    actor = f.get("actor")
    if actor:
        m = _ROLE_SESSION.match(actor)
        if _ip(actor) is not None:
            address(actor)
        elif _ACCESS_KEY.match(actor) or actor.startswith(
            ("fp:", "sha256:", "redacted:sha256:", "token:")
        ):
            entities.add(f"session:{actor}")
            links.add(f"actor:{actor}")
        else:
            entities.add(f"principal:{actor}")
            links.add(f"actor:{actor}")
            if m:
                session = m.group("s")
                account = m.group("a1") or m.group("a2") or ""
                links.add(f"role-session:{account}/{session}")
                links.update(f"user?:{c}" for c in _session_candidates(session))
            elif "/" not in actor and ":" not in actor:
                links.add(f"user:{actor}")  # an API principal
        # An actor's own addresses tie it to other findings about the same actor. A tenant-level
        # finding's addresses are many actors' and tie nothing: it joins through shared events.
        for ip in _addresses(ev):
            address(ip)
    links.update(f"event:{e}" for e in ev.get("event_ids") or () if isinstance(e, str))
    links.update(f"request:{r}" for r in ev.get("request_ids") or () if isinstance(r, str))
    return Profile(frozenset(entities), frozenset(links))


def linked(a: Iterable[str], b: Iterable[str]) -> bool:
    """Whether two sets of links name one actor: a shared link, or a role session's name
    candidate meeting an API principal."""
    sa, sb = set(a), set(b)
    if any(not x.startswith("user?:") for x in sa & sb):
        return True
    return _users(sa, "user?:") & _users(sb, "user:") != set() or (
        _users(sb, "user?:") & _users(sa, "user:") != set()
    )


def _users(links: set[str], prefix: str) -> set[str]:
    return {x[len(prefix) :] for x in links if x.startswith(prefix)}


def sort_key(entity: str) -> tuple[int, str]:
    kind, _, value = entity.partition(":")
    return (KINDS.index(kind) if kind in KINDS else len(KINDS), value)
