"""A rule-driven fault-injecting HTTP proxy for tests: it stands on 127.0.0.1 in front of a
server (a moto server) and breaks chosen requests the way networks and services break, each
request by the first rule that matches it.

    with RuleProxy(moto_url) as proxy:
        proxy.add(Rule("drop-after", body=rb"Action=Publish\\b", times=1))
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)

Rules are tried in order; the first that matches a request and has uses left decides what
happens to it (no rule: it is passed on):

``pass``           forward it and return the answer;
``error-before``   answer ``status`` without forwarding (the service never saw it);
``error-after``    forward it, then answer ``status`` instead of what the service said;
``drop-after``     forward it, then close the connection without answering;
``reset-before``   reset the connection (TCP RST) without forwarding;
``reset-after``    forward it, then reset the connection;
``delay``          forward it, wait ``delay_s`` (past the client's read timeout), then answer.

A rule matches on any of ``method``, ``path`` (a regular expression searched in the path and
query), ``target`` (the ``X-Amz-Target`` header of JSON protocols) and ``body`` (a regular
expression over the request body: query protocols such as SNS name the action there). ``skip``
lets that many matching requests through first; ``times`` bounds how many it then breaks.

A rule with a ``share`` breaks that share of distinct requests, as a throttled S3 does
(``Rule.throttled_s3``): a request is chosen by its method, path and query (a seeded hash; an
upload's random id left out), not by arrival order, so a run breaks the same requests whatever
the threads do, and a chosen request is broken its first ``burst`` attempts and then let through
(S3 keeps throttling a hot prefix for a while, so a client sees the same request refused several
times in a row). ``rule.refused`` counts the breaks per request.
``before``, if given, is called just before the request would be forwarded (to change the
world behind the proxy at that very moment, e.g. replace an object between two reads).
``proxy.log`` records every request and what was done with it.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import re
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

ACTIONS = (
    "pass",
    "error-before",
    "error-after",
    "drop-after",
    "reset-before",
    "reset-after",
    "delay",
)
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "expect",
}
_CODES = {400: "Throttling", 500: "InternalFailure", 502: "BadGateway", 503: "ServiceUnavailable"}


@dataclass
class Rule:
    action: str
    method: str | None = None
    path: str | None = None
    target: str | None = None
    body: bytes | None = None
    status: int = 500
    code: str | None = None  # the AWS error code in the answer (default: by status)
    delay_s: float = 0.0
    skip: int = 0
    times: int | None = None  # None: every matching request
    before: Callable[[], None] | None = None
    share: float | None = None  # break this share of distinct requests (None: every one)
    burst: int = 1  # with a share: attempts of a chosen request broken before it passes
    seed: int = 0  # with a share: which requests are chosen
    s3: bool = False  # answer errors as S3 does (<Error> at the root), not as query protocols
    seen: int = field(default=0, init=False)
    applied: int = field(default=0, init=False)
    refused: Counter[str] = field(default_factory=Counter, init=False)  # request key -> breaks

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown action {self.action!r}; one of {ACTIONS}")

    @classmethod
    def throttled_s3(cls, share: float, burst: int = 1, seed: int = 0) -> Rule:
        """``503 SlowDown`` for ``share`` of distinct requests, ``burst`` times each."""
        return cls("error-before", status=503, code="SlowDown", share=share, burst=burst,
                   seed=seed, s3=True)  # fmt: skip

    @staticmethod
    def key(method: str, path: str) -> str:
        """A request as the share chooses it: method, path and query, an upload's id left out."""
        parts = urlsplit(path)
        query = sorted((k, v) for k, v in parse_qsl(parts.query, True) if k != "uploadId")
        return f"{method} {parts.path}?{urlencode(query)}"

    def takes(self, method: str, path: str) -> bool:
        """With a share: is this request one to break now (and count it)?"""
        key = self.key(method, path)
        digest = hashlib.sha256(f"{self.seed}\n{key}".encode()).digest()
        if self.share is None or int.from_bytes(digest[:8], "big") / 2**64 >= self.share:
            return False
        if self.refused[key] >= self.burst:
            return False
        self.refused[key] += 1
        return True

    def matches(self, method: str, path: str, target: str, body: bytes) -> bool:
        return (
            (self.method is None or self.method == method)
            and (self.path is None or re.search(self.path, path) is not None)
            and (self.target is None or self.target == target)
            and (self.body is None or re.search(self.body, body) is not None)
        )

    def error_body(self) -> bytes:
        code = self.code or _CODES.get(self.status, "InternalFailure")
        if self.s3:
            return (
                f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
                "<Message>injected by the fault proxy</Message></Error>"
            ).encode()
        kind = "Sender" if self.status < 500 else "Receiver"
        return (
            f"<ErrorResponse><Error><Type>{kind}</Type><Code>{code}</Code>"
            f"<Message>injected by the fault proxy</Message></Error>"
            f"<RequestId>fault-proxy</RequestId></ErrorResponse>"
        ).encode()


