"""A moto server on 127.0.0.1 in a process of its own, counting the S3 objects it is asked for.

Every S3 read goes through the server, whoever makes it (pyarrow's S3 filesystem, boto3), so the
count needs no hook in the pipeline. ``GET /_soak/reads`` answers the object reads since the last
such call (``{"bucket/key": requests}``, GETs and HEADs of objects, not listings) and the number
of listings, and starts counting again. moto holds every object in memory: in a process of its own
it leaves the memory of the process running the functions to them.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote

READS = "/_soak/reads"

StartResponse = Callable[..., Any]


class CountingApp:
    """WSGI middleware in front of moto's application (path-style S3 requests)."""

    def __init__(self, app: Callable[[dict[str, Any], StartResponse], Iterable[bytes]]) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.reads: Counter[str] = Counter()
        self.listings = 0

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
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


def _serve(conn: Any) -> None:
    import logging

    from tests.motoserver import threaded_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request

    server = threaded_server()
    inner = server._server
    assert inner is not None
    inner.app = CountingApp(inner.app)  # type: ignore[assignment]
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
