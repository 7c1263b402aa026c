"""``[[tenants]]``: what the configuration says of each tenant itself (its geography, the kind of
its data), and what validation checks of it beyond its types.

A tenant's ``regions`` are the AWS regions its data may live in and be processed in (a contract
or a data-residency promise: an EU customer's data stays in ``eu-west-1`` and ``eu-central-1``);
``classification`` is the class of all of its data (``financial``, ``personal``, ``usage`` ...),
beside the ``[[classification]]`` patterns that classify single resources. The ``residency``
detector reads both. A tenant that is not listed has no known regions and is never judged: the
configuration is the only source of a tenant's geography, never a guess from its traffic.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import msgspec

from pipeline.errors import ConfigError

# An AWS region's spelling: us-east-1, eu-central-2, ap-southeast-4, us-gov-west-1, cn-north-1.
REGION = re.compile(r"[a-z]{2}(-[a-z]+){1,3}-\d{1,2}")


class Tenant(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One tenant: the regions its data may live in and be processed in, and the class of its
    data (empty: classified only by ``[[classification]]`` patterns, if any match)."""

    id: str
    regions: tuple[str, ...]
    classification: str = ""


def check_tenants(tenants: Sequence[Tenant], where: str) -> None:
    """One line naming the key: an empty id, a tenant listed twice, no regions, a region that is
    no AWS region's spelling or listed twice, a blank classification."""
    seen: set[str] = set()
    for i, t in enumerate(tenants):
        at = f"{where}: tenants[{i}]"
        if not t.id.strip():
            raise ConfigError(f"{at}.id: expected a tenant id")
        if t.id in seen:
            raise ConfigError(f"{at}.id: {t.id!r} is defined twice")
        seen.add(t.id)
        if not t.regions:
            raise ConfigError(
                f"{at}.regions: expected at least one region (leave a tenant out when its "
                "regions are not known: it is then not judged)"
            )
        for j, region in enumerate(t.regions):
            if not REGION.fullmatch(region):
                raise ConfigError(
                    f"{at}.regions[{j}]: expected an AWS region such as eu-west-1, got {region!r}"
                )
            if region in t.regions[:j]:
                raise ConfigError(f"{at}.regions[{j}]: {region!r} is listed twice")
        if t.classification and not t.classification.strip():
            raise ConfigError(f"{at}.classification: expected a class name or nothing")
