"""The daemon's one HTTP listener: /hooks/{github,gitlab,generic}, /healthz, /readyz and /metrics.

It only answers and signals; passes run on the scheduler's thread, never on a request thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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


def _make_handler(hooks: ListenerHooks) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "gitops-kaito"
        sys_version = ""

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
            body = self.rfile.read(length) if length > 0 else b""
            result = webhooks.handle(kind, dict(self.headers.items()), body, hooks.secret, hooks.branch())
            hooks.metrics.webhooks.labels(source=kind[:20], status=str(result.status)).inc()
            log.info("webhook %s: %s", kind, result.message,
                     extra={"fields": {"status": result.status, "sha": result.revision_hint}})
            if result.trigger:
                hooks.trigger(f"webhook {kind} {result.revision_hint[:12]}".strip())
            self._reply(result.status, (result.message + "\n").encode())

    return Handler


class Listener:
    """Starts the HTTP listener on a daemon thread; `port` is the bound one (pass 0 to pick a free port)."""

    def __init__(self, host: str, port: int, hooks: ListenerHooks) -> None:
        self._server = ThreadingHTTPServer((host, port), _make_handler(hooks))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="http-listener", daemon=True)

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
