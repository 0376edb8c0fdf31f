"""The daemon's watch-fed cache against the emulator: no-op passes that ask nothing, changes by others reported and
own writes not, recovery from a dropped stream, a 410, an API server restart and missed events, stale deletes refused.

Every recovery test ends with the cache equal to a fresh LIST and a request log without a wrong write or delete.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gitops_kaito.adapters.events import flush
from gitops_kaito.adapters.watchcache import CHANGED, DELETED, CacheChange, WatchCache, WatchSettings, compact
from gitops_kaito.core.plan import make_plan
from gitops_kaito.model.ownership import ANNOTATION_PRUNE, OWNER_SELECTOR
from gitops_kaito.reconcile.desiredcache import DesiredCache
from gitops_kaito.reconcile.sync import PassMemo, load_desired, plan_policy, run_pass
from tests.faultkit import UA, WRITES, KubeWorld, wait_until

REV1 = "main@sha1:" + "1" * 40
FAST = WatchSettings(backoff_initial_s=0.02, backoff_max_s=0.2, sync_timeout_s=10.0)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[KubeWorld]:
    with KubeWorld(tmp_path) as w:
        yield w


class Loop:
    """What `run` keeps across passes: the watch cache, the desired-state cache and the last settled pass."""

    def __init__(self, w: KubeWorld, settings: WatchSettings = FAST) -> None:
        self.w = w
        self.changes: list[CacheChange] = []
        self.cache = WatchCache(w.kube, settings, on_change=self.changes.append)
        self.desired = DesiredCache()
        self.memo = PassMemo()
        self.reader = w.kube.clone()  # LISTs to compare with, on a connection of its own

    def sync(self, inputs: str = "commit-1") -> Any:
        """One pass; `inputs` stands for the commit's trees (what the daemon keys its desired state by)."""
        result = run_pass(self.w.repo, self.w.kube, revision=REV1, load=self.desired.loader(inputs),
                          live=self.cache, memo=self.memo)
        assert flush(self.w.kube, 30)  # its Events, posted by the connection's sender threads after it returned
        return result

    def close(self) -> None:
        self.cache.close()
        self.reader.close()

    def matches_server(self) -> bool:
        """The cache holds exactly what a LIST returns now (names and resourceVersions)."""
        specs = self.cache.specs
        cached = self.cache.objects(specs, wait_s=0)
        if cached is None:
            return False
        fresh = [o for s in specs for o in self.reader.list_owned(s.api_version, s.kind, s.label_selector)]
        return {_key(o): _rv(o) for o in cached} == {_key(o): _rv(o) for o in fresh}


def _key(obj: dict[str, Any]) -> tuple[str, str, str]:
    meta = obj["metadata"]
    return (obj["kind"], meta.get("namespace") or "", meta["name"])


def _rv(obj: dict[str, Any]) -> str:
    return str(obj["metadata"]["resourceVersion"])


def ours(w: KubeWorld) -> list[Any]:
    return [e for e in w.server.request_log.select(user_agent_prefix=UA) if e.verb != "watch"]


def writes(w: KubeWorld) -> list[tuple[str, str]]:
    """Our writes of managed objects (Kubernetes Events about them left out), as (verb, name)."""
    return [(e.verb, e.path.rsplit("/", 1)[-1]) for e in ours(w) if e.verb in WRITES and "/events" not in e.path]


SOURCE = "gitops.kaito.sh/source-path"


def hand_edit(w: KubeWorld, name: str) -> None:
    """What `kubectl annotate` does to a field we manage: drift by another field manager."""
    w.custom().patch_namespaced_custom_object(
        "kaito.sh", "v1beta1", "ml", "workspaces", name, {"metadata": {"annotations": {SOURCE: "hand/made.yaml"}}},
        field_manager="kubectl-annotate", _content_type="application/merge-patch+json")


def hand_edited(w: KubeWorld, name: str) -> bool:
    return bool((((w.workspace(name) or {}).get("metadata") or {}).get("annotations") or {}).get(SOURCE)
                == "hand/made.yaml")


