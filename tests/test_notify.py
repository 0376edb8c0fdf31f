"""Notifications: which events a pass produces (pure), their payloads, and the sender against a loopback server.

The sender's sleep and clock are injected: retries and Retry-After are checked without waiting.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from gitops_kaito.adapters.gitsource import Checkout
from gitops_kaito.core.plan import Action, Change, Plan
from gitops_kaito.core.status import ModelReport
from gitops_kaito.model.objects import ObjectRef, Wave
from gitops_kaito.reconcile.gitsync import GitPassResult
from gitops_kaito.reconcile.sync import ModelResult, PassResult
from gitops_kaito.service import webhooks
from gitops_kaito.service.notify import (
    DEGRADED,
    DEPLOYED,
    FAILED_EVENT,
    RECOVERED,
    REMOVED,
    Answer,
    Decision,
    Event,
    Notifier,
    Origin,
    Request,
    Sender,
    SendRetry,
    Sink,
    Tracked,
    decide,
    event_text,
    http_post,
    redact_url,
    requests_for,
    retry_delay,
)

R1 = "main@sha1:" + "1" * 40
R2 = "main@sha1:" + "2" * 40
R3 = "main@sha1:" + "3" * 40
SECRET = b"a-notify-secret-of-32-bytes-xxx!"


def report(model: str, state: str, revision: str = R1, reason: str = "", message: str = "",
           **extra: Any) -> ModelReport:
    return ModelReport(f"default.{model}", "default", model, state, reason=reason, message=message,
                       revision=revision, **extra)


class Passes:
    """Feeds decide() pass after pass, as the notifier does, keeping what it remembers."""

    def __init__(self, *first: ModelReport, written: tuple[str, ...] = ()) -> None:
        seeded = decide(None, first, written=_ids(written))
        assert seeded.events == (), "the first pass only seeds"
        self.tracked = seeded.tracked

    def run(self, *reports: ModelReport, written: tuple[str, ...] = (), pruned: tuple[str, ...] = (),
            revision: str = R1) -> list[tuple[str, str]]:
        decision = decide(self.tracked, reports, written=_ids(written), pruned=_ids(pruned), revision=revision)
        self.tracked = decision.tracked
        return [(e.event, e.name) for e in decision.events]

    def last(self, *reports: ModelReport, **kw: Any) -> Decision:
        decision = decide(self.tracked, reports, written=_ids(kw.get("written", ())),
                          pruned=_ids(kw.get("pruned", ())), revision=kw.get("revision", R1))
        self.tracked = decision.tracked
        return decision


def _ids(names: tuple[str, ...]) -> set[str]:
    return {f"default.{n}" for n in names}


# -- decisions ------------------------------------------------------------------------------------
def test_first_pass_seeds_without_announcing_anything() -> None:
    reports = (report("a", "Ready"), report("b", "Failed", reason="X"), report("c", "Provisioning"),
               report("d", "Invalid", reason="InvalidRequest", message="bad sku"))
    p = Passes(*reports)
    assert p.run(*reports) == [], "a pass after the seed with nothing changed says nothing"
    assert p.tracked["default.a"] == Tracked("Ready", R1, deployed=R1)
    assert p.tracked["default.b"].failure == "Failed: X"


def test_ready_is_announced_once_per_revision() -> None:
    p = Passes(report("a", "Provisioning"))
    assert p.run(report("a", "Ready")) == [(DEPLOYED, "a")]
    assert p.run(report("a", "Ready")) == []
    # Another model's commit moves the pass's revision; "a" got no write, so it still runs R1: nothing to say.
    assert p.run(report("a", "Ready", R2), revision=R2) == []
    # A commit that changes "a": written this pass (still reading Ready), announced once a pass finds it settled.
    assert p.run(report("a", "Ready", R2), written=("a",), revision=R2) == []
    decision = p.last(report("a", "Ready", R2), revision=R2)
    assert [(e.event, e.revision, e.previous_state) for e in decision.events] == [(DEPLOYED, R2, "Ready")]
    assert p.run(report("a", "Ready", R2), revision=R2) == []


def test_a_model_written_while_ready_in_the_first_pass_is_announced_when_settled() -> None:
    p = Passes(report("a", "Ready"), written=("a",))
    assert p.run(report("a", "Ready")) == [(DEPLOYED, "a")]


def test_failures_once_per_distinct_reason_and_again_after_recovery() -> None:
    p = Passes(report("a", "Provisioning"))
    assert p.run(report("a", "Failed", reason="NodeProvisioningFailed", message="node n1: quota")) == \
        [(FAILED_EVENT, "a")]
    # The same reason with another message (a new node's name), or a flap through Provisioning: not news.
    assert p.run(report("a", "Failed", reason="NodeProvisioningFailed", message="node n2: quota")) == []
    assert p.run(report("a", "Provisioning")) == []
    assert p.run(report("a", "Failed", reason="NodeProvisioningFailed", message="node n3: quota")) == []
    assert p.run(report("a", "Failed", reason="ApplyFailed", message="denied")) == [(FAILED_EVENT, "a")]
    assert p.run(report("a", "Ready")) == [(DEPLOYED, "a")]
    decision = p.last(report("a", "Failed", reason="ApplyFailed", message="denied"))
    assert [(e.event, e.state, e.previous_state) for e in decision.events] == [(FAILED_EVENT, "Failed", "Ready")], \
        "leaving Ready for a failure is one failed event (its previous state says Ready), not two"


def test_invalid_and_blocked_differ_by_message() -> None:
    p = Passes(report("a", "Ready"))
    assert p.run(report("a", "Invalid", reason="InvalidRequest", message="unknown preset")) == [(FAILED_EVENT, "a")]
    assert p.run(report("a", "Invalid", reason="InvalidRequest", message="unknown preset")) == []
    assert p.run(report("a", "Invalid", reason="InvalidRequest", message="bad sku")) == [(FAILED_EVENT, "a")]
    assert p.run(report("a", "Blocked", reason="Blocked", message="replace needs approval")) == \
        [(FAILED_EVENT, "a")]


def test_leaving_ready_is_degraded_once() -> None:
    p = Passes(report("a", "Ready"), report("b", "Ready"))
    events = p.run(report("a", "Provisioning", message="node restarting"), report("b", "Suspended"))
    assert events == [(DEGRADED, "a"), (DEGRADED, "b")]
    assert p.run(report("a", "Provisioning"), report("b", "Suspended")) == []
    assert p.run(report("a", "Pending"), report("b", "Suspended")) == [], "not Ready before: nothing left"
    assert p.run(report("a", "Ready"), report("b", "Suspended")) == [(RECOVERED, "a")], "R1 announced: recovered"
    assert p.run(report("a", "Ready"), report("b", "Suspended")) == []


def test_a_failure_then_ready_again_at_the_same_revision_is_recovered_once() -> None:
    p = Passes(report("a", "Ready"))
    assert p.run(report("a", "Failed", reason="NodeNotReady", message="node n1 lost")) == [(FAILED_EVENT, "a")]
    decision = p.last(report("a", "Ready"))
    assert [(e.event, e.previous_state, e.revision) for e in decision.events] == [(RECOVERED, "Failed", R1)]
    assert event_text(decision.events[0]).startswith("✅ default/a is Ready again at")
    assert p.run(report("a", "Ready")) == []


def test_pruned_models_are_removed_and_missing_ones_remembered() -> None:
    p = Passes(report("a", "Ready"), report("b", "Ready"))
    decision = p.last(report("a", "Ready", R2), pruned=("b",), revision=R2)
    assert [(e.event, e.name, e.state, e.previous_state, e.revision) for e in decision.events] == \
        [(REMOVED, "b", None, "Ready", R2)]
    assert "default.b" not in p.tracked
    # A pass that reads no models (a broken gitops-kaito.yaml) prunes nothing: no event, and the model's
    # return is not news.
    assert p.run(revision=R2) == []
    assert p.run(report("a", "Ready", R2), revision=R2) == []


def test_new_models_are_announced_when_they_fail_or_become_ready() -> None:
    p = Passes(report("a", "Ready"))
    assert p.run(report("a", "Ready"), report("b", "Pending", R2), written=("b",)) == []
    assert p.run(report("a", "Ready"), report("c", "Invalid", reason="InvalidRequest", message="typo")) == \
        [(FAILED_EVENT, "c")]
    assert p.run(report("a", "Ready"), report("b", "Ready", R2)) == [(DEPLOYED, "b")]


@pytest.mark.parametrize("state", ["Pending", "Provisioning", "Ready", "Failed", "Blocked", "Suspended", "Invalid"])
def test_a_repeated_pass_says_nothing(state: str) -> None:
    p = Passes(report("a", "Pending"))
    changed = report("a", state, reason="R", message="M")
    p.run(changed)
    assert p.run(changed) == []


def test_event_messages_are_scrubbed() -> None:
    p = Passes(report("a", "Provisioning"))
    decision = p.last(report("a", "Failed", reason="ApplyFailed", message="token=ghp_abcdefghijklmnop1234 refused"))
    assert "ghp_" not in decision.events[0].message and "***" in decision.events[0].message


# -- payloads -------------------------------------------------------------------------------------
def event(name: str = "phi", kind: str = DEPLOYED, **kw: Any) -> Event:
    values: dict[str, Any] = dict(state="Ready", previous_state="Provisioning", revision=R1, reason="",
                                  message="the model is serving", sku="Standard_NC24ads_A100_v4", nodes=1,
                                  price_per_hour=3.67)
    values.update(kw)
    return Event(kind, f"default.{name}", "default", name, **values)


ORIGIN = Origin("prod-westeurope", "team-a", "2026-01-01T00:00:00Z")


def test_generic_body_has_the_fields_and_a_signature_the_webhook_side_verifies() -> None:
    sink = Sink("https://hooks.example.test/x/y?token=1", "generic", SECRET)
    (req,) = requests_for(sink, [event()], ORIGIN)
    doc = json.loads(req.body)
    assert doc == {"event": "deployed", "model": "default/phi", "namespace": "default", "name": "phi",
                   "state": "Ready", "previousState": "Provisioning", "revision": R1, "reason": "",
                   "message": "the model is serving", "sku": "Standard_NC24ads_A100_v4", "nodes": 1,
                   "pricePerHour": 3.67, "endpoint": None, "cluster": "prod-westeurope", "instance": "team-a",
                   "timestamp": "2026-01-01T00:00:00Z"}
    headers = dict(req.headers)
    assert webhooks.handle("generic", headers, req.body, SECRET, "main").status == 202
    assert webhooks.handle("generic", headers, req.body + b" ", SECRET, "main").status == 401
    assert "X-Signature" not in dict(requests_for(replace(sink, secret=None), [event()], ORIGIN)[0].headers)


def test_many_events_go_out_as_one_request() -> None:
    sink = Sink("https://hooks.example.test/x", "generic")
    assert len(requests_for(sink, [event(f"m{i}") for i in range(10)], ORIGIN)) == 10
    (batch,) = requests_for(sink, [event(f"m{i}") for i in range(11)], ORIGIN)
    doc = json.loads(batch.body)
    assert (doc["event"], doc["count"], len(doc["events"]), batch.events) == ("batch", 11, 11, 11)
    assert doc["events"][3]["model"] == "default/m3"


def test_slack_and_teams_payloads() -> None:
    (slack,) = requests_for(Sink("https://hooks.slack.test/services/T/B/x", "slack"), [event()], ORIGIN)
    doc = json.loads(slack.body)
    assert list(doc) == ["text"]
    assert "default/phi is Ready at main@sha1:111111111111" in doc["text"]
    assert "Standard_NC24ads_A100_v4 x 1, $3.67/h" in doc["text"] and "prod-westeurope/team-a" in doc["text"]
    (teams,) = requests_for(Sink("https://x.webhook.office.test/y", "teams"),
                            [event(kind=FAILED_EVENT, state="Failed", reason="ApplyFailed", message="denied")],
                            ORIGIN)
    doc = json.loads(teams.body)
    assert doc["@type"] == "MessageCard" and "default/phi is Failed (was Provisioning)" in doc["text"]
    assert "ApplyFailed: denied" in doc["text"]
    many = [event(f"m{i:02}") for i in range(25)]
    (text,) = requests_for(Sink("https://hooks.slack.test/s", "slack"), many, ORIGIN)
    lines = json.loads(text.body)["text"].splitlines()
    assert lines[0] == "gitops-kaito prod-westeurope/team-a: 25 deployed"
    assert lines[-1] == "… and 5 more" and len(lines) == 22


def test_slack_text_cannot_mention_a_channel() -> None:
    loud = event(kind=FAILED_EVENT, state="Failed", reason="ApplyFailed", message="<!channel> denied & <@U1>")
    (slack,) = requests_for(Sink("https://hooks.slack.test/services/T/B/x", "slack"), [loud], ORIGIN)
    text = json.loads(slack.body)["text"]
    assert "<!channel>" not in text and "&lt;!channel&gt; denied &amp; &lt;@U1&gt;" in text


def test_urls_in_logs_keep_scheme_and_host_only() -> None:
    assert redact_url("https://hooks.slack.com/services/T0/B0/secret?x=1") == "https://hooks.slack.com"
    assert redact_url("http://user:pw@127.0.0.1:8080/hook") == "http://127.0.0.1:8080"
    assert redact_url("https://hooks.example.test:abc/secret") == "https://hooks.example.test", "never raises"


def test_an_unusable_url_fails_without_its_path_in_the_reason() -> None:
    """http.client's InvalidURL quotes the path (the secret part of a webhook URL), not the whole URL."""
    answer = http_post(Request(Sink("http://127.0.0.1:9/services/SECRET PATH?token=SECRETQ"), b"{}", (), 1), 2)
    assert answer.status == 0 and answer.detail.startswith("InvalidURL")
    assert "SECRET" not in answer.detail, answer.detail


