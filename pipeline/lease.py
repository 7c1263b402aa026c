"""The lake's lease: at most one run at a time detects, alerts and publishes over a lake.

Two runs that alert at once both find the same pending notifications and both send them, and
both rewrite the same incident state. So every path that publishes holds the lease: the
scheduled and the object-triggered Lambda runs (``pipeline.runs``), and the CLI's ``run`` and
``alert`` (``hold``).

The lease is one small document in the lake, ``_state/lease.json``: its owner and when it
expires, so that the lease of a run that died lapses by itself. On S3, conditional PUTs make
taking it atomic (``If-None-Match: *`` to create it; ``If-Match`` on the ETag read to take over
a lapsed one, renew it or let it go, so a lease someone else took meanwhile is never touched). On
a local disk, each of those steps runs under an ``flock`` of ``_state/lease.lock``, which the
operating system lets go of when a process dies, however it dies. A ``run`` forks ingest workers
while it renews the lease in a thread: no fork happens inside such a step (``_FORK_GUARD``; a
child would inherit the locked file and hold the lock as long as it lives), and the renewals use
an S3 client of their own.

A Lambda run holds it for its whole invocation (longer than Lambda's 15 minutes, no renewal).
The CLI holds it for ``CLI_TTL_S`` and renews it in the background, because a CLI run has no
time limit: a run killed with SIGKILL blocks others for at most ``CLI_TTL_S``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pipeline.errors import TenantwatchError

CLI_TTL_S = 120
CLI_WAIT_S = 300.0  # how long ``run`` and ``alert`` wait for a busy lease by default
_TAKEN = ("PreconditionFailed", "ConditionalRequestConflict")
_FORK_GUARD = threading.Lock()
os.register_at_fork(
    before=_FORK_GUARD.acquire,
    after_in_parent=_FORK_GUARD.release,
    after_in_child=_FORK_GUARD.release,
)


class LeaseBusy(TenantwatchError):
    """Another run holds the lake's lease; trying again later is the remedy."""

    exit_code = 75  # EX_TEMPFAIL (sysexits.h): a temporary failure, try again later


