"""Several ``tenantwatch run`` / ``alert`` processes at once over one lake (local, and S3 on a
moto server), publishing to moto's SNS: every page arrives exactly once, nothing crashes, and
nothing is reported in doubt. The lake's lease (pipeline/lease.py) is what makes it so: the
processes take turns, and the later ones find the work done.

What arrived is counted on an SQS queue subscribed to the topic. The long variants (more
processes, more rounds, a process killed with SIGKILL while it holds the lease) are ``soak``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.alert import store
from pipeline.lake import Lake
from pipeline.lease import CLI_TTL_S
from tests import logfactory as lf
from tests.alertsinks import (
    NOTIFIED,
    Sinks,
    copy_lake,
    direct,
    make_sinks,
    upload_lake,
    write_findings_lake,
)
from tests.conftest import REPO
from tests.pooled import pooled_text

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
T0 = datetime(2026, 11, 16, 10, tzinfo=UTC)


@pytest.fixture(scope="module")
def findings_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("template") / "lake"
    write_findings_lake(str(root))
    return root


@pytest.fixture(scope="module")
def trail(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six hours of CloudTrail, each with one session of t0001 reading another tenant's data
    from an address of its own (six actors: six critical incidents, six pages)."""
    root = tmp_path_factory.mktemp("trail")
    for h in range(6):
        at = T0 + timedelta(hours=h)
        key_id = f"ASIAEXAMPLE{h:07d}"
        name = f"{lf.ACCOUNT}_CloudTrail_us-east-1_{at:%Y%m%dT%H%M}Z_{h}.json.gz"
        lf.delivery_file(
            root / f"AWSLogs/{lf.ACCOUNT}/CloudTrail/us-east-1/2026/11/16/{name}",
            [
                lf.assume_role(tenant="t0001", session=f"u{h}", new_key_id=key_id, time=_z(at)),
                lf.ct(
                    time=_z(at + timedelta(minutes=5)),
                    session=f"u{h}",
                    key_id=key_id,
                    key=f"tenants/t000{h + 2}/invoices/9.pdf",
                    sourceIPAddress=f"198.51.100.{10 + h}",
                ),
            ],
        )
    return root


def _z(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def sinks(aws: str) -> Sinks:
    return make_sinks(aws)


@dataclass
class Finished:
    args: list[str]
    code: int
    stdout: str
    stderr: str

    def summary(self) -> dict[str, object]:
        out: dict[str, object] = json.loads(self.stdout)
        return out


def _env(endpoint: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TENANTWATCH_", "AWS_"))}
    env.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
        OPENBLAS_NUM_THREADS="1",
    )
    return env


def start(args: Sequence[str], endpoint: str) -> subprocess.Popen[str]:
    # ``-m`` from the checkout: the code of this tree, whatever the venv has installed.
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", *args],
        cwd=REPO,
        env=_env(endpoint),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait(procs: Sequence[subprocess.Popen[str]], timeout_s: float = 300) -> list[Finished]:
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=timeout_s)
        out.append(Finished(list(map(str, p.args)), p.returncode, stdout, stderr))
    return out


def together(args: Sequence[str], n: int, endpoint: str) -> list[Finished]:
    """``n`` processes started at once with the same arguments."""
    return wait([start(args, endpoint) for _ in range(n)])


def _config(tmp_path: Path, s: Sinks) -> str:
    path = tmp_path / "tenantwatch.toml"
    path.write_text(pooled_text() + f'\n[alerting]\nsns_topic_arn = "{s.topic_arn}"\n')
    return str(path)


def check(done: Sequence[Finished], sinks: Sinks, pages: int, stage: str | None = None) -> None:
    """Every process finished cleanly; together they sent each page once, none in doubt."""
    for f in done:
        assert f.code == 0, f"{f.args}: exit {f.code}\n{f.stderr[-3000:]}"
        assert "Traceback" not in f.stderr and "in doubt" not in f.stderr, f.stderr[-3000:]
    summaries = [f.summary() for f in done]
    alerts = [s[stage] if stage else s for s in summaries]
    assert sum(a["notifications"]["sent"] for a in alerts) == pages  # type: ignore[index]
    assert all(a["in_doubt_ids"] == [] for a in alerts)  # type: ignore[index]
    got = sinks.deliveries()
    assert len(got) == pages and set(got.values()) == {1}, got


def test_alert_processes_at_once_over_a_local_lake_page_once(
    findings_lake: Path, sinks: Sinks, tmp_path: Path
) -> None:
    lake = copy_lake(findings_lake, tmp_path / "lake")
    args = ["--config", _config(tmp_path, sinks), "alert", "--lake", lake, "--json"]
    check(together(args, 3, sinks.endpoint), sinks, NOTIFIED)
    assert set(r["state"] for r in store.load_outbox(Lake(lake)).values()) == {"sent"}
    assert not (Path(lake) / "_state" / "lease.json").exists()  # released by the last one


def test_alert_processes_at_once_over_an_s3_lake_page_once(
    findings_lake: Path, sinks: Sinks, tmp_path: Path
) -> None:
    lake = upload_lake(findings_lake, sinks.endpoint, "lake-bucket")
    args = ["--config", _config(tmp_path, sinks), "alert", "--lake", lake, "--json"]
    check(together(args, 2, sinks.endpoint), sinks, NOTIFIED)  # (moto's S3 is slow: two)


