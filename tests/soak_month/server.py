"""A moto server on 127.0.0.1 in a process of its own, counting the S3 objects it is asked for.

Every S3 read goes through the server, whoever makes it (pyarrow's S3 filesystem, boto3), so the
count needs no hook in the pipeline. ``GET /_soak/reads`` answers the object reads since the last
such call (``{"bucket/key": requests}``, GETs and HEADs of objects, not listings) and the number
of listings, and starts counting again. moto holds every object in memory: in a process of its own
it leaves the memory of the process running the functions to them.

The server keeps the month's time, not the machine's: ``POST /_soak/clock?at=<ISO time>`` sets
the time S3 stamps on what is written from then on (an object's ``LastModified``, a delete
marker's, an Object Lock retention's start). Left on the machine's clock, every object of a month
played in the past would be written after every moment of it: a scheduled run, which takes an
object outside a dated layout (a log export's) as an input once it was written since the run's
start, would list each export ever delivered as new, on every tick.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, unquote

READS = "/_soak/reads"
CLOCK = "/_soak/clock"

StartResponse = Callable[..., Any]


class CountingApp:
    """WSGI middleware in front of moto's application (path-style S3 requests)."""

    def __init__(
        self,
        app: Callable[[dict[str, Any], StartResponse], Iterable[bytes]],
        clock: Callable[[datetime | None], None] | None = None,
    ) -> None:
        self.app = app
        self.clock = clock
        self.lock = threading.Lock()
        self.reads: Counter[str] = Counter()
        self.listings = 0

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == CLOCK and self.clock is not None:
            at = parse_qs(environ.get("QUERY_STRING", "")).get("at", [""])[0]
            self.clock(datetime.fromisoformat(at) if at else None)
            start_response("204 No Content", [])
            return []
        if path == READS:
            with self.lock:
                body = json.dumps({"reads": dict(self.reads), "listings": self.listings})
                self.reads, self.listings = Counter(), 0
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body.encode()]
        method = environ.get("REQUEST_METHOD", "")
        auth = environ.get("HTTP_AUTHORIZATION", "")
        if method in ("GET", "HEAD") and "/s3/" in auth:  # SigV4 scope names the service
            bucket, _, key = unquote(path.lstrip("/")).partition("/")
            with self.lock:
                if key:
                    self.reads[f"{bucket}/{key}"] += 1
                elif "list-type" in environ.get("QUERY_STRING", ""):
                    self.listings += 1
        return self.app(environ, start_response)


