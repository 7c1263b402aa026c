"""The lakes the partitioned and Spark detection tests compare runs on: ``sample_logs/`` ingested,
and a small simulated world with every attack scenario (and a few Sigma matches: no scenario
writes one) ingested with its own configuration."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from detectors.base import Partition
from detectors.cross_tenant_access import CrossTenantAccess
from pipeline.config import Config, load_config
from tests import logfactory as lf
from tests.conftest import SAMPLE_LOGS

INPUTS = ("AWSLogs", "apigateway", "authorizer")
ACTOR = ("actor_principal", "actor_session", "source_ip")


class TwoKinds(CrossTenantAccess):
    """cross_tenant_access's findings in a pass per kind, each keyed on the actor: ``keep``
    gives each pass its own findings (an importable class: Spark's executors unpickle it)."""

    partitions = (
        Partition(ACTOR, keep="cross_tenant|"),
        Partition(ACTOR, keep="break_glass"),
        Partition(ACTOR, keep="unresolved_actor"),
        Partition(ACTOR, keep="tenant_conflict"),
    )


# Four days: three of history (the warm-up day left out of tenant_switching's sample) and the
# attack day, a few hundred events a day.
WORLD = {"seed": 5, "tenants": 10, "days": 4, "events_per_day": 300}


def sample_lake(root: Path) -> tuple[str, Config]:
    """``sample_logs/`` ingested into ``root``, and its configuration."""
    from pipeline.ingest.run import ingest

    cfg = load_config(SAMPLE_LOGS / "tenantwatch.toml", environ={})
    ingest([str(SAMPLE_LOGS / f) for f in INPUTS], str(root), cfg)
    return str(root), cfg


def world_logs(folder: Path) -> Path:
    """The small world's logs in ``folder``, with a delivery file of secrets read on its attack
    day: a burst by one role (a Sigma correlation) and a batch read (a plain rule)."""
    from pipeline.simulate import SimulationSpec, simulate

    spec = SimulationSpec(digests=False, start=date(2026, 11, 9), **WORLD)  # type: ignore[arg-type]
    simulate(folder, spec)
    day = datetime.combine(spec.attack_day, datetime.min.time(), UTC) + timedelta(hours=14)
    secrets = [
        lf.ct(
            "GetSecretValue",
            time=f"{day + timedelta(seconds=20 * i):%Y-%m-%dT%H:%M:%SZ}",
            session="deploy-bot",
            role="ci-deployer",
            key=None,
            eventSource="secretsmanager.amazonaws.com",
            requestParameters={"secretId": f"prod/db-{i}"},
        )
        for i in range(12)
    ]
    secrets.append(
        lf.ct(
            "BatchGetSecretValue",
            time=f"{day:%Y-%m-%dT%H:%M:%SZ}",
            session="usr-mallory",
            key=None,
            eventSource="secretsmanager.amazonaws.com",
            requestParameters={"filters": [{"key": "tag-key", "values": ["prod"]}]},
        )
    )
    lf.delivery_file(folder / "AWSLogs" / "secrets" / "secrets.json.gz", secrets)
    return folder


def world_lake(root: Path, logs: Path) -> tuple[str, Config]:
    """The small world (``world_logs`` in ``logs``) ingested into ``root``."""
    from pipeline.ingest.run import ingest

    world_logs(logs)
    cfg = load_config(logs / "tenantwatch.toml", environ={})
    ingest([str(logs / f) for f in INPUTS], str(root), cfg)
    return str(root), cfg
