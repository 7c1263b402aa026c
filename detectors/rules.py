"""Which actors may act on which tenants: the one place detectors ask.

``[[relationships]]`` (``pipeline.config``) declares what makes an access across tenants
legitimate: an organisation's parent acts on its children, a reseller on its clients, a
consultant (one named principal) on its listed tenants, a service role (a background job) on
every tenant, and the break-glass role on a tenant named by an open ticket. AWS services acting
for themselves (``pipeline.principals``) are no tenant's actor at all.

``Rules.of(relationships)`` reads the relationships once (a detector's ``fit``); its methods
answer per event, on pandas columns. The tickets are already read in: a detector never reads a
file (``pipeline.tickets.resolve``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

import numpy as np
import pandas as pd

from detectors.evidence import any_of, match, text
from pipeline.config import (
    BreakGlass,
    Consultant,
    Organisation,
    Relationship,
    Reseller,
    ServiceRole,
    Ticket,
)
from pipeline.principals import SERVICE_NAME, SERVICE_TYPE

# The role session an actor names: an assumed role's ARN, or another account's caller as ingest
# names it ("aws-account:<id>/<session>").
SESSION_NAME = r"^(?:arn:[\w-]+:sts::[^:]*:assumed-role/[^/]+|aws-account:\d{12})/(?P<s>.+)$"
# The session of an assumed role only (another account's caller names none): what
# ``tenant_switching`` matches consultants on.
ROLE_SESSION_NAME = r"assumed-role/[^/]+/(?P<s>.+)$"
_SEP = "\x1f"


# What makes a break-glass use invalid, in the order a report names them.
NO_TICKET = "no_ticket"  # the use names no ticket
UNKNOWN_TICKET = "unknown_ticket"  # it names one that no ticket source has
TENANT = "tenant"  # the target tenant is not on the ticket
EXPIRED = "expired"  # at or after the ticket's expiry
APPROVALS = "approvals"  # fewer distinct approvers than the relationship requires
BREAK_GLASS_RULES = (NO_TICKET, UNKNOWN_TICKET, TENANT, EXPIRED, APPROVALS)


class BreakGlassUse(NamedTuple):
    """Per event of the window: ``used``, the break-glass role acted on a tenant's data;
    ``covered``, a valid ticket covers it (``broken`` is empty); ``ticket``, the ticket the event
    names (a ``Ticket``, or the id when no ticket source has it; None when it names none);
    ``broken``, for a use, the rules it broke (``BREAK_GLASS_RULES``, a tuple, empty when valid;
    None where the role did not act); ``required``, for a use, the distinct approvers its
    relationship requires."""

    used: pd.Series
    covered: pd.Series
    ticket: pd.Series
    broken: pd.Series
    required: pd.Series


def approvals(ticket: Ticket) -> int:
    """The distinct approvers of ``ticket``: one person named twice, or in two spellings of
    case, approved once. Tickets name no requester, so nothing else is left out."""
    return len({a.strip().casefold() for a in ticket.approvers if a.strip()})


def ticket_rules(ticket: Ticket, target: str, when: datetime, required: int) -> tuple[str, ...]:
    """The rules a use of ``ticket`` on ``target`` at ``when`` breaks (empty: valid)."""
    broken = []
    if target not in ticket.tenants:
        broken.append(TENANT)
    if not when < ticket.expires:
        broken.append(EXPIRED)
    if approvals(ticket) < required:
        broken.append(APPROVALS)
    return tuple(broken)


@dataclass(frozen=True)
class Rules:
    """The relationships of ``[[relationships]]``, read into lookups."""

    pairs: frozenset[str]  # "<actor tenant>\x1f<target tenant>" a parent or reseller acts on
    consultants: tuple[Consultant, ...]
    service_roles: tuple[str, ...]  # principal patterns of the service roles
    break_glass: tuple[BreakGlass, ...]

    @classmethod
    def of(cls, relationships: Iterable[Relationship]) -> Rules:
        pairs: set[str] = set()
        consultants: list[Consultant] = []
        service: list[str] = []
        break_glass: list[BreakGlass] = []
        for rel in relationships:
            if isinstance(rel, Organisation):
                pairs |= {f"{rel.parent}{_SEP}{c}" for c in rel.children}
            elif isinstance(rel, Reseller):
                pairs |= {f"{rel.reseller}{_SEP}{c}" for c in rel.clients}
            elif isinstance(rel, Consultant):
                consultants.append(rel)
            elif isinstance(rel, ServiceRole):
                service.append(rel.principal_pattern)
            elif isinstance(rel, BreakGlass):
                break_glass.append(rel)
        return cls(frozenset(pairs), tuple(consultants), tuple(service), tuple(break_glass))

    def service_pattern(self, aws_services: bool = False) -> str | None:
        """One regex for the principals that act on every tenant: the service roles, and with
        ``aws_services`` AWS services acting for themselves (None: no such principal)."""
        patterns = [*self.service_roles, SERVICE_NAME] if aws_services else list(self.service_roles)
        return any_of(patterns)

    def service_role(self, principal: pd.Series) -> pd.Series:
        """Events whose principal (a column of ``actor_principal``) is a service role's."""
        return match(principal, self.service_pattern())

    def granted(
        self, principal: pd.Series, session: pd.Series, actor_tenant: pd.Series, target: pd.Series
    ) -> pd.Series:
        """Events a relationship allows (text columns): the actor's tenant is the target's parent
        or reseller, or a consultant of the target acted (see ``consultant_allowed``)."""
        pair = actor_tenant.fillna("") + _SEP + target.fillna("")
        return pair.isin(self.pairs) | consultant_allowed(
            principal, session, target, list(self.consultants)
        )

    def explained(self, frame: pd.DataFrame, session_name: str = SESSION_NAME) -> pd.Series:
        """Events the actor has a reason for: its own tenant, one a relationship grants it, or a
        service role's. ``frame`` has ``actor_principal``, ``actor_tenant``, ``target_tenant``;
        ``session_name`` reads the role session a consultant is matched on."""
        actor_t, target = text(frame["actor_tenant"]), text(frame["target_tenant"])
        ok = actor_t == target
        session = match(frame["actor_principal"], session_name, "s")
        ok |= self.granted(text(frame["actor_principal"]), session, actor_t, target)
        return ok | self.service_role(frame["actor_principal"])

    def break_glass_use(
        self, window: pd.DataFrame, session: pd.Series, target: pd.Series
    ) -> BreakGlassUse:
        """Where the break-glass role acted on a tenant's data, under which ticket, and which
        rules the use broke.

        The ticket an event names is ``actor_ticket`` (resolved at ingest from the relationship's
        ``ticket_tag`` session tag or its ``ticket_pattern``); where that is null, the
        relationship's ``ticket_pattern`` over the role session name (``session``). A use is
        valid when that ticket is known, has the relationship's ``approvals_required`` distinct
        approvers, lists the target tenant and has not expired; a use that some relationship
        matching its principal finds valid is valid. ``window`` has ``actor_principal``,
        ``actor_ticket`` and ``event_time``; ``target`` is the target tenants as text."""
        used = pd.Series(False, index=window.index)
        named = text(window["actor_ticket"])
        named = named.where(named.fillna("") != "", None)
        tickets = pd.Series(None, index=window.index, dtype=object)
        broken = pd.Series([None] * len(window), index=window.index, dtype=object)
        required = pd.Series([None] * len(window), index=window.index, dtype=object)
        has_target = target.notna()
        times = window["event_time"]
        for rel in self.break_glass:
            mine = match(window["actor_principal"], rel.principal_pattern) & has_target
            ticket = named.fillna(match(session.fillna(""), rel.ticket_pattern, "ticket"))
            known = {t.id: t for t in rel.tickets}
            for i in np.flatnonzero(mine.to_numpy()):  # break-glass uses: few
                ident = ticket.iat[i]
                why: tuple[str, ...]
                if not isinstance(ident, str) or not ident:
                    why = (NO_TICKET,)
                else:
                    t = known.get(ident)
                    tickets.iat[i] = t or ident
                    why = (
                        (UNKNOWN_TICKET,)
                        if t is None
                        else ticket_rules(t, target.iat[i], times.iat[i], rel.approvals_required)
                    )
                if broken.iat[i] != ():  # valid under one relationship is valid
                    broken.iat[i] = why
                    required.iat[i] = rel.approvals_required
            used |= mine
        covered = pd.Series([b == () for b in broken], index=window.index, dtype=bool)
        return BreakGlassUse(used, covered, tickets, broken, required)


def consultant_allowed(
    principal: pd.Series, session: pd.Series, target: pd.Series, consultants: list[Consultant]
) -> pd.Series:
    """Events a consultant relationship allows: the API principal is the consultant, or the role
    session name is or ends with it (services prefix it, e.g. ``tenant-t0049-<principal>``)."""
    ok = pd.Series(False, index=target.index)
    for rel in consultants:
        rx = rf"(?:^|[-.:@_]){re.escape(rel.principal)}$"
        who = (principal == rel.principal) | match(session.fillna(""), rx)
        ok |= who & target.isin(rel.tenants)
    return ok


def service_principals(frame: pd.DataFrame) -> np.ndarray:
    """Rows whose actor is an AWS service acting for itself (``pipeline.principals``): by
    identity type where the frame has ``actor_type``, else by the principal's name."""
    hits = match(frame["actor_principal"], SERVICE_NAME).to_numpy(dtype=bool)
    if "actor_type" in frame:
        hits = hits | (text(frame["actor_type"]) == SERVICE_TYPE).to_numpy(dtype=bool)
    return hits