@dataclass(frozen=True)
class Logged:
    method: str
    path: str
    target: str
    body: bytes
    action: str


class RuleProxy:
    """A threaded proxy on 127.0.0.1 (an ephemeral port) in front of ``upstream``, breaking
    requests by its ``rules``."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        assert parts.hostname in ("127.0.0.1", "localhost"), "tests stay on 127.0.0.1"
        self.upstream = (parts.hostname, parts.port or 80)
        self.rules: list[Rule] = []
        self.log: list[Logged] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def add(self, rule: Rule) -> Rule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def actions(self, action: str | None = None) -> list[Logged]:
        """What was logged (with ``action``, or all)."""
        with self._lock:
            return [e for e in self.log if action is None or e.action == action]

    def decide(self, method: str, path: str, target: str, body: bytes) -> Rule | None:
        with self._lock:
            chosen = None
            for rule in self.rules:
                if not rule.matches(method, path, target, body):
                    continue
                rule.seen += 1
                if rule.seen <= rule.skip:
                    continue
                if rule.times is not None and rule.applied >= rule.times:
                    continue
                if rule.share is not None and not rule.takes(method, path):
                    continue
                rule.applied += 1
                chosen = rule
                break
            self.log.append(Logged(method, path, target, body, chosen.action if chosen else "pass"))
            return chosen

    def __enter__(self) -> RuleProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _handler(proxy: RuleProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as botocore's connection pool expects

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                out = b""
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return out
                    out += self.rfile.read(size)
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
            conn = http.client.HTTPConnection(*proxy.upstream, timeout=120)
            try:
                conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for k, v in self.headers.items():
                    if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length":
                        conn.putheader(k, v)
                conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body)
                resp = conn.getresponse()
                data = resp.read()
                return resp.status, resp.getheaders(), data
            finally:
                conn.close()

        def _answer(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
            self.send_response_only(status)
            for k, v in headers:
                if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length":
                    self.send_header(k, v)
            if self.command == "HEAD":
                length = dict((k.lower(), v) for k, v in headers).get("content-length", "0")
            else:
                length = str(len(data))
            self.send_header("Content-Length", length)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            self.wfile.flush()

        def _reset(self) -> None:
            # SO_LINGER with a zero timeout: close() sends RST instead of FIN.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True

        def _handle(self) -> None:
            body = self._body()
            target = self.headers.get("X-Amz-Target", "")
            rule = proxy.decide(self.command, self.path, target, body)
            action = rule.action if rule else "pass"
            if rule is not None and rule.before is not None:
                rule.before()
            try:
                if action == "error-before":
                    assert rule is not None
                    self._error(rule)
                    return
                if action == "reset-before":
                    self._reset()
                    return
                status, headers, data = self._forward(body)
                if action == "error-after":
                    assert rule is not None
                    self._error(rule)
                elif action == "drop-after":
                    self.close_connection = True  # closed without a word
                elif action == "reset-after":
                    self._reset()
                else:
                    if action == "delay":
                        assert rule is not None
                        time.sleep(rule.delay_s)
                    self._answer(status, headers, data)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up first

        def _error(self, rule: Rule) -> None:
            self._answer(rule.status, [("Content-Type", "text/xml")], rule.error_body())

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _handle

    return Handler


@contextlib.contextmanager
def in_front_of(upstream: str, monkeypatch: Any) -> Iterator[RuleProxy]:
    """A ``RuleProxy`` in front of ``upstream`` that every AWS client the code under test makes
    goes through (``AWS_ENDPOINT_URL``), its cached clients dropped before and after."""
    from pipeline import aws

    with RuleProxy(upstream) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        aws.reset()
        yield proxy
    aws.reset()
