"""The watch's Prometheus metrics, read as /metrics serves them: events by kind and type, re-lists by reason (start,
expired, dropped, periodic, requested), whether each kind is in sync, and how many objects the cache holds.
"""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from gitops_kaito.adapters.watchcache import WatchCache, WatchSettings
from gitops_kaito.reconcile.sync import run_pass
from gitops_kaito.sandbox import Sandbox, SandboxSettings
from gitops_kaito.service.metrics import Metrics
from gitops_kaito.service.service import Service
from gitops_kaito.service.settings import RunSettings
from tests.faultkit import KubeWorld
from tests.fixtures_cluster import wait_until
from tests.gitfixtures import Developer, make_remote, model_file

REV = "main@sha1:" + "1" * 40
MODELS = ("a", "b", "c")


def scrape(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
        return str(resp.read().decode())


def sample(text: str, name: str, **labels: str) -> float | None:
    """One sample of Prometheus' text format; None when absent."""
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:]+)(?:\{(.*)\})? (\S+)$", line)
        if m and m.group(1) == name and dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or "")) == labels:
            return float(m.group(3))
    return None


def kaito_status(admin: client.ApiClient, name: str) -> None:
    """Play KAITO: a status write on a Workspace (a MODIFIED event that is not ours)."""
    conds = [{"type": "ResourceReady", "status": "False", "reason": "Provisioning", "message": "nodes coming",
              "lastTransitionTime": "2025-01-01T00:00:00Z"}]
    client.CustomObjectsApi(admin).patch_namespaced_custom_object_status(
        "kaito.sh", "v1beta1", "ml", "workspaces", name, {"status": {"conditions": conds}})


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[Service, client.ApiClient]]:
    sb = Sandbox(SandboxSettings(controllers=False, namespaces=("ml",))).start()
    admin = sb.api_client("watch-metrics-admin/1")
    remote = make_remote(tmp_path)
    dev = Developer(remote, tmp_path / "dev")
    for name in MODELS:
        dev.write(f"models/ml/{name}.yaml", model_file(name))
    dev.write("models/ml/cfg.yaml", model_file("cfg") + "  config: {max-model-len: 4096}\n")
    dev.commit("models")
    settings = RunSettings(git_url=remote.url, interval="1h", listen="127.0.0.1:0", leader_election=False,
                           kubeconfig=str(sb.kubeconfig_path), cache_dir=str(tmp_path / "cache"))
    try:
        with Service.build(settings) as svc:
            yield svc, admin
    finally:
        admin.close()
        sb.stop()


def test_the_daemon_serves_the_watchs_metrics(daemon: tuple[Service, client.ApiClient]) -> None:
    svc, admin = daemon
    url = svc.url
    first = wait_until(lambda: (t := scrape(url)) and sample(t, "gitops_kaito_passes_total", result="success") and t,
                       30, what="the first pass's metrics")
    watched = ("ConfigMap", "NodeClaim", "Workspace")
    for kind in watched:
        assert sample(first, "gitops_kaito_watch_relists_total", kind=kind, reason="start") == 1.0, kind
        assert sample(first, "gitops_kaito_watch_synced", kind=kind) == 1.0, kind
    assert sample(first, "gitops_kaito_cache_objects", kind="Workspace") == 4.0  # the first pass's own writes
    assert sample(first, "gitops_kaito_cache_objects", kind="ConfigMap") == 1.0
    assert sample(first, "gitops_kaito_cache_objects", kind="NodeClaim") == 0.0

    before = sample(first, "gitops_kaito_watch_events_total", kind="Workspace", type="MODIFIED") or 0.0
    kaito_status(admin, "a")
    wait_until(lambda: (sample(scrape(url), "gitops_kaito_watch_events_total", kind="Workspace", type="MODIFIED")
                        or 0.0) > before, 15, what="KAITO's status write counted as a MODIFIED event")

    assert svc.git.watch is not None
    svc.git.watch.resync(["Workspace"])  # what a pass does when a delete was refused as stale
    text = wait_until(lambda: (t := scrape(url)) and sample(t, "gitops_kaito_watch_relists_total", kind="Workspace",
                                                            reason="requested") == 1.0 and t,
                      15, what="the requested re-list counted")
    assert sample(text, "gitops_kaito_watch_relists_total", kind="ConfigMap", reason="requested") is None

    assert sample(text, "gitops_kaito_watch_synced", kind="Workspace") == 1.0
    assert sample(text, "gitops_kaito_cache_objects", kind="Workspace") == 4.0


