"""The listener stays up under abuse: stalled connections and slow bodies are cut, concurrent connections are
bounded (a burst waits in the accept backlog), and a deeply nested but correctly signed body is a 400, not a
RecursionError that drops the connection and prints a traceback."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from gitops_kaito.repo.bounded import JsonRefused, loads_json, nesting
from gitops_kaito.service import webhooks
from gitops_kaito.service.metrics import Metrics
from gitops_kaito.service.webserver import Listener, ListenerHooks, ListenerLimits, Probe
from tests.fixtures_cluster import wait_until

SECRET = b"s" * 32


@pytest.fixture
def triggers() -> list[str]:
    return []


def start(triggers: list[str], limits: ListenerLimits) -> Listener:
    hooks = ListenerHooks(branch=lambda: "main", secret=SECRET, trigger=triggers.append,
                          healthy=lambda: Probe(True, "ok"), ready=lambda: Probe(True, "ready"), metrics=Metrics())
    return Listener("127.0.0.1", 0, hooks, limits).start()


@pytest.fixture
def listener(triggers: list[str]) -> Iterator[Listener]:
    server = start(triggers, ListenerLimits(max_connections=4, read_timeout_s=0.5, request_deadline_s=1.0,
                                            queue_wait_s=0.2))
    yield server
    server.stop()


def get(listener: Listener, path: str = "/healthz") -> int:
    conn = http.client.HTTPConnection("127.0.0.1", listener.port, timeout=10)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


def post(listener: Listener, body: bytes, *, sign: bool = True) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", listener.port, timeout=10)
    headers = {"X-Signature": webhooks.sign(SECRET, body)} if sign else {}
    try:
        conn.request("POST", "/hooks/generic", body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def connect(listener: Listener) -> socket.socket:
    return socket.create_connection(("127.0.0.1", listener.port), timeout=10)


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closed this connection (EOF or reset) within the socket's timeout."""
    try:
        sock.recv(1024)  # EOF (or an error answer before it): anything but a hang
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_a_deeply_nested_signed_body_is_a_400_and_the_listener_stays_up(listener: Listener, triggers: list[str],
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for body in (b"[" * 100_000 + b"]" * 100_000, b'{"ref": ' + b"[" * 70 + b"]" * 70 + b"}"):
        status, text = post(listener, body)
        assert status == 400 and "nests" in text
    assert triggers == [] and get(listener) == 200
    assert not any(r.exc_info for r in caplog.records), "a traceback was logged"
    assert post(listener, json.dumps({"ref": "refs/heads/main", "after": "a" * 40}).encode())[0] == 202
    assert len(triggers) == 1


def test_a_stalled_connection_is_closed(listener: Listener) -> None:
    """Fault: a client connects and sends nothing, or half a request line. Checks: the server closes both (the
    read timeout), and answers others meanwhile."""
    silent, half = connect(listener), connect(listener)
    half.sendall(b"GET /heal")
    assert get(listener) == 200
    assert closed_by_server(silent) and closed_by_server(half)


def test_a_slow_body_is_cut_at_the_deadline(listener: Listener) -> None:
    """Fault: a POST that announces 1 KiB and drips a byte every 0.1 s (under the per-read timeout, so only the
    request deadline can end it). Checks: the server closes the connection, nothing is triggered."""
    sock = connect(listener)
    sock.sendall(b"POST /hooks/generic HTTP/1.1\r\nHost: x\r\nContent-Length: 1024\r\n\r\n")
    cut = threading.Event()

    def drip() -> None:
        for _ in range(200):
            try:
                sock.sendall(b"x")
            except OSError:
                cut.set()
                return
            time.sleep(0.1)  # the slow client being simulated, not synchronisation

    threading.Thread(target=drip, daemon=True).start()
    assert closed_by_server(sock)
    wait_until(cut.is_set, 15, what="the server to cut the dripping client")


def test_connections_are_bounded_and_a_burst_waits_in_the_backlog(triggers: list[str]) -> None:
    """Fault: as many stalled connections as the bound, then more. Checks: a connection past the bound gets a 503
    (no thread, no hang); once the stalled ones are cut, requests are served again; a burst of 150 connections at
    once is all answered (200 or 503), none refused by the kernel."""
    server = start(triggers, ListenerLimits(max_connections=3, read_timeout_s=1.5, request_deadline_s=2.0,
                                            queue_wait_s=0.1))
    try:
        assert server._server.request_queue_size >= 128
        stalled = [connect(server) for _ in range(3)]
        # accept(2) takes connections in arrival order: the three stalled ones hold every slot now
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 503
        conn.close()
        for sock in stalled:
            assert closed_by_server(sock)
        wait_until(lambda: get(server) == 200, 15, what="the listener to serve again")
        answers: list[int] = []
        lock = threading.Lock()

        def one() -> None:
            try:
                code = get(server)
            except OSError:
                code = 0
            with lock:
                answers.append(code)

        burst = [threading.Thread(target=one) for _ in range(150)]
        for t in burst:
            t.start()
        for t in burst:
            t.join(30)
        assert len(answers) == 150 and set(answers) <= {200, 503} and 200 in answers, sorted(set(answers))
    finally:
        server.stop()


def test_bounded_json() -> None:
    assert nesting(b'{"a": [1, {"b": "[[[[{{{{"}]}') == 3
    assert loads_json(b'{"a": [1]}', 100) == {"a": [1]}
    with pytest.raises(JsonRefused, match="nests 65 levels"):
        loads_json(b"[" * 65 + b"]" * 65, 1000)
    with pytest.raises(JsonRefused, match="over 10 bytes"):
        loads_json(b'{"a": "0123456789"}', 10)
    with pytest.raises(JsonRefused, match="not JSON"):
        loads_json(b"{nope", 100)