def test_retry_delay_backoff_and_retry_after() -> None:
    policy = SendRetry(backoff_s=1.0, max_backoff_s=8.0, max_retry_after_s=60.0)
    assert [retry_delay(Answer(503), n, policy, 0.0) for n in (1, 2, 3, 4, 5)] == [1, 2, 4, 8, 8]
    assert retry_delay(Answer(429, "7"), 1, policy, 0.0) == 7
    assert retry_delay(Answer(429, "86400"), 1, policy, 0.0) == 60
    now = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    assert retry_delay(Answer(503, format_datetime(datetime(2026, 1, 1, 0, 0, 12, tzinfo=UTC), usegmt=True)), 1,
                       policy, now) == 12
    assert retry_delay(Answer(503, "soon"), 2, policy, now) == 2, "an unreadable Retry-After: backoff"


# -- the sender against a loopback server ---------------------------------------------------------
@dataclass
class Hook:
    """A loopback webhook receiver: answers each POST from `script` (then 200) and records it."""

    server: ThreadingHTTPServer
    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    received: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    hang: bool = False

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"


@pytest.fixture
def hook() -> Iterator[Hook]:
    state: dict[str, Hook] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            h = state["hook"]
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            h.received.append((self.path, dict(self.headers.items()), body))
            if h.hang:
                h.release.wait(10)
                return
            status, headers = h.script.pop(0) if h.script else (200, {})
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state["hook"] = h = Hook(server)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield h
    finally:
        h.release.set()
        server.shutdown()
        server.server_close()