@pytest.fixture
def world(tmp_path: Path) -> Iterator[KubeWorld]:
    w = KubeWorld(tmp_path)
    try:
        yield w
    finally:
        w.close()


def test_periodic_410_and_dropped_relists_are_told_apart(world: KubeWorld) -> None:
    """The cache's counters feed the same registry /metrics renders: a periodic re-list (the safety net), one after
    410 Gone and one after the API server went away carry their own reasons; out of sync while it is away."""
    metrics = Metrics()
    world.models(("a",))
    assert run_pass(world.repo, world.kube, revision=REV).created == 1

    def relists(reason: str) -> float | None:
        return sample(metrics.render().decode(), "gitops_kaito_watch_relists_total", kind="Workspace", reason=reason)

    periodic = WatchCache(world.kube, WatchSettings(resync_s=0.5, watch_timeout_s=1, sync_timeout_s=10.0),
                          counters=metrics)
    metrics.watch_state = periodic.state_by_kind
    try:
        assert periodic.objects(world.kube.managed_lists("kaito.sh/v1beta1", "default")) is not None
        assert relists("start") == 1.0
        wait_until(lambda: relists("periodic"), 15, what="a periodic re-list")
    finally:
        periodic.close()
    # Short streams and no bookmarks reaching the client: each resume asks for the LIST's old resourceVersion.
    cache = WatchCache(world.kube, WatchSettings(watch_timeout_s=1, backoff_initial_s=0.02, sync_timeout_s=10.0),
                       counters=metrics)
    metrics.watch_state = cache.state_by_kind
    try:
        assert cache.objects(world.kube.managed_lists("kaito.sh/v1beta1", "default")) is not None
        assert relists("start") == 2.0 and relists("expired") is None
        kinds = sorted(cache.state_by_kind())
        assert "Workspace" in kinds and "ConfigMap" in kinds

        def synced() -> list[float | None]:
            text = metrics.render().decode()
            return [sample(text, "gitops_kaito_watch_synced", kind=k) for k in kinds]

        world.proxy.cut()  # every stream is reset, new connections refused
        wait_until(lambda: synced() == [0.0] * len(kinds), 15, what="every kind out of sync")
        world.proxy.restore()
        wait_until(lambda: synced() == [1.0] * len(kinds), 15, what="every kind in sync again")
        text = metrics.render().decode()
        assert all((sample(text, "gitops_kaito_watch_relists_total", kind=k, reason="dropped") or 0) >= 1
                   for k in kinds), text
        world.server.lose_watch_events(lambda etype, obj: True)
        world.custom().patch_namespaced_custom_object(
            "kaito.sh", "v1beta1", "ml", "workspaces", "a", {"metadata": {"annotations": {"x": "y"}}},
            _content_type="application/merge-patch+json")
        world.server.api.store.compact()  # the edit is gone from the history: the resume gets 410 Gone
        wait_until(lambda: relists("expired"), 15, what="the re-list after 410 Gone")
        world.server.lose_watch_events(None)
        wait_until(lambda: sample(metrics.render().decode(), "gitops_kaito_watch_synced", kind="Workspace") == 1.0,
                   15, what="in sync again")
        assert sample(metrics.render().decode(), "gitops_kaito_cache_objects", kind="Workspace") == 1.0
    finally:
        cache.close()