@pytest.mark.parametrize("where", ["local", "s3"])
def test_run_processes_at_once_page_once(
    trail: Path, sinks: Sinks, tmp_path: Path, where: str
) -> None:
    lake = str(tmp_path / "lake")
    if where == "s3":
        direct("s3", sinks.endpoint).create_bucket(Bucket="run-lake")
        lake = "s3://run-lake/lake"
    args = ["--config", _config(tmp_path, sinks), "run", str(trail), "--lake", lake, "--json"]
    args += ["--workers", "1"]
    check(together(args, 3 if where == "local" else 2, sinks.endpoint), sinks, 6, stage="alert")


def test_a_run_that_waits_too_long_for_the_lease_says_who_holds_it(
    findings_lake: Path, sinks: Sinks, tmp_path: Path
) -> None:
    from pipeline.lease import Lease

    lake = copy_lake(findings_lake, tmp_path / "lake")
    held = Lease(lake)
    assert held.acquire("cli:elsewhere:4242:cafe0001", 600)
    args = ["--config", _config(tmp_path, sinks), "alert", "--lake", lake, "--lease-wait", "1"]
    (busy,) = together(args, 1, sinks.endpoint)
    assert busy.code == 75
    line = busy.stderr.strip()
    assert line.startswith(f"tenantwatch: error: another run holds the lease of {lake} ")
    assert "(owner cli:elsewhere:4242:cafe0001, expires 20" in line and "waited 1 s" in line
    assert sinks.deliveries() == {} and not store.load_outbox(Lake(lake))
    held.release()
    (ok,) = together(args, 1, sinks.endpoint)
    assert ok.code == 0 and len(sinks.deliveries()) == NOTIFIED


# --- the long variants ----------------------------------------------------------------------------


@pytest.mark.soak
@pytest.mark.parametrize("where", ["local", "s3"])
def test_soak_many_alert_and_run_processes_at_once(
    findings_lake: Path, trail: Path, sinks: Sinks, tmp_path: Path, where: str
) -> None:
    for trial in range(4):
        base = tmp_path / f"t{trial}"
        base.mkdir()
        if where == "local":
            lake = copy_lake(findings_lake, base / "lake")
        else:
            lake = upload_lake(findings_lake, sinks.endpoint, f"lake-{trial}")
        config = _config(base, sinks)
        alerts = ["--config", config, "alert", "--lake", lake, "--json"]
        runs = ["--config", config, "run", str(trail), "--lake", lake, "--json", "--workers", "1"]
        procs = [start(alerts, sinks.endpoint) for _ in range(3)]
        procs += [start(runs, sinks.endpoint) for _ in range(3)]
        done = wait(procs, timeout_s=900)
        for f in done:
            assert f.code == 0, f"{f.args}: exit {f.code}\n{f.stderr[-3000:]}"
            assert "Traceback" not in f.stderr and "in doubt" not in f.stderr
        # Which findings there are depends on which process detected first; every
        # notification recorded was sent, once.
        outbox = store.load_outbox(Lake(lake))
        assert len(outbox) >= NOTIFIED + 6 and {r["state"] for r in outbox.values()} == {"sent"}
        got = sinks.deliveries()
        assert set(got) == set(outbox) and set(got.values()) == {1}, got


@pytest.mark.soak
def test_soak_a_killed_holder_delays_the_next_run_but_never_doubles_a_page(
    findings_lake: Path, sinks: Sinks, tmp_path: Path
) -> None:
    """SIGKILL a process while it holds the lease: the others wait for the lease to lapse
    (pipeline.lease.CLI_TTL_S), then one of them finishes the work; what the killed one left
    ``publishing`` is in doubt, and nothing arrives twice."""
    killed_holding = 0
    for trial, delay in enumerate((0.0, 0.3, 1.0)):
        lake = copy_lake(findings_lake, tmp_path / f"lake{trial}")
        args = ["--config", _config(tmp_path, sinks), "alert", "--lake", lake, "--json"]
        victim = start(args, sinks.endpoint)
        lease = Path(lake) / "_state" / "lease.json"
        while not lease.exists():  # it holds the lease: grouping, snapshots or publishing
            assert victim.poll() is None, victim.communicate()
            time.sleep(0.05)
        time.sleep(delay)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        # A victim that finished before the signal released the lease: nothing to wait for.
        held = lease.exists()
        killed_holding += held
        began = time.monotonic()
        done = together(args, 2, sinks.endpoint)
        assert {f.code for f in done} <= {0, 1}, [f.stderr[-2000:] for f in done]
        # They waited for the dead run's lease to lapse (they could not have known it died).
        assert not held or time.monotonic() - began > CLI_TTL_S / 2
        outbox = store.load_outbox(Lake(lake))
        assert len(outbox) == NOTIFIED
        assert {r["state"] for r in outbox.values()} <= {"sent", "in_doubt"}
        got = sinks.deliveries()
        assert set(got.values()) <= {1}
        assert {n for n, r in outbox.items() if r["state"] == "sent"} <= set(got)
    assert killed_holding, "every victim finished before its signal: nothing was tested"