class Recorder:
    def __init__(self) -> None:
        self.sleeps: list[float] = []
        self.outcomes: list[tuple[str, int]] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def outcome(self, request: Request, result: str) -> None:
        self.outcomes.append((result, request.events))

    def sender(self, **kw: Any) -> Sender:
        return Sender(self.outcome, sleep=self.sleep, **kw)


def test_generic_delivery_is_signed(hook: Hook) -> None:
    rec = Recorder()
    sender = rec.sender()
    sender.submit(requests_for(Sink(hook.url + "/hooks/generic", "generic", SECRET), [event()], ORIGIN))
    assert sender.wait_idle(10)
    sender.stop()
    ((path, headers, body),) = hook.received
    assert path == "/hooks/generic" and json.loads(body)["event"] == "deployed"
    assert webhooks.handle("generic", headers, body, SECRET, "main").status == 202
    assert rec.outcomes == [("sent", 1)] and rec.sleeps == []


@pytest.mark.parametrize("fmt", ["slack", "teams"])
def test_slack_and_teams_delivery(hook: Hook, fmt: str) -> None:
    rec = Recorder()
    sender = rec.sender()
    sender.submit(requests_for(Sink(hook.url + "/services/T/B/x", fmt), [event(), event("qwen")], ORIGIN))
    assert sender.wait_idle(10)
    sender.stop()
    texts = [json.loads(body)["text"] for _, _, body in hook.received]
    assert len(texts) == 2 and "default/phi is Ready" in texts[0] and "default/qwen is Ready" in texts[1]
    assert all(h["Content-Type"].startswith("application/json") for _, h, _ in hook.received)
    assert rec.outcomes == [("sent", 1), ("sent", 1)]


