"""An HTTP proxy on 127.0.0.1 in front of the moto server that answers a share of requests as a
throttled S3 does: ``503 SlowDown``, the rest passed through unchanged.

Which requests fail is chosen by their method, path and query (a seeded hash; an upload's random
id left out), not by arrival order, so a run fails the same requests whatever the threads do; a
chosen request is refused its first ``burst`` attempts and then let through (S3 keeps
throttling a hot prefix for a while, so a client sees the same request refused several times in
a row).
"""

from __future__ import annotations

import hashlib
import http.client
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlencode, urlsplit

_SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
# Headers that belong to one hop, not to the request or response passed on.
_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "proxy-connection",
    }
)


class FaultProxy:
    def __init__(self, upstream: str, share: float, burst: int = 1, seed: int = 0) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.share, self.burst, self.seed = share, burst, seed
        self.refused: Counter[str] = Counter()  # request key -> 503s sent
        self.passed = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @staticmethod
    def key(method: str, target: str) -> str:
        parts = urlsplit(target)
        query = sorted((k, v) for k, v in parse_qsl(parts.query, True) if k != "uploadId")
        return f"{method} {parts.path}?{urlencode(query)}"

    def chosen(self, key: str) -> bool:
        digest = hashlib.sha256(f"{self.seed}\n{key}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < self.share

    def _refuse(self, key: str) -> bool:
        if not self.chosen(key):
            with self._lock:
                self.passed += 1
            return False
        with self._lock:
            if self.refused[key] >= self.burst:
                self.passed += 1
                return False
            self.refused[key] += 1
            return True

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # each response in one go, not 40 ms apart

            def log_message(self, *_: object) -> None:  # quiet
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    parts = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass  # trailers
                            return b"".join(parts)
                        parts.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _any(self) -> None:
                body = self._body()
                if proxy._refuse(proxy.key(self.command, self.path)):
                    self.send_response(503, "Slow Down")
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(_SLOW_DOWN)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(_SLOW_DOWN)
                    return
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                    if body or self.command in ("PUT", "POST"):
                        headers["Content-Length"] = str(len(body))
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    self.send_response(resp.status, resp.reason)
                    for k, v in resp.getheaders():
                        if k.lower() not in _HOP and k.lower() != "content-length":
                            self.send_header(k, v)
                    length = resp.getheader("Content-Length") if self.command == "HEAD" else None
                    self.send_header("Content-Length", length or str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    conn.close()

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _any

        return Handler