@pytest.fixture
def loop(world: KubeWorld) -> Iterator[Loop]:
    world.models(("a", "b"))
    lp = Loop(world)
    try:
        first = lp.sync()
        assert first.created == 2 and first.ok, first.outcomes
        yield lp
    finally:
        lp.close()


def test_a_settled_pass_reads_the_cache_and_makes_no_request(loop: Loop) -> None:
    w = loop.w
    w.server.request_log.clear()
    second = loop.sync()  # planned from the cache (our writes went into it from the server's answers)
    assert not second.plan.has_changes
    third = loop.sync()  # nothing changed since: the last pass as it was
    assert loop.memo.hits == 1 and not third.plan.has_changes
    assert ours(w) == []
    assert loop.changes == [], "our own writes are not changes to react to"


def test_a_change_by_someone_else_is_reported_and_the_correction_is_not(loop: Loop) -> None:
    w = loop.w
    hand_edit(w, "a")
    change = wait_until(lambda: next((c for c in loop.changes if c.name == "a"), None), timeout=10,
                        what="the hand edit reported")
    assert (change.kind, change.model_id, change.cause, change.relist) == ("Workspace", "ml.a", CHANGED, False)
    w.server.request_log.clear()
    fixed = loop.sync()
    assert fixed.drift_corrected == 1 and not hand_edited(w, "a")
    assert writes(w) == [("patch", "a")]
    # Another edit after the correction: the stream delivers in order, so once it is reported the correction's
    # own event has been seen too, and it reported nothing.
    hand_edit(w, "b")
    wait_until(lambda: any(c.name == "b" for c in loop.changes), timeout=10, what="the second edit reported")
    assert [(c.name, c.cause) for c in loop.changes] == [("a", CHANGED), ("b", CHANGED)]


def test_a_dropped_stream_relists_and_finds_what_changed_meanwhile(loop: Loop) -> None:
    w = loop.w
    w.proxy.cut()
    wait_until(lambda: not loop.cache.synced(), timeout=10, what="the cache to notice the dropped streams")
    hand_edit(w, "a")
    w.custom().delete_namespaced_custom_object("kaito.sh", "v1beta1", "ml", "workspaces", "b")
    w.proxy.restore()
    wait_until(lambda: loop.cache.synced() and {c.name for c in loop.changes} >= {"a", "b"}, timeout=15,
               what="the re-list after the outage")
    assert {(c.name, c.cause, c.relist) for c in loop.changes} == {("a", CHANGED, True), ("b", DELETED, True)}
    wait_until(loop.matches_server, timeout=10, what="the cache to equal a fresh LIST")
    w.server.request_log.clear()
    fixed = loop.sync()
    assert fixed.ok and sorted(writes(w)) == [("patch", "a"), ("patch", "b")]  # b created again, a corrected


def test_a_410_on_resume_relists(world: KubeWorld) -> None:
    world.models(("a",))
    # Short streams and no bookmarks reaching the client: each resume asks for the LIST's old resourceVersion.
    lp = Loop(world, WatchSettings(watch_timeout_s=1, backoff_initial_s=0.02, sync_timeout_s=10.0))
    try:
        assert lp.sync().created == 1
        lists = lp.cache.relists
        world.server.lose_watch_events(lambda etype, obj: True)
        hand_edit(world, "a")  # never delivered as an event
        world.server.api.store.compact()  # and gone from the history: the resume gets 410 Gone
        wait_until(lambda: any(c.name == "a" for c in lp.changes), timeout=15, what="the re-list after the 410")
        world.server.lose_watch_events(None)
        assert lp.cache.relists > lists
        assert [(c.name, c.cause, c.relist) for c in lp.changes] == [("a", CHANGED, True)]
        wait_until(lp.matches_server, timeout=10, what="the cache to equal a fresh LIST")
        assert writes(world) == [("patch", "a")]  # the first sync's create; nothing since
    finally:
        lp.close()


