"""The daemon's one HTTP listener: /hooks/{github,gitlab,generic}, /healthz, /readyz and /metrics.

It only answers and signals; passes run on the scheduler's thread, never on a request thread.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST

from gitops_kaito.service import webhooks
from gitops_kaito.service.metrics import Metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Probe:
    ok: bool
    message: str


@dataclass
class ListenerHooks:
    """What the listener needs from the daemon, as plain callables (keeps this module free of daemon state)."""

    branch: Callable[[], str]
    secret: bytes | None
    trigger: Callable[[str], None]  # start a pass now; the argument is the reason, for logs
    healthy: Callable[[], Probe]
    ready: Callable[[], Probe]
    metrics: Metrics


@dataclass(frozen=True)
class ListenerLimits:
    """What one client may cost the listener: it answers probes and webhooks, and must stay up whoever connects."""

    max_connections: int = 64  # served at once; more wait in the accept backlog
    backlog: int = 128  # connections the kernel queues before accept (listen(2)): absorbs a burst
    read_timeout_s: float = 10.0  # a connection that sends nothing for this long is closed
    request_deadline_s: float = 30.0  # the whole request (line, headers, body) must arrive within this
    queue_wait_s: float = 1.0  # how long a connection past max_connections waits for a slot before a 503


def _make_handler(hooks: ListenerHooks, limits: ListenerLimits) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "gitops-kaito"
        sys_version = ""
        timeout = limits.read_timeout_s  # per receive: a stalled connection is closed (socketserver applies it)

        def setup(self) -> None:
            super().setup()
            # The read timeout is per receive: a client dripping a byte at a time would never meet it. The
            # deadline covers the whole request; past it the socket is shut and the reading thread returns.
            self._received = threading.Event()
            self._deadline = threading.Timer(limits.request_deadline_s, self._expire)
            self._deadline.daemon = True
            self._deadline.start()

        def _expire(self) -> None:
            if not self._received.is_set():
                log.info("http: request from %s not complete within %.0fs: connection closed",
                         self.client_address[0], limits.request_deadline_s)
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)

        def finish(self) -> None:
            self._deadline.cancel()
            with contextlib.suppress(OSError):  # the client may be gone already
                super().finish()

        def log_message(self, format: str, *args: object) -> None:
            log.debug("http %s", format % args)

        def _reply(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self) -> None:
            self._received.set()
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                probe = hooks.healthy()
                self._reply(200 if probe.ok else 503, (probe.message + "\n").encode())
            elif path == "/readyz":
                probe = hooks.ready()
                self._reply(200 if probe.ok else 503, (probe.message + "\n").encode())
            elif path == "/metrics":
                self._reply(200, hooks.metrics.render(), CONTENT_TYPE_LATEST)
            else:
                self._reply(404, b"not found\n")

        do_HEAD = do_GET

        def do_POST(self) -> None:
            path = self.path.split("?", 1)[0]
            if not path.startswith("/hooks/"):
                self._reply(404, b"not found\n")
                return
            kind = path[len("/hooks/"):].strip("/")
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                self._reply(400, b"bad Content-Length\n")
                return
            if length > webhooks.MAX_BODY_BYTES:
                # Refuse before reading: a huge body must not cost memory.
                hooks.metrics.webhooks.labels(source=kind[:20], status="413").inc()
                self.close_connection = True
                self._reply(413, b"payload too large\n")
                return
            try:
                body = self.rfile.read(length) if length > 0 else b""
            except OSError:  # the read timeout, or the deadline shut the socket
                body = b""
            self._received.set()
            if len(body) < max(length, 0):
                self.close_connection = True
                return  # the client stopped sending (or was cut off): no one to answer
            try:
                result = webhooks.handle(kind, dict(self.headers.items()), body, hooks.secret, hooks.branch())
            except Exception as err:  # one bad delivery must not cost more than a 500
                log.warning("webhook %s: %s: %s", kind, type(err).__name__, err)
                self._reply(500, b"internal error\n")
                return
            hooks.metrics.webhooks.labels(source=kind[:20], status=str(result.status)).inc()
            log.info("webhook %s: %s", kind, result.message,
                     extra={"fields": {"status": result.status, "sha": result.revision_hint}})
            if result.trigger:
                hooks.trigger(f"webhook {kind} {result.revision_hint[:12]}".strip())
            self._reply(result.status, (result.message + "\n").encode())

    return Handler


class _Server(ThreadingHTTPServer):
    """One thread per connection, at most limits.max_connections at once; the rest wait in the accept backlog
    (listen(limits.backlog)), and one that finds no slot within limits.queue_wait_s gets a 503."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 limits: ListenerLimits) -> None:
        self.limits = limits
        self.request_queue_size = limits.backlog
        self._slots = threading.BoundedSemaphore(limits.max_connections)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(timeout=self.limits.queue_wait_s):
            log.warning("http: %d connections already open: %s answered 503", self.limits.max_connections,
                        client_address[0])
            with contextlib.suppress(OSError):
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\n"
                                b"Connection: close\r\n\r\n")
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver prints a traceback to stderr; a client that misbehaves is worth one log line.
        err = sys.exc_info()[1]
        log.info("http: connection from %s ended: %s: %s", client_address[0], type(err).__name__, err)


class Listener:
    """Starts the HTTP listener on a daemon thread; `port` is the bound one (pass 0 to pick a free port)."""

    def __init__(self, host: str, port: int, hooks: ListenerHooks, limits: ListenerLimits | None = None) -> None:
        limits = limits or ListenerLimits()
        self._server = _Server((host, port), _make_handler(hooks, limits), limits)
        # shutdown() waits for serve_forever's next poll: a stop (SIGTERM, Ctrl-C) should not wait half a second.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="http-listener", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = self._server.server_address[0]
        return f"http://{host if isinstance(host, str) else host.decode()}:{self.port}"

    def start(self) -> Listener:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for serve_forever: it would hang on a listener never started
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()