def cli_owner() -> str:
    """Who holds the lease, for the message another run prints: host, process, a nonce."""
    return f"cli:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lease:
    """One run's handle on the lease of the lake at ``lake_root``."""

    def __init__(self, lake_root: str) -> None:
        from pipeline.lake import LEASE, LEASE_LOCK, Lake

        lake = Lake(lake_root)
        self.root = lake_root
        self.local = lake.is_local
        self.path = lake.path(LEASE)  # "bucket/prefix/_state/lease.json" on S3
        self.lock_path = lake.path(LEASE_LOCK)
        self.owner = ""
        self._etag = ""
        self._client: Any = None

    def _s3(self) -> Any:
        if self._client is None:
            from pipeline import aws

            self._client = aws.own_client("s3")
        return self._client

    # --- the public steps ---------------------------------------------------------------------

    def acquire(self, owner: str, ttl_s: float, now: datetime | None = None) -> bool:
        body = self._body(owner, ttl_s, now)
        now = now or datetime.now(UTC)
        ok = self._acquire_local(body, now) if self.local else self._acquire_s3(body, now)
        if ok:
            self.owner = owner
        return ok

    def renew(self, ttl_s: float, now: datetime | None = None) -> bool:
        """Move our expiry on; False when the lease is no longer ours (it lapsed and was
        taken, or it is gone)."""
        if not self.owner:
            return False
        body = self._body(self.owner, ttl_s, now)
        if self.local:
            with self._locked():
                doc = self._read_local()
                if doc is None or doc.get("owner") != self.owner:
                    return False
                self._write_local(body)
                return True
        try:
            return self._put_s3(body, IfMatch=self._etag)
        except Exception as exc:
            if _error_code(exc) in ("NoSuchKey", "404"):  # gone: released by someone else
                return False
            raise

    def release(self) -> None:
        if not self.owner:
            return
        if self.local:
            with self._locked():
                doc = self._read_local()
                if doc is not None and doc.get("owner") == self.owner:
                    Path(self.path).unlink(missing_ok=True)
        else:
            bucket, key = self._bucket_key()
            try:
                self._s3().delete_object(Bucket=bucket, Key=key, IfMatch=self._etag)
            except Exception as exc:
                if _error_code(exc) not in (*_TAKEN, "NoSuchKey", "404"):
                    raise
        self.owner = ""

    def holder(self) -> dict[str, Any] | None:
        """The lease document as it is now (owner, expires), or None when nobody holds it."""
        if self.local:
            return self._read_local()
        bucket, key = self._bucket_key()
        held = self._get_s3(bucket, key)
        return None if held is None else held[0]

    # --- inside the steps ----------------------------------------------------------------------

    @staticmethod
    def _body(owner: str, ttl_s: float, now: datetime | None) -> str:
        expires = (now or datetime.now(UTC)) + timedelta(seconds=ttl_s)
        return json.dumps({"owner": owner, "expires": expires.isoformat()})

    @staticmethod
    def _expired(doc: Mapping[str, Any], now: datetime) -> bool:
        try:
            return datetime.fromisoformat(str(doc["expires"])) <= now
        except (KeyError, ValueError):
            return True  # unreadable: treat as lapsed rather than block every run forever

    def _bucket_key(self) -> tuple[str, str]:
        bucket, _, key = self.path.partition("/")
        return bucket, key

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        import fcntl

        Path(self.lock_path).parent.mkdir(parents=True, exist_ok=True)
        with _FORK_GUARD:
            fd = os.open(self.lock_path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # and with it the lock

    def _read_local(self) -> dict[str, Any] | None:
        try:
            text = Path(self.path).read_text()
        except FileNotFoundError:
            return None
        try:
            doc = json.loads(text)
        except ValueError:
            return {}
        return doc if isinstance(doc, dict) else {}

    def _write_local(self, body: str) -> None:
        tmp = f"{self.path}.{uuid.uuid4().hex}.tmp"
        Path(tmp).write_text(body)
        Path(tmp).replace(self.path)

    def _acquire_local(self, body: str, now: datetime) -> bool:
        with self._locked():
            doc = self._read_local()
            if doc is not None and not self._expired(doc, now):
                return False
            self._write_local(body)
            return True

    def _get_s3(self, bucket: str, key: str) -> tuple[dict[str, Any], str] | None:
        try:
            obj = self._s3().get_object(Bucket=bucket, Key=key)
        except Exception as exc:
            if _error_code(exc) in ("NoSuchKey", "404"):
                return None
            raise
        try:
            doc = json.loads(obj["Body"].read())
        except ValueError:
            doc = {}
        return (doc if isinstance(doc, dict) else {}), str(obj["ETag"])

    def _put_s3(self, body: str, **condition: str) -> bool:
        bucket, key = self._bucket_key()
        try:
            r = self._s3().put_object(Bucket=bucket, Key=key, Body=body.encode(), **condition)
        except Exception as exc:
            if _error_code(exc) not in _TAKEN:
                raise
            return False
        self._etag = str(r["ETag"])
        return True

    def _acquire_s3(self, body: str, now: datetime) -> bool:
        if self._put_s3(body, IfNoneMatch="*"):
            return True
        held = self._get_s3(*self._bucket_key())
        if held is None:  # released in between: one more try
            return self._put_s3(body, IfNoneMatch="*")
        doc, etag = held
        if not self._expired(doc, now):
            return False
        return self._put_s3(body, IfMatch=etag)  # take over the lapsed lease, unless taken


@dataclass
class Holding:
    """A lease held by a CLI run; ``ok()`` says whether it is still surely ours."""

    lease: Lease
    ttl_s: float
    _last_renewed: float
    _lost: threading.Event

    def ok(self) -> bool:
        # Renewals that keep failing (the lake unreachable) cannot prove the lease is still
        # ours once most of its time has passed since the last one that worked.
        fresh = time.monotonic() - self._last_renewed < 0.75 * self.ttl_s
        return fresh and not self._lost.is_set()


def _busy_message(lease: Lease, waited_s: float) -> str:
    doc = lease.holder() or {}
    who = doc.get("owner", "unknown")
    until = doc.get("expires", "unknown")
    return (
        f"another run holds the lease of {lease.root} (owner {who}, expires {until}); "
        f"waited {waited_s:g} s. Try again once it is done (or use --lease-wait)"
    )


@contextlib.contextmanager
def hold(
    lake_root: str,
    owner: str,
    *,
    wait_s: float = CLI_WAIT_S,
    ttl_s: float = CLI_TTL_S,
    poll_s: float = 1.0,
) -> Iterator[Holding]:
    """Hold the lake's lease for the ``with`` block, waiting up to ``wait_s`` for it; renewed
    every quarter of ``ttl_s`` meanwhile. ``LeaseBusy`` if it stays held by another run."""
    lease = Lease(lake_root)
    started = time.monotonic()
    while not _try(lease, owner, ttl_s):
        left = wait_s - (time.monotonic() - started)
        if left <= 0:
            raise LeaseBusy(_busy_message(lease, wait_s))
        # Jitter, so that runs queued behind one lease do not all ask at the same instant.
        time.sleep(min(left, poll_s * (0.5 + uuid.uuid4().int % 1000 / 1000)))
    lost = threading.Event()
    stop = threading.Event()
    holding = Holding(lease, ttl_s, time.monotonic(), lost)

    def renew() -> None:
        while not stop.wait(ttl_s / 4):
            try:
                if not lease.renew(ttl_s):
                    lost.set()
                    return
            except Exception:  # noqa: S112 - a failed renewal is tried again; ok() tells
                continue
            holding._last_renewed = time.monotonic()

    thread = threading.Thread(target=renew, name="tenantwatch-lease", daemon=True)
    thread.start()
    try:
        yield holding
    finally:
        stop.set()
        thread.join()
        lease.release()


def _try(lease: Lease, owner: str, ttl_s: float) -> bool:
    """``acquire``, with S3's own errors as the OSError a lake that cannot be reached is."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return lease.acquire(owner, ttl_s)
    except (BotoCoreError, ClientError) as exc:
        raise OSError(f"the lease of {lease.root}: {type(exc).__name__}: {exc}"[:500]) from exc


def _error_code(exc: BaseException) -> str:
    from pipeline import aws

    return aws.error_code(exc)