def test_an_api_server_restart_is_recovered_without_a_wrong_write(loop: Loop) -> None:
    w = loop.w
    w.server.request_log.clear()
    w.server.restart(compact=True)
    hand_edit(w, "b")
    wait_until(lambda: loop.cache.synced() and any(c.name == "b" for c in loop.changes), timeout=15,
               what="the edit made after the restart")
    wait_until(loop.matches_server, timeout=10, what="the cache to equal a fresh LIST")
    fixed = loop.sync()
    assert fixed.ok and fixed.drift_corrected == 1 and not hand_edited(w, "b")
    assert writes(w) == [("patch", "b")]


def test_missed_events_are_found_by_the_periodic_relist(world: KubeWorld) -> None:
    world.models(("a", "b"))
    lp = Loop(world, WatchSettings(resync_s=1.0, backoff_initial_s=0.02, sync_timeout_s=10.0))
    try:
        assert lp.sync().created == 2
        world.server.lose_watch_events(lambda etype, obj: obj.get("metadata", {}).get("name") == "a")
        hand_edit(world, "a")
        change = wait_until(lambda: next((c for c in lp.changes if c.name == "a"), None), timeout=15,
                            what="the periodic re-list to find the lost edit")
        assert change.relist and change.cause == CHANGED
        world.server.lose_watch_events(None)
        world.server.request_log.clear()
        assert lp.sync().drift_corrected == 1
        assert writes(world) == [("patch", "a")]
    finally:
        lp.close()


def test_a_delete_planned_on_a_stale_view_is_refused_and_planned_again(world: KubeWorld) -> None:
    """The cache misses that someone opted the Workspace out of pruning; the pass plans its delete on that stale
    view, the API server refuses it on its preconditions, and the pass reads again and keeps the object."""
    world.models(("a", "b", "c"))
    lp = Loop(world)
    try:
        assert lp.sync().created == 3
        world.server.lose_watch_events(lambda etype, obj: True)
        world.custom().patch_namespaced_custom_object(
            "kaito.sh", "v1beta1", "ml", "workspaces", "c", {"metadata": {"annotations": {ANNOTATION_PRUNE: "disabled"}}},
            field_manager="kubectl-annotate", _content_type="application/merge-patch+json")
        (world.repo / "models" / "ml" / "c.yaml").unlink()
        world.server.request_log.clear()
        result = lp.sync("commit-2")
        assert world.workspace("c") is not None, "deleted on a stale view"
        deletes = [e for e in ours(world) if e.verb == "delete"]
        assert len(deletes) == 1 and deletes[0].status == 409  # refused on its preconditions, not repeated
        outcome = result.outcome("ml.c")
        assert outcome is not None and outcome.state != "Failed"
        assert result.pruned == 0 and result.failed == 0
        assert any("not pruned" in c.reason for c in result.plan.for_model("ml.c"))
    finally:
        world.server.lose_watch_events(None)
        lp.close()


def test_compact_projection_plans_like_the_full_object(world: KubeWorld) -> None:
    world.models(("a", "b"))
    assert run_pass(world.repo, world.kube, revision=REV1).created == 2
    hand_edit(world, "a")
    # The objects as the server sends them (list_owned's are compact already).
    full = world.kube.dynamic.get(world.kube.resource("kaito.sh/v1beta1", "Workspace"),
                                  label_selector=OWNER_SELECTOR).to_dict()["items"]
    assert full and all("time" in e for o in full for e in o["metadata"]["managedFields"])
    small = [compact(o) for o in full]
    assert not any("time" in e for o in small for e in o["metadata"]["managedFields"])
    desired = load_desired(world.repo, REV1)
    policy = plan_policy(desired)
    configmaps = world.kube.list_owned("v1", "ConfigMap")
    want = make_plan(desired.objects, [*full, *configmaps], policy)
    got = make_plan(desired.objects, [*small, *configmaps], policy)
    assert [(str(c.ref), c.action, c.drift, c.patch, c.drift_by) for c in got.changes] == \
        [(str(c.ref), c.action, c.drift, c.patch, c.drift_by) for c in want.changes]
    assert got.counts()["drift"] == 1