def test_503_is_retried_with_backoff_then_sent(hook: Hook) -> None:
    hook.script = [(503, {}), (503, {})]
    rec = Recorder()
    sender = rec.sender(policy=SendRetry(backoff_s=1.0))
    assert sender.deliver(requests_for(Sink(hook.url + "/h", "generic"), [event()], ORIGIN)[0]) == "sent"
    assert len(hook.received) == 3 and rec.sleeps == [1.0, 2.0]


def test_retries_end_after_the_last_attempt(hook: Hook, caplog: pytest.LogCaptureFixture) -> None:
    hook.script = [(502, {})] * 5
    rec = Recorder()
    sender = rec.sender(policy=SendRetry(attempts=3, backoff_s=1.0))
    assert sender.deliver(requests_for(Sink(hook.url + "/h", "slack"), [event()], ORIGIN)[0]) == "failed"
    assert len(hook.received) == 3 and rec.sleeps == [1.0, 2.0]
    assert "after 3 attempts: HTTP 502" in caplog.text


def test_400_is_not_retried_and_the_log_shows_scheme_and_host_only(
        hook: Hook, caplog: pytest.LogCaptureFixture) -> None:
    hook.script = [(400, {})]
    rec = Recorder()
    sender = rec.sender()
    caplog.set_level(logging.WARNING)
    secret_path = "/services/T000/B000/XXXXsecretXXXX"
    assert sender.deliver(requests_for(Sink(hook.url + secret_path, "slack"), [event()], ORIGIN)[0]) == "failed"
    assert len(hook.received) == 1 and rec.sleeps == []
    assert f"notification to {hook.url} " in caplog.text and "HTTP 400" in caplog.text
    assert secret_path not in caplog.text