def index_listings() -> Callable[[], None]:
    """Make moto's S3 listings seek to their prefix, as S3's do.

    moto answers a listing by copying and scanning every key of the bucket, so over a simulated
    month each listing would cost more with every object the month delivered or wrote, and the
    soak would measure moto's scan instead of the functions. Here each bucket's key store keeps
    its names sorted as keys come and go, and a listing with a prefix is handed only the keys
    under it; what moto does with them (delimiters, delete markers, pages) is unchanged. For
    this process only (the soak's server); the function returned undoes it."""
    import bisect
    import uuid

    from moto.s3 import models, utils

    store = utils._VersionedKeyStore
    attr = f"_soak_names_{uuid.uuid4().hex}"  # each patch's own index: none outlives its undo

    def names(keys: Any) -> list[str]:
        got = keys.__dict__.get(attr)
        if got is None:
            got = keys.__dict__[attr] = sorted(dict.keys(keys))
        return got  # type: ignore[no-any-return]

    def added(keys: Any, key: str, was: bool) -> None:
        if not was and attr in keys.__dict__:
            bisect.insort(keys.__dict__[attr], key)

    set_item, set_list, pop = store.__setitem__, store.setlist, store.pop

    def __setitem__(self: Any, key: str, value: Any) -> Any:
        was = dict.__contains__(self, key)
        out = set_item(self, key, value)
        added(self, key, was)
        return out

    def setlist(self: Any, key: Any, list_: Any) -> Any:
        was = dict.__contains__(self, key)
        out = set_list(self, key, list_)
        added(self, key, was)
        return out

    def pop_(self: Any, key: str) -> None:
        pop(self, key)
        if attr in self.__dict__:
            ns = self.__dict__[attr]
            i = bisect.bisect_left(ns, key)
            if i < len(ns) and ns[i] == key:
                del ns[i]

    store.__setitem__ = __setitem__  # type: ignore[assignment]
    store.setlist = setlist  # type: ignore[method-assign]
    store.pop = pop_  # type: ignore[assignment,method-assign]

    class _Under:
        def __init__(self, keys: Any, prefix: str) -> None:
            ns = names(keys)
            i = bisect.bisect_left(ns, prefix)
            self.found: list[tuple[str, Any]] = []
            while i < len(ns) and ns[i].startswith(prefix):
                if dict.__contains__(keys, ns[i]):
                    self.found.append((ns[i], keys[ns[i]]))
                i += 1

        def items(self) -> list[tuple[str, Any]]:
            return self.found

    class _Bucket:
        def __init__(self, bucket: Any, prefix: str) -> None:
            self._bucket = bucket
            self.keys = _Under(bucket.keys, prefix)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._bucket, name)

    list_objects = models.S3Backend.list_objects

    def indexed(self: Any, bucket: Any, prefix: Any, *args: Any, **kwargs: Any) -> Any:
        if prefix and type(bucket) is models.FakeBucket:
            bucket = _Bucket(bucket, prefix)
        return list_objects(self, bucket, prefix, *args, **kwargs)

    models.S3Backend.list_objects = indexed  # type: ignore[method-assign]

    def undo() -> None:
        store.__setitem__, store.setlist, store.pop = set_item, set_list, pop  # type: ignore
        models.S3Backend.list_objects = list_objects  # type: ignore[method-assign]

    return undo


def month_clock() -> Callable[[datetime | None], None]:
    """Make moto's S3 stamp what is written with a time of the month's (see the module's
    docstring): the setter returned takes an aware time, or None for the machine's clock again.
    For this process only (the soak's server)."""
    from moto.s3 import models

    real = models.utcnow
    now: list[datetime | None] = [None]

    def utcnow() -> datetime:
        at = now[0]
        return real() if at is None else at

    models.utcnow = utcnow  # type: ignore[attr-defined]

    def set_clock(at: datetime | None) -> None:
        # moto's times are naive UTC.
        now[0] = None if at is None else at.astimezone(UTC).replace(tzinfo=None)

    return set_clock


def _serve(conn: Any) -> None:
    import logging

    from tests.motoserver import threaded_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    index_listings()

    server = threaded_server()
    inner = server._server
    assert inner is not None
    inner.app = CountingApp(inner.app, month_clock())  # type: ignore[assignment]
    conn.send(server.get_host_and_port())
    conn.recv()  # until the parent says stop (or dies: recv raises EOFError)


class MotoProcess:
    """``with MotoProcess() as endpoint:`` a counting moto server for the block's duration."""

    def __enter__(self) -> str:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child,), daemon=True)
        self.proc.start()
        if not self.conn.poll(120):
            self.proc.kill()
            raise RuntimeError("the moto server did not start within 2 minutes")
        host, port = self.conn.recv()
        return f"http://{host}:{port}"

    def __exit__(self, *_: object) -> None:
        with contextlib.suppress(OSError):
            self.conn.send("stop")
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()


def set_clock(endpoint: str, at: datetime | None) -> None:
    """Set the server's clock (``CLOCK``) to ``at``; None: the machine's clock again."""
    import urllib.parse
    import urllib.request

    query = urllib.parse.urlencode({"at": at.isoformat()} if at is not None else {})
    req = urllib.request.Request(f"{endpoint}{CLOCK}?{query}", method="POST")  # noqa: S310
    with urllib.request.urlopen(req) as r:  # noqa: S310 - our server on 127.0.0.1
        r.read()
