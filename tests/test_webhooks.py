"""Webhook verification and the HTTP listener: signatures, events, sizes, probes and metrics over real HTTP."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Iterator

import pytest

from gitops_kaito.service import webhooks
from gitops_kaito.service.metrics import Metrics
from gitops_kaito.service.webserver import Listener, ListenerHooks, Probe

SECRET = b"s3cret-webhook-token-0123456789"
PUSH = json.dumps({"ref": "refs/heads/main", "after": "a" * 40}).encode()


def test_github_valid_push_triggers() -> None:
    headers = {"X-Hub-Signature-256": webhooks.sign(SECRET, PUSH), "X-GitHub-Event": "push"}
    result = webhooks.handle("github", headers, PUSH, SECRET, "main")
    assert (result.status, result.trigger) == (202, True)
    assert result.revision_hint == "a" * 40


def test_github_bad_signature_refused() -> None:
    headers = {"X-Hub-Signature-256": webhooks.sign(b"other", PUSH), "X-GitHub-Event": "push"}
    assert webhooks.handle("github", headers, PUSH, SECRET, "main").status == 401
    assert webhooks.handle("github", {"X-GitHub-Event": "push"}, PUSH, SECRET, "main").status == 401


def test_github_other_branch_and_event_ignored() -> None:
    other = json.dumps({"ref": "refs/heads/dev"}).encode()
    headers = {"X-Hub-Signature-256": webhooks.sign(SECRET, other), "X-GitHub-Event": "push"}
    assert webhooks.handle("github", headers, other, SECRET, "main").trigger is False
    issue = {"X-Hub-Signature-256": webhooks.sign(SECRET, PUSH), "X-GitHub-Event": "issues"}
    result = webhooks.handle("github", issue, PUSH, SECRET, "main")
    assert (result.status, result.trigger) == (202, False)


def test_gitlab_token() -> None:
    ok = webhooks.handle("gitlab", {"X-Gitlab-Token": SECRET.decode(), "X-Gitlab-Event": "Push Hook"}, PUSH,
                         SECRET, "main")
    assert ok.trigger
    bad = webhooks.handle("gitlab", {"X-Gitlab-Token": "nope", "X-Gitlab-Event": "Push Hook"}, PUSH, SECRET, "main")
    assert bad.status == 401 and not bad.trigger


def test_generic_hmac_sha512() -> None:
    headers = {"X-Signature": webhooks.sign(SECRET, b"{}", "sha512")}
    assert webhooks.handle("generic", headers, b"{}", SECRET, "main").trigger
    assert webhooks.handle("generic", {"X-Signature": "md5=00"}, b"{}", SECRET, "main").status == 401


def test_no_secret_means_disabled() -> None:
    assert webhooks.handle("github", {}, PUSH, None, "main").status == 403


@pytest.fixture
def listener() -> Iterator[tuple[Listener, list[str], Metrics]]:
    triggered: list[str] = []
    metrics = Metrics()
    ready = threading.Event()
    hooks = ListenerHooks(
        branch=lambda: "main", secret=SECRET, trigger=triggered.append,
        healthy=lambda: Probe(True, "ok"),
        ready=lambda: Probe(ready.is_set(), "ready" if ready.is_set() else "no pass completed yet"),
        metrics=metrics,
    )
    server = Listener("127.0.0.1", 0, hooks).start()
    try:
        yield server, triggered, metrics
    finally:
        server.stop()


def _request(port: int, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
             ) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data


def test_listener_routes(listener: tuple[Listener, list[str], Metrics]) -> None:
    server, triggered, _ = listener
    assert _request(server.port, "GET", "/healthz")[0] == 200
    assert _request(server.port, "GET", "/readyz") == (503, b"no pass completed yet\n")
    status, _ = _request(server.port, "POST", "/hooks/github", PUSH,
                         {"X-Hub-Signature-256": webhooks.sign(SECRET, PUSH), "X-GitHub-Event": "push"})
    assert status == 202 and len(triggered) == 1
    status, _ = _request(server.port, "POST", "/hooks/github", PUSH,
                         {"X-Hub-Signature-256": "sha256=00", "X-GitHub-Event": "push"})
    assert status == 401 and len(triggered) == 1
    metrics_status, text = _request(server.port, "GET", "/metrics")
    assert metrics_status == 200
    assert b'gitops_kaito_webhooks_total{source="github",status="401"} 1.0' in text
    assert b'gitops_kaito_webhooks_total{source="github",status="202"} 1.0' in text
    assert _request(server.port, "GET", "/nope")[0] == 404


def test_listener_refuses_oversized_body(listener: tuple[Listener, list[str], Metrics]) -> None:
    server, triggered, _ = listener
    # Only the headers are sent: the listener must answer 413 from Content-Length alone, before reading a body.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /hooks/generic HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     + f"Content-Length: {webhooks.MAX_BODY_BYTES + 1}\r\n\r\n".encode())
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.0 413") or reply.startswith(b"HTTP/1.1 413"), reply[:40]
    assert not triggered