def test_a_redirect_is_not_followed(hook: Hook) -> None:
    hook.script = [(302, {"Location": "/elsewhere"})]
    rec = Recorder()
    assert rec.sender().deliver(requests_for(Sink(hook.url + "/h", "generic"), [event()], ORIGIN)[0]) == "failed"
    assert [path for path, _, _ in hook.received] == ["/h"] and rec.sleeps == []


def test_retry_after_is_honoured_and_capped(hook: Hook) -> None:
    hook.script = [(429, {"Retry-After": "7"}), (503, {"Retry-After": "3600"})]
    rec = Recorder()
    sender = rec.sender(policy=SendRetry(max_retry_after_s=30.0))
    assert sender.deliver(requests_for(Sink(hook.url + "/h", "generic"), [event()], ORIGIN)[0]) == "sent"
    assert rec.sleeps == [7.0, 30.0] and len(hook.received) == 3


def test_retry_after_as_a_date_uses_the_injected_clock(hook: Hook) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    hook.script = [(503, {"Retry-After": format_datetime(now.replace(second=20), usegmt=True)})]
    rec = Recorder()
    sender = rec.sender(clock=lambda: now.timestamp())
    assert sender.deliver(requests_for(Sink(hook.url + "/h", "generic"), [event()], ORIGIN)[0]) == "sent"
    assert rec.sleeps == [20.0]


