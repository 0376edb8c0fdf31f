"""One benchmark size in its own process: load/render/plan, a first sync and a no-op pass against the emulator.

Runs in a spawned child so its peak RSS belongs to this size alone (the daemon's figures in a second child:
measure_daemon); the parent hosts the emulator and counts requests.
"""

from __future__ import annotations

import resource
import threading
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import yaml

REV1 = "main@sha1:" + "1" * 40
REV2 = "main@sha1:" + "2" * 40  # a new commit that changes nothing for the models


def _status_kib(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return float(line.split()[1])
    except OSError:
        pass
    return None


def rss_mb() -> float:
    """Peak RSS of this process so far. VmHWM, because Linux carries ru_maxrss over from the parent across exec."""
    kib = _status_kib("VmHWM")
    return (kib if kib is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


def rss_now_mb() -> float:
    kib = _status_kib("VmRSS")
    return round(kib / 1024, 1) if kib is not None else 0.0


class Parent:
    """Asks the parent (which owns the emulator's request log) to clear or count requests."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def ask(self, what: str) -> Any:
        self.conn.send((what,))
        return self.conn.recv()


def measure(size: int, repo: str, kubeconfig: str, dump_dir: str, conn: Connection, latency_s: float = 0.0) -> None:
    """The one-shot figures (what `gitops-kaito sync` does), or at an API latency the first sync alone."""
    parent = Parent(conn)
    try:
        if latency_s:
            conn.send(("done", _first_sync(size, Path(repo), kubeconfig, parent)))
            return
        conn.send(("done", _measure(size, Path(repo), kubeconfig, Path(dump_dir), parent)))
    except Exception:
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def measure_daemon(size: int, repo: str, kubeconfig: str, conn: Connection) -> None:
    """The daemon's figures in a process of their own (after `measure`, which commits the repository), so its peak
    RSS is what `run`'s passes and caches hold, not the one-shot flow's before it."""
    from gitops_kaito.adapters.kube import Kube

    parent = Parent(conn)
    try:
        with Kube.connect(kubeconfig) as kube:
            conn.send(("done", _daemon_noop(Path(repo), kube, parent)))
    except Exception:
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def _first_sync(size: int, repo: Path, kubeconfig: str, parent: Parent) -> dict[str, Any]:
    """Only the first sync (the API latency runs): wall and CPU seconds, requests."""
    from gitops_kaito.adapters.kube import Kube
    from gitops_kaito.reconcile.sync import run_pass

    with Kube.connect(kubeconfig) as kube:
        parent.ask("clear")
        cpu = time.process_time()
        started = time.perf_counter()
        first = run_pass(repo, kube, revision=REV1)
        seconds, cpu_s = time.perf_counter() - started, time.process_time() - cpu
        c = parent.ask("count")
        events = _events_sent(kube, parent, started)
    if first.failed or first.created == 0:
        raise RuntimeError(f"the first sync failed: {first.summary()}")
    return {"models": size, "first_sync_s": seconds, "first_sync_cpu_s": cpu_s, "first_requests": c["total"],
            "first_created": first.created, **events}


def _events_sent(kube: Any, parent: Parent, started: float) -> dict[str, Any]:
    """Wait for the Events a pass queued: seconds from the pass's start until the last was sent, and how many
    requests the first sync made in all once they were (the pass's own figures are taken when it returns)."""
    from gitops_kaito.adapters.events import flush

    if not flush(kube, 60):
        raise RuntimeError("the first sync's Events were not sent")
    return {"first_events_done_s": time.perf_counter() - started,
            "first_requests_with_events": parent.ask("count")["total"]}


def _daemon_noop(repo: Path, kube: Any, parent: Parent) -> dict[str, Any]:
    """The watch-driven daemon's no-op pass: run_pass with the WatchCache (LIST + WATCH once), the DesiredCache keyed
    by the commit's trees and the PassMemo, after a warming pass; then the same pass after a change in the cluster
    (the memo cannot answer: planned again from the cache, still no request)."""
    import git

    from gitops_kaito.adapters.watchcache import WatchCache
    from gitops_kaito.reconcile.desiredcache import DesiredCache, tree_fingerprint
    from gitops_kaito.reconcile.sync import PassMemo, run_pass

    checkout = git.Repo(repo)
    key = tree_fingerprint(checkout, checkout.head.commit.hexsha)
    cache, memo, watch = DesiredCache(), PassMemo(), WatchCache(kube)
    try:
        def one() -> Any:
            return run_pass(repo, kube, revision=REV2, load=cache.loader(key), live=watch, memo=memo)

        one()
        # The cache's threads open their watches in the background after the warming pass: counting starts once
        # every kind's stream is open, so a stream that starts late is not taken for a request of the pass.
        kinds = len(watch.specs)  # one stream per kind the warming pass asked the cache for
        deadline = time.monotonic() + 30
        while parent.ask("watches") < kinds:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the watch cache did not open its {kinds} watches in 30 s")
            threading.Event().wait(0.05)
        parent.ask("clear")
        cpu = time.process_time()
        started = time.perf_counter()
        again = one()
        seconds, cpu_s = time.perf_counter() - started, time.process_time() - cpu
        c = parent.ask("count")
        if memo.hits != 1 or again.plan.has_changes:
            raise RuntimeError(f"the daemon's no-op pass missed its memo ({memo.hits} hits) or planned changes")
        memo.clear()
        parent.ask("clear")
        started = time.perf_counter()
        replanned = one()
        replan_s = time.perf_counter() - started
        r = parent.ask("count")
        if replanned.plan.has_changes:
            raise RuntimeError("the re-planned pass planned changes")
        rss = round(rss_mb(), 1)
    finally:
        watch.close()
    return {"daemon_noop_s": seconds, "daemon_noop_cpu_s": cpu_s, "daemon_noop_requests": c["total"],
            "daemon_noop_writes": c["writes"], "daemon_replan_s": replan_s, "daemon_replan_requests": r["total"],
            "peak_rss_daemon_mb": rss}


def _cached_noop(repo: Path, kube: Any, parent: Parent) -> dict[str, Any]:
    """The daemon's no-op pass: the same run_pass with the daemon's DesiredCache, keyed by the commit's trees
    (tree_fingerprint, what run_git_pass hands it), after a warming pass at that commit."""
    import git

    from gitops_kaito.reconcile.desiredcache import DesiredCache, tree_fingerprint
    from gitops_kaito.reconcile.sync import run_pass

    env = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.com",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.com"}
    checkout = git.Repo.init(repo, initial_branch="main")
    checkout.git.add("-A")
    with checkout.git.custom_environment(**env):
        checkout.git.commit("-q", "-m", "models")
    sha = checkout.head.commit.hexsha
    cache = DesiredCache()
    run_pass(repo, kube, revision=REV2, load=cache.loader(tree_fingerprint(checkout, sha)))
    parent.ask("clear")
    cpu = time.process_time()
    started = time.perf_counter()
    cached = run_pass(repo, kube, revision=REV2, load=cache.loader(tree_fingerprint(checkout, sha)))
    seconds, cpu_s = time.perf_counter() - started, time.process_time() - cpu
    c = parent.ask("count")
    if cache.hits != 1 or cached.plan.has_changes:
        raise RuntimeError(f"the cached no-op pass missed ({cache.hits} hits) or planned changes")
    return {"noop_cached_s": seconds, "noop_cached_cpu_s": cpu_s, "noop_cached_requests": c["total"],
            "noop_cached_writes": c["writes"], "peak_rss_cached_mb": round(rss_mb(), 1)}


def _measure(size: int, repo: Path, kubeconfig: str, dump_dir: Path, parent: Parent) -> dict[str, Any]:
    from gitops_kaito.adapters.kube import Kube
    from gitops_kaito.core.plan import make_plan
    from gitops_kaito.reconcile.sync import load_desired, plan_policy, read_live, run_pass

    row: dict[str, Any] = {"models": size, "base_rss_mb": round(rss_mb(), 1)}

    cpu = time.process_time()
    started = time.perf_counter()
    desired = load_desired(repo, REV1)
    loaded = time.perf_counter()
    plan = make_plan(desired.objects, [], plan_policy(desired))
    planned = time.perf_counter()
    # CPU seconds as well as wall seconds: on a shared machine the wall clock also measures the neighbours.
    row["render_plan_cpu_s"] = time.process_time() - cpu
    if desired.errors:
        raise RuntimeError(f"the generated repository has errors: {desired.errors[:3]}")
    row.update(objects=len(desired.objects), load_render_s=loaded - started, plan_s=planned - loaded,
               render_plan_s=planned - started, planned_creates=plan.counts()["create"])
    # What kubectl applies for the baseline: the same rendered objects, one file per model. Written now so that
    # nothing of this render is held through the passes below (a pass holds its own desired state only).
    dump_dir.mkdir(parents=True, exist_ok=True)
    for rendered in desired.rendered:
        request = rendered.model.request
        docs = [dict(o.manifest) for o in rendered.objects]
        (dump_dir / f"{request.namespace}-{request.name}.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    del plan, desired
    row["render_rss_mb"] = round(rss_mb(), 1)
    row["rss_after_render_mb"] = rss_now_mb()

    with Kube.connect(kubeconfig) as kube:
        in_apply = [0.0]
        apply = kube.apply

        def timed_apply(manifest: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return apply(manifest, **kwargs)
            finally:
                in_apply[0] += time.perf_counter() - began

        kube.apply = timed_apply  # type: ignore[method-assign]
        parent.ask("clear")
        cpu = time.process_time()
        started = time.perf_counter()
        first = run_pass(repo, kube, revision=REV1)
        row["first_sync_s"] = time.perf_counter() - started
        row["first_sync_cpu_s"] = time.process_time() - cpu
        row["first_apply_calls_s"] = in_apply[0]
        row["rss_after_first_sync_mb"] = rss_now_mb()
        row["peak_after_first_sync_mb"] = round(rss_mb(), 1)
        c = parent.ask("count")
        row.update(first_requests=c["total"], first_writes=c["writes"], first_created=first.created,
                   first_failed=first.failed)
        del first
        # The pass's Events are sent by the connection's threads after it returned: counted apart, and done before
        # the no-op pass is measured.
        row.update(_events_sent(kube, parent, started))

        parent.ask("clear")
        cpu = time.process_time()
        started = time.perf_counter()
        noop = run_pass(repo, kube, revision=REV2)
        row["noop_sync_s"] = time.perf_counter() - started
        row["noop_sync_cpu_s"] = time.process_time() - cpu
        row["rss_after_noop_mb"] = rss_now_mb()
        c = parent.ask("count")
        row.update(noop_api_requests=c["total"], noop_writes=c["writes"], noop_lists=c["lists"],
                   noop_changes=int(noop.plan.has_changes), noop_failed=noop.failed)
        del noop

        # The no-op pass split into its parts, so a slow pass can be pinned on load, LIST or planning.
        started = time.perf_counter()
        desired2 = load_desired(repo, REV2)
        loaded = time.perf_counter()
        live = read_live(kube, desired2.objects)
        listed = time.perf_counter()
        make_plan(desired2.objects, live, plan_policy(desired2))
        row.update(noop_load_render_s=loaded - started, noop_list_s=listed - loaded,
                   noop_plan_s=time.perf_counter() - listed, live_objects=len(live))
        del live, desired2
    row["peak_rss_mb"] = round(rss_mb(), 1)
    with Kube.connect(kubeconfig) as kube:
        row.update(_cached_noop(repo, kube, parent))
    return row
