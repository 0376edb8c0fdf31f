"""`gitops-kaito run` against the sandbox and a bare Git remote: webhooks, metrics, leader election, SIGTERM.

The interval is an hour, so anything that happens within a test was caused by a webhook or a leadership change.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.error import HTTPError

import pytest
from kubernetes import client

from gitops_kaito.service import webhooks
from gitops_kaito.service.leader import LeaseSettings
from gitops_kaito.service.service import Service
from gitops_kaito.service.settings import RunSettings, resolve_settings
from tests.fixtures_cluster import ClusterTarget, skip_on_real, wait_until
from tests.gitfixtures import Developer, Remote, make_remote, model_file

pytestmark = pytest.mark.cluster

SECRET = b"a-webhook-secret-of-32-bytes-xx!"


@dataclass
class World:
    cluster: ClusterTarget
    remote: Remote
    dev: Developer
    tmp: Path
    secret_file: Path
    admin: client.ApiClient

    @property
    def ns(self) -> str:
        return self.cluster.namespace

    def settings(self, cache: str, **overrides: Any) -> RunSettings:
        values: dict[str, Any] = dict(
            git_url=self.remote.url, branch="main", interval="3600s", listen="127.0.0.1:0",
            webhook_secret_file=str(self.secret_file), kubeconfig=str(self.cluster.kubeconfig),
            context=self.cluster.context or "", cache_dir=str(self.tmp / cache), lease_namespace=self.ns,
            lease_name="gitops-kaito-leader")
        values.update(overrides)
        return RunSettings(**values)

    def workspace(self, name: str) -> dict[str, Any] | None:
        try:
            obj: Any = client.CustomObjectsApi(self.admin).get_namespaced_custom_object(
                "kaito.sh", "v1beta1", self.ns, "workspaces", name)
            return dict(obj)
        except client.ApiException as err:
            if err.status == 404:
                return None
            raise


@pytest.fixture
def world(cluster: ClusterTarget, tmp_path: Path) -> Iterator[World]:
    skip_on_real(cluster, "a throwaway Lease and simulated KAITO")
    remote = make_remote(tmp_path)
    dev = Developer(remote, tmp_path / "dev")
    dev.write(f"models/{cluster.namespace}/phi.yaml", model_file("phi", namespace=cluster.namespace))
    dev.commit("phi")
    secret_file = tmp_path / "webhook-secret"
    secret_file.write_bytes(SECRET + b"\n")
    admin = cluster.api_client()
    yield World(cluster, remote, dev, tmp_path, secret_file, admin)
    admin.close()


def post_hook(url: str, body: bytes, signature: str, event: str = "push") -> int:
    req = urllib.request.Request(f"{url}/hooks/github", data=body, method="POST", headers={
        "X-GitHub-Event": event, "X-Hub-Signature-256": signature, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except HTTPError as err:
        return int(err.code)


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return int(resp.status), resp.read().decode()
    except HTTPError as err:
        return int(err.code), err.read().decode()


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        m = re.match(r"^([a-zA-Z_:]+)(\{(.*)\})? ([0-9.e+-]+)$", line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            return float(m.group(4))
    return 0.0


def push_body(sha: str) -> bytes:
    return json.dumps({"ref": "refs/heads/main", "after": sha}).encode()


def test_signed_push_applies_at_once_bad_signature_refused_metrics_move(world: World) -> None:
    with Service.build(world.settings("cache")) as svc:
        assert svc.daemon.wait_for_passes(1, 30), "the first pass (after winning the Lease) did not run"
        assert world.workspace("phi") is not None
        assert get(f"{svc.url}/readyz")[0] == 200
        before = get(f"{svc.url}/metrics")[1]
        assert metric(before, "gitops_kaito_objects_total", action="created", kind="Workspace") == 1
        assert metric(before, "gitops_kaito_leader") == 1

        world.dev.pull()  # the daemon pushed a status commit
        world.dev.write(f"models/{world.ns}/qwen.yaml", model_file("qwen", "qwen2.5-coder-7b-instruct", world.ns))
        sha = world.dev.commit("qwen")
        body = push_body(sha)
        assert post_hook(svc.url, body, webhooks.sign(b"wrong-secret-wrong-secret", body)) == 401
        assert post_hook(svc.url, body, "") == 401
        passes = svc.daemon.passes_done
        assert post_hook(svc.url, body, webhooks.sign(SECRET, body)) == 202
        wait_until(lambda: world.workspace("qwen"), 30, what="qwen applied after the webhook")
        assert svc.daemon.wait_for_passes(passes + 1, 10)
        # The pass that applied qwen records its metrics when it ends (after its status commit): wait for that.
        wait_until(lambda: metric(get(f"{svc.url}/metrics")[1], "gitops_kaito_applied_revision_info",
                                  revision=f"main@sha1:{sha}") == 1, 30, what="the webhook pass's metrics")

        after = get(f"{svc.url}/metrics")[1]
        assert metric(after, "gitops_kaito_webhooks_total", source="github", status="401") == 2
        assert metric(after, "gitops_kaito_webhooks_total", source="github", status="202") == 1
        assert metric(after, "gitops_kaito_objects_total", action="created", kind="Workspace") == 2
        assert metric(after, "gitops_kaito_passes_total", result="success") >= 2
        assert metric(after, "gitops_kaito_applied_revision_info", revision=f"main@sha1:{sha}") == 1
        assert metric(after, "gitops_kaito_status_commits_total") >= 1
        assert sum(metric(after, "gitops_kaito_models", state=s) for s in ("Pending", "Provisioning", "Ready")) == 2
        assert metric(after, "gitops_kaito_last_success_timestamp_seconds") > 0
        # phi (A100 x 1) and qwen (A10 x 1) at catalog prices: the metric moves with the models.
        assert metric(after, "gitops_kaito_gpu_nodes") == 2
        assert metric(after, "gitops_kaito_gpu_cost_usd_per_hour") > metric(before, "gitops_kaito_gpu_cost_usd_per_hour") > 0
    # Status was committed to the remote by the daemon.
    assert any("status" in line.lower() for line in world.remote.log()[:3])


def test_two_daemons_with_one_lease_never_both_act(world: World) -> None:
    lease = dict(lease_duration_s=15, renew_deadline_s=10, retry_period_s=0.2)
    a = Service.build(world.settings("cache-a"), lease=LeaseSettings(name="one-lease", namespace=world.ns,
                                                                  identity="replica-a", **lease))
    b = Service.build(world.settings("cache-b"), lease=LeaseSettings(name="one-lease", namespace=world.ns,
                                                                  identity="replica-b", **lease))
    a.start()
    try:
        assert a.daemon.wait_for_passes(1, 30)
        b.start()
        body = push_body(world.remote.sha())
        for svc in (a, b):
            assert post_hook(svc.url, body, webhooks.sign(SECRET, body)) == 202
        assert a.daemon.wait_for_passes(2, 30)
        for _ in range(20):  # sample while both run their election loops
            assert a.elector is not None and b.elector is not None
            assert not (a.elector.is_leader and b.elector.is_leader)
        assert b.daemon.passes_done == 0, "the follower ran a pass"
        assert metric(get(f"{b.url}/metrics")[1], "gitops_kaito_leader") == 0
        # The leader stops and releases the Lease: the follower takes over without waiting for expiry and acts.
        a.stop()
        assert b.daemon.wait_for_passes(1, 15), "the follower did not take over after the leader released"
        assert b.elector is not None and b.elector.is_leader
    finally:
        a.stop()
        b.stop()


def test_cli_run_stops_on_sigterm_and_releases_the_lease(world: World) -> None:
    env = {**os.environ, "GITOPS_KAITO_INTERVAL": "3600s", "GITOPS_KAITO_LEASE_NAMESPACE": world.ns,
           "GITOPS_KAITO_CACHE_DIR": str(world.tmp / "cache-cli")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gitops_kaito", "run", "--git-url", world.remote.url, "--listen", "127.0.0.1:0",
         "--kubeconfig", str(world.cluster.kubeconfig), "--webhook-secret-file", str(world.secret_file)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = re.search(r"listening on (http://\S+)", line)
        assert url, line + (proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
        wait_until(lambda: get(f"{url.group(1)}/readyz")[0] == 200, 30, interval=0.1, what="/readyz 200")
        assert world.workspace("phi") is not None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lease: Any = client.CoordinationV1Api(world.admin).read_namespaced_lease("gitops-kaito-leader", world.ns)
    assert not lease.spec.holder_identity, "the Lease was not released on SIGTERM"


def test_missing_git_url_and_bad_settings_are_usage_errors(capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from gitops_kaito.cli import main

    monkeypatch.delenv("GITOPS_KAITO_GIT_URL", raising=False)
    assert main(["run"]) == 2
    assert "--git-url" in capsys.readouterr().err
    assert main(["run", "--git-url", "file:///x", "--interval", "soon"]) == 2
    assert "not a duration" in capsys.readouterr().err


def test_repository_daemon_settings_apply_under_flags_and_follow_changes(
        world: World, caplog: pytest.LogCaptureFixture) -> None:
    """gitops-kaito.yaml's daemon: sets what flags and environment leave open, read before the listener binds and
    again after every pass: a merged interval change drives passes without a restart or a webhook."""
    world.dev.write("gitops-kaito.yaml", "apiVersion: gitops.kaito.sh/v1alpha1\nkind: Config\ndaemon:\n"
                    "  interval: 1h\n  listen: 127.0.0.1:0\n  leaseName: from-the-repo\n  logFormat: json\n")
    world.dev.commit("daemon settings in the repository")
    flags = dict(git_url=world.remote.url, kubeconfig=str(world.cluster.kubeconfig),
                 context=world.cluster.context or None, cache_dir=str(world.tmp / "cache"),
                 webhook_secret_file=str(world.secret_file), lease_namespace=world.ns, log_format="text")
    settings = resolve_settings(flags, {})  # no GITOPS_KAITO_* from the test's own environment
    assert settings.listen == "127.0.0.1:8080" and settings.interval == "60s"
    with Service.build(settings) as svc:
        assert svc.settings.listen == "127.0.0.1:0" and svc.daemon.settings.interval_s == 3600
        assert svc.settings.log_format == "text", "the flag wins over the repository"
        assert svc.daemon.wait_for_passes(1, 30)
        lease: Any = client.CoordinationV1Api(world.admin).read_namespaced_lease("from-the-repo", world.ns)
        assert lease.spec.holder_identity, "the Lease named by the repository is not held"

        world.dev.pull()
        world.dev.write("gitops-kaito.yaml", "apiVersion: gitops.kaito.sh/v1alpha1\nkind: Config\ndaemon:\n"
                        "  interval: 1s\n  jitter: 0s\n  listen: 127.0.0.1:0\n  leaseName: renamed\n")
        sha = world.dev.commit("pass every second")
        body = push_body(sha)
        assert post_hook(svc.url, body, webhooks.sign(SECRET, body)) == 202
        wait_until(lambda: svc.daemon.settings.interval_s == 1, 30, what="the new interval read after a pass")
        done = svc.daemon.passes_done
        # No more webhooks: only the new 1s interval can run these passes (the old one was an hour).
        assert svc.daemon.wait_for_passes(done + 2, 20), "passes did not follow the repository's new interval"
    assert any("lease_name to renamed" in r.getMessage() and "next restart" in r.getMessage()
               for r in caplog.records), "the change that needs a restart was not reported"


def test_start_up_reads_the_cached_clone_when_the_remote_is_down(world: World,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    world.dev.write("gitops-kaito.yaml", "apiVersion: gitops.kaito.sh/v1alpha1\nkind: Config\ndaemon:\n"
                    "  interval: 2h\n  listen: 127.0.0.1:0\n  leaseName: cached-lease\n")
    world.dev.commit("daemon settings")
    flags = dict(git_url=world.remote.url, kubeconfig=str(world.cluster.kubeconfig),
                 context=world.cluster.context or None, cache_dir=str(world.tmp / "cache"), lease_namespace=world.ns)
    first = Service.build(resolve_settings(flags, {}))  # built, not started: the start-up read cloned into the cache
    try:
        assert (first.settings.lease_name, first.daemon.settings.interval_s) == ("cached-lease", 7200)
    finally:
        first.stop()
    world.remote.bare.rename(world.tmp / "moved-away.git")
    second = Service.build(resolve_settings(flags, {}))
    try:
        assert (second.settings.lease_name, second.daemon.settings.interval_s) == ("cached-lease", 7200)
        assert second.settings.listen == "127.0.0.1:0"
    finally:
        second.stop()
    assert any("reading the cached clone" in r.getMessage() for r in caplog.records)


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    """A loopback webhook receiver: (its URL, what it received)."""
    received: list[tuple[dict[str, str], bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.append((dict(self.headers.items()), body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks/generic", received
    finally:
        server.shutdown()
        server.server_close()


def test_a_model_becoming_ready_is_announced_once(
        world: World, receiver: tuple[str, list[tuple[dict[str, str], bytes]]]) -> None:
    url, received = receiver
    notify_secret = world.tmp / "notify-secret"
    notify_secret.write_bytes(SECRET + b"\n")
    settings = world.settings("cache", notify_url=url, notify_secret_file=str(notify_secret),
                              notify_cluster="sandbox")
    phi_sha = world.remote.sha()  # before the daemon's status commits
    with Service.build(settings) as svc:
        assert svc.notifier is not None
        sender = svc.notifier.sender
        assert svc.daemon.wait_for_passes(1, 30)
        assert sender.wait_idle(10) and received == [], "the first pass (phi created) only seeds"

        def announced() -> bool:
            # One pass at a time (the interval is an hour): each asks simulated KAITO how far phi got.
            done = svc.daemon.passes_done
            svc.daemon.trigger("test: is phi Ready yet")
            assert svc.daemon.wait_for_passes(done + 1, 30)
            assert sender.wait_idle(10)
            return bool(received)

        wait_until(announced, 90, interval=0, what="the deployed notification")
        ((headers, body),) = received
        assert webhooks.handle("generic", headers, body, SECRET, "main").status == 202, "signed as /hooks/generic"
        doc = json.loads(body)
        assert (doc["event"], doc["model"], doc["state"], doc["cluster"], doc["instance"]) == \
            ("deployed", f"{world.ns}/phi", "Ready", "sandbox", "default")
        assert doc["revision"] == f"main@sha1:{phi_sha}", "the commit that changed phi, not a status commit"
        assert doc["sku"] and doc["nodes"] == 1 and doc["pricePerHour"] > 0

        done = svc.daemon.passes_done
        svc.daemon.trigger("test: nothing changed")
        assert svc.daemon.wait_for_passes(done + 1, 30)
        assert sender.wait_idle(10)
        assert len(received) == 1, "a pass with nothing changed sent a notification"
        metrics = get(f"{svc.url}/metrics")[1]
        assert metric(metrics, "gitops_kaito_notifications_total", sink="generic", result="sent") == 1


def test_drift_left_in_place_is_on_the_metrics_and_stays(world: World) -> None:
    world.dev.write("gitops-kaito.yaml", "apiVersion: gitops.kaito.sh/v1alpha1\nkind: Config\ndrift: report\n")
    world.dev.write(f"models/{world.ns}/phi.yaml",
                    model_file("phi", namespace=world.ns) + "  config: {max-model-len: 4096}\n")
    world.dev.commit("phi with its own max-model-len; hand edits are reported, not reverted")
    core = client.CoreV1Api(world.admin)
    with Service.build(world.settings("cache")) as svc:
        assert svc.daemon.wait_for_passes(1, 30)
        hand_edit = "vllm:\n  max-model-len: 2048\n"
        core.patch_namespaced_config_map("phi-inference-config", world.ns, {"data": {"inference_config.yaml": hand_edit}},
                                         field_manager="kubectl-edit")
        svc.daemon.trigger("test: after the hand edit")
        wait_until(lambda: metric(get(f"{svc.url}/metrics")[1], "gitops_kaito_drift_detected", kind="ConfigMap") == 1,
                   30, what="the drift gauge")
        assert metric(get(f"{svc.url}/metrics")[1], "gitops_kaito_drift_corrected_total", kind="ConfigMap") == 0
    assert core.read_namespaced_config_map("phi-inference-config", world.ns).data["inference_config.yaml"] == hand_edit