def test_no_answer_times_out_and_is_retried(hook: Hook) -> None:
    hook.hang = True
    rec = Recorder()
    sender = rec.sender(policy=SendRetry(attempts=2, timeout_s=0.3))
    assert sender.deliver(requests_for(Sink(hook.url + "/h", "generic"), [event()], ORIGIN)[0]) == "failed"
    assert len(hook.received) == 2 and rec.sleeps == [1.0]


def test_nothing_listening_is_a_failure_not_an_exception() -> None:
    with socket.socket() as probe:  # a loopback port that was free a moment ago: connection refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    rec = Recorder()
    sender = rec.sender(policy=SendRetry(attempts=2))
    assert sender.deliver(requests_for(Sink(f"http://127.0.0.1:{port}/h", "generic"), [event()], ORIGIN)[0]) == \
        "failed"
    assert rec.sleeps == [1.0]


def test_a_garbled_answer_is_retried_not_raised() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(10)

        def garble() -> None:
            for _ in range(2):  # one per attempt
                conn, _ = listener.accept()
                with conn:
                    conn.recv(65536)
                    conn.sendall(b"this is not HTTP\r\n\r\n")

        thread = threading.Thread(target=garble, daemon=True)
        thread.start()
        rec = Recorder()
        sender = rec.sender(policy=SendRetry(attempts=2))
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/h"
        assert sender.deliver(requests_for(Sink(url, "generic"), [event()], ORIGIN)[0]) == "failed"
        thread.join(10)
    assert rec.sleeps == [1.0]


def test_a_crashing_post_is_counted_and_the_thread_goes_on() -> None:
    calls: list[str] = []

    def post(request: Request, timeout_s: float) -> Answer:
        calls.append(request.body.decode())
        if len(calls) == 1:
            raise RuntimeError("bug")
        return Answer(204)

    rec = Recorder()
    sender = rec.sender(post=post)
    sender.submit(requests_for(Sink("http://127.0.0.1:9/h", "generic"), [event("a"), event("b")], ORIGIN))
    assert sender.wait_idle(10)
    sender.stop()
    assert rec.outcomes == [("failed", 1), ("sent", 1)] and len(calls) == 2


def test_a_full_queue_drops_and_counts_without_blocking() -> None:
    started, release = threading.Event(), threading.Event()

    def post(request: Request, timeout_s: float) -> Answer:
        started.set()
        release.wait(10)
        return Answer(200)

    rec = Recorder()
    sender = rec.sender(queue_size=1, post=post)
    reqs = requests_for(Sink("http://127.0.0.1:9/h", "generic"), [event("a"), event("b"), event("c")], ORIGIN)
    sender.submit(reqs[:1])
    assert started.wait(10), "the sender thread did not take the first request"
    sender.submit(reqs[1:])  # one fits in the queue, one is dropped at once
    assert rec.outcomes == [("dropped", 1)]
    release.set()
    assert sender.wait_idle(10)
    sender.stop()
    assert sorted(rec.outcomes) == [("dropped", 1), ("sent", 1), ("sent", 1)]


# -- the notifier on pass results -----------------------------------------------------------------
def git_pass(reports: tuple[ModelReport, ...], *, written: tuple[str, ...] = (), drift: tuple[str, ...] = (),
             pruned: tuple[str, ...] = (), revision: str = R1, abandoned: str = "") -> GitPassResult:
    changes = tuple(Change(ObjectRef("kaito.sh/v1beta1", "Workspace", "default", n), Action.UPDATE, f"default.{n}",
                           Wave.WORKLOAD, drift=n in drift) for n in (*written, *drift))
    outcomes = tuple(ModelResult(f"default.{n}", "Pruned", "pruned") for n in pruned)
    sync = PassResult(revision=revision, plan=Plan(changes), outcomes=outcomes, errors=(), abandoned=abandoned)
    return GitPassResult(Checkout(Path("."), "1" * 40, "main", None), revision, sync, reports, None)


