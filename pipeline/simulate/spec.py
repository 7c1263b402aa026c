"""The simulation's settings and their validation (the only input that shapes the output)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from pipeline.errors import TenantwatchError

ALL_SCENARIOS: tuple[str, ...] = (
    "s3_prefix_cross_tenant",
    "authorizer_cache_reuse",
    "token_tenant_mismatch",
    "tenant_enumeration",
    "credential_stuffing",
    "break_glass",
    "residency_copied_outside",
    "cache_busting",
    "cache_flush_deploy",
    "token_replay",
    "access_finance_export",
)
# How the SaaS encodes its tenants (``pipeline.simulate.worlds``): one business, three layouts.
WORLDS: tuple[str, ...] = ("pooled", "silo", "bridge")


class SimulationError(TenantwatchError):
    """The simulation spec cannot describe a world (bad usage: exit code 2)."""

    exit_code = 2


@dataclass(frozen=True)
class SimulationSpec:
    seed: int = 7
    tenants: int = 50
    days: int = 15  # the last day is the attack day; the days before are baseline
    # Tenant traffic (CloudTrail + API requests) per day, all tenants together; background jobs,
    # operators and the attack scenarios come on top. 1200 keeps sample_logs/ at a few MB.
    events_per_day: int = 1200
    scenarios: tuple[str, ...] = ALL_SCENARIOS  # () injects none
    start: date = date(2026, 11, 2)  # a Monday; attack day = start + days - 1
    account: str = "111122223333"
    region: str = "us-east-1"
    world: str = "pooled"
    # CloudTrail-Digest files, hourly per account: an organisation trail of 50 accounts writes as
    # many of them as log files. What reads only the events (the evaluation) can do without.
    digests: bool = True

    @property
    def attack_day(self) -> date:
        return date.fromordinal(self.start.toordinal() + self.days - 1)


def validate(spec: SimulationSpec) -> None:
    """Reject a spec that cannot be simulated, with a message naming the setting."""
    if not isinstance(spec.seed, int):
        raise SimulationError(f"seed: expected an integer, got {spec.seed!r}")
    if not 10 <= spec.tenants <= 9999:
        raise SimulationError(
            f"tenants: expected 10 to 9999 (ids are t0001..t9999), got {spec.tenants}"
        )
    if spec.days < 2:
        raise SimulationError(f"days: expected 2 or more (baseline + attack day), got {spec.days}")
    if spec.events_per_day < 100:
        raise SimulationError(f"events_per_day: expected 100 or more, got {spec.events_per_day}")
    if isinstance(spec.scenarios, str):
        raise SimulationError("scenarios: expected a tuple of names, got a string")
    unknown = [s for s in spec.scenarios if s not in ALL_SCENARIOS]
    if unknown:
        raise SimulationError(
            f"scenarios: unknown scenario {', '.join(map(repr, unknown))}; "
            f"valid: {', '.join(ALL_SCENARIOS)}"
        )
    if len(set(spec.scenarios)) != len(spec.scenarios):
        raise SimulationError("scenarios: a scenario is listed twice")
    if spec.world not in WORLDS:
        raise SimulationError(f"world: expected one of {', '.join(WORLDS)}, got {spec.world!r}")
    if not re.fullmatch(r"\d{12}", spec.account):
        raise SimulationError(f"account: expected 12 digits, got {spec.account!r}")
    if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", spec.region):
        raise SimulationError(
            f"region: expected an AWS region such as us-east-1, got {spec.region!r}"
        )
    if not isinstance(spec.start, date):
        raise SimulationError(f"start: expected a date, got {spec.start!r}")
    if spec.start.year < 2000 or spec.attack_day.year > 9998:
        raise SimulationError(f"start: expected a date between 2000 and 9998, got {spec.start}")
