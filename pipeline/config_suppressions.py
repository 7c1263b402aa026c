"""``[[suppressions]]``: the shape of a suppression and what its validation checks beyond its
types. The configuration (``pipeline.config``) holds a list of them; ``incident close
--suppress`` writes more into the lake, checked the same way (``pipeline.suppressions``)."""

from __future__ import annotations

import re
from datetime import datetime

import msgspec

from pipeline.errors import ConfigError


class Suppression(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Findings to record without paging: a known, accepted activity, for a limited time.

    Each pattern is a regular expression that must match the whole value; an empty one matches
    anything. A finding is suppressed when its detector is ``detector`` (or ``detector`` is
    ``any``) and every pattern given matches: ``actor`` the finding's actor, ``address`` each
    source address of its evidence, ``tenant`` each tenant it involves (the actor's and the
    targets), ``action`` each action of its evidence. A finding with no value for a given
    pattern is not suppressed: a suppression never hides more than it names.
    """

    id: str
    detector: str  # a detector id, or "any"
    reason: str
    owner: str
    expires: datetime  # required: a suppression nobody revisits outlives its reason
    actor: str = ""
    address: str = ""
    tenant: str = ""
    action: str = ""


SUPPRESSION_PATTERNS = ("actor", "address", "tenant", "action")
# A suppression's id becomes a column value and, for one written by ``incident close
# --suppress``, a file name in the lake.
_SUPPRESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def check_suppression(sup: Suppression, at: str) -> None:
    """What msgspec cannot check of a suppression (``at`` names it in the message): the id's
    spelling, a known detector, patterns that compile, at least one of them, a reason, an owner
    and an expiry with a time zone."""
    import detectors

    if not _SUPPRESSION_ID.fullmatch(sup.id):
        raise ConfigError(
            f"{at}.id: expected letters, digits, '.', '_' or '-' (at most 100), got {sup.id!r}"
        )
    if sup.detector != "any" and sup.detector not in detectors.REGISTRY:
        valid = ", ".join(["any", *detectors.REGISTRY])
        raise ConfigError(f"{at}.detector: unknown detector {sup.detector!r}; valid: {valid}")
    for key in SUPPRESSION_PATTERNS:
        pattern = getattr(sup, key)
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"{at}.{key}: not a valid regular expression ({exc})") from None
    if not any(getattr(sup, key) for key in SUPPRESSION_PATTERNS):
        raise ConfigError(
            f"{at}: expected at least one of actor, address, tenant or action (to turn a "
            "detector off, set enabled = false in its [detectors.<id>] table)"
        )
    for key in ("reason", "owner"):
        if not getattr(sup, key).strip():
            raise ConfigError(f"{at}.{key}: expected a non-empty text")
    if sup.expires.tzinfo is None:
        raise ConfigError(
            f"{at}.expires: expected a date-time with a time zone, e.g. 2026-11-17T00:00:00Z"
        )