def test_notifier_seeds_then_sends_and_skips_abandoned_passes() -> None:
    sent: list[Request] = []

    class Capture(Sender):
        def submit(self, requests: Any) -> None:
            sent.extend(requests)

    notifier = Notifier([Sink("https://hooks.example.test/x", "generic")], Capture(lambda r, s: None),
                        cluster="c1", clock=lambda: 0.0)
    assert notifier.observe(git_pass((report("a", "Provisioning"),)), "team-a") == ()
    assert notifier.observe(git_pass((report("a", "Ready"),), abandoned="abandoned: lost leadership")) == ()
    events = notifier.observe(git_pass((report("a", "Ready"),)), "team-a")
    assert [e.event for e in events] == [DEPLOYED]
    (req,) = sent
    doc = json.loads(req.body)
    assert (doc["cluster"], doc["instance"], doc["timestamp"]) == ("c1", "team-a", "1970-01-01T00:00:00Z")
    assert notifier.observe(git_pass((report("a", "Ready"),))) == ()
    # A new commit written to "a" is announced once a pass finds it settled; a drift fix is no new revision.
    assert notifier.observe(git_pass((report("a", "Ready", R2),), written=("a",), revision=R2)) == ()
    assert [e.revision for e in notifier.observe(git_pass((report("a", "Ready", R2),), revision=R2))] == [R2]
    # Another model's commit (R3) and a drift fix on "a" in that pass: "a" still runs R2, so nothing to announce.
    assert notifier.observe(git_pass((report("a", "Ready", R3),), drift=("a",), revision=R3)) == ()
    assert notifier.observe(git_pass((report("a", "Ready", R3),), revision=R3)) == ()
    assert notifier.observe(git_pass((report("a", "Pending", R3),), revision=R3))[0].event == DEGRADED
    notifier.forget()
    assert notifier.observe(git_pass((report("a", "Ready", R3),), revision=R3)) == (), \
        "after forget() (leadership lost) the next pass seeds"
    assert len(sent) == 3


def test_a_pass_that_outlived_its_leadership_neither_announces_nor_is_remembered() -> None:
    """Leadership lost while a pass ran: forget() came first and the pass's observe() then stored its own view,
    so, leading again later, this replica announced what the other leader had announced meanwhile."""
    sent: list[Request] = []

    class Capture(Sender):
        def submit(self, requests: Any) -> None:
            sent.extend(requests)

    notifier = Notifier([Sink("https://hooks.example.test/x", "generic")], Capture(lambda r, s: None))
    assert notifier.observe(git_pass((report("a", "Provisioning"),))) == ()
    generation = notifier.generation  # the daemon's pass starts
    notifier.forget()  # the elector thread: the Lease is lost mid-pass
    assert notifier.observe(git_pass((report("a", "Ready"),)), generation=generation) == ()
    # Leading again, long after: the other leader announced "a" Ready at R2. This replica's first pass only seeds.
    assert notifier.observe(git_pass((report("a", "Ready", R2),), revision=R2),
                            generation=notifier.generation) == ()
    assert sent == []


def test_a_retry_after_that_is_not_a_number_of_seconds_falls_back_to_backoff() -> None:
    """float() takes "nan": the delay was nan, and a wait of nan returns at once (retries with no backoff)."""
    policy = SendRetry(backoff_s=1.0, max_backoff_s=8.0, max_retry_after_s=60.0)
    assert [retry_delay(Answer(503, given), 2, policy, 0.0) for given in ("nan", "NaN", "-nan")] == [2.0] * 3
    assert retry_delay(Answer(503, "inf"), 2, policy, 0.0) == 60.0
