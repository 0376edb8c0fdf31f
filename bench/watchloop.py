"""The watch-driven daemon for real (Service with its default settings) against the emulator: a hand edit made with
`kubectl annotate` and the time until the daemon's correcting PATCH reaches the API server; the daemon's peak memory.

The daemon runs in a spawned process of its own (its RSS is its own, and it does not share a GIL with the API
server, as with a real cluster); the emulator and the edits run in the calling process.
"""

from __future__ import annotations

import multiprocessing
import statistics
import subprocess
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench import emulator, genrepo
from bench.gitloop import Remote, wait_until
from bench.worker import rss_mb

SOURCE = "gitops.kaito.sh/source-path"


def _ask(conn: Connection, daemon: Any, what: Any, timeout_s: float = 600) -> Any:
    conn.send(what)
    deadline = time.monotonic() + timeout_s
    while not conn.poll(0.2):
        if not daemon.is_alive():
            raise RuntimeError(f"the daemon process ended (exit code {daemon.exitcode})")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the daemon did not answer {what!r} in {timeout_s:g} s")
    return conn.recv()


def _daemon(url: str, kubeconfig: str, cache_dir: str, conn: Connection) -> None:
    """The spawned daemon: `run` with its defaults; answers "passes" (how many passes finished) and "stop"."""
    import logging

    from gitops_kaito.service.service import Service
    from gitops_kaito.service.settings import RunSettings

    logging.getLogger("gitops_kaito").setLevel(logging.ERROR)
    settings = RunSettings(git_url=url, listen="127.0.0.1:0", leader_election=False, kubeconfig=kubeconfig,
                           cache_dir=cache_dir)  # defaults otherwise
    with Service.build(settings) as svc:
        while True:
            what = conn.recv()
            if what == "stop":
                break
            if isinstance(what, tuple) and what[0] == "wait":  # ("wait", n): until n passes finished
                conn.send(svc.daemon.wait_for_passes(what[1], timeout_s=600) and svc.daemon.passes_done)
    conn.send(round(rss_mb(), 1))


def hand_edit(workdir: Path, models: int, kubectl: str | None, edits: int = 5) -> dict[str, Any]:
    """`edits` hand edits of different Workspaces, one after another (after one more while the daemon starts up);
    seconds from the edit's PATCH (logged by the emulator as it arrives) to the daemon's correcting PATCH of the same
    Workspace."""
    from kubernetes import client

    remote = Remote(workdir, models)
    server, kubeconfig = emulator.start(workdir, genrepo.NAMESPACES)
    configuration = client.Configuration()
    configuration.host = server.url
    admin = client.ApiClient(configuration)
    admin.user_agent = emulator.ADMIN_AGENT
    seconds: list[float] = []
    first_pass_s = 0.0
    rss = 0.0
    ours, theirs = multiprocessing.get_context("spawn").Pipe()
    daemon = multiprocessing.get_context("spawn").Process(
        target=_daemon, args=(remote.url, str(kubeconfig), str(workdir / "cache"), theirs), daemon=True)
    try:
        started = time.perf_counter()
        daemon.start()
        if not _ask(ours, daemon, ("wait", 1)):
            raise RuntimeError("the daemon's first pass did not finish")
        first_pass_s = time.perf_counter() - started
        listed: Any = client.CustomObjectsApi(admin).list_cluster_custom_object("kaito.sh", "v1beta1", "workspaces")
        items = listed["items"]
        # One edit more than counted: the first lands while the daemon is still starting up (its watch cache lists
        # every object once after the first pass); it is reported on its own, the others are the steady state.
        count = min(edits + 1, len(items))
        picked = [items[(i * len(items)) // count] for i in range(count)]
        for i, ws in enumerate(picked):
            name, namespace = ws["metadata"]["name"], ws["metadata"]["namespace"]
            path = f"/apis/kaito.sh/v1beta1/namespaces/{namespace}/workspaces/{name}"
            done = _ask(ours, daemon, ("wait", 0))  # passes done so far: the correcting pass is one after these
            since = time.time()
            if kubectl:
                subprocess.run([kubectl, "--kubeconfig", str(kubeconfig), "-n", namespace, "annotate",
                                "workspace", name, f"{SOURCE}=hand/edit-{i}", "--overwrite"],
                               check=True, capture_output=True, timeout=60)
            else:
                client.CustomObjectsApi(admin).patch_namespaced_custom_object(
                    "kaito.sh", "v1beta1", namespace, "workspaces", name,
                    {"metadata": {"annotations": {SOURCE: f"hand/edit-{i}"}}}, field_manager="kubectl-annotate")
            edit = wait_until(lambda p=path, t=since: next(
                (e for e in server.request_log.select(method="PATCH", path_regex=p + "$")
                 if e.time >= t and not e.user_agent.startswith(emulator.OURS)), None), 60)
            fix = wait_until(lambda p=path, t=edit.time: next(
                (e for e in server.request_log.select(user_agent_prefix=emulator.OURS, method="PATCH",
                                                      path_regex=p + "$") if e.time >= t), None), 60)
            seconds.append(fix.time - edit.time)
            _ask(ours, daemon, ("wait", done + 1))  # the correcting pass has ended
        rss = _ask(ours, daemon, "stop")
    finally:
        if daemon.pid is not None:
            daemon.join(timeout=60)
            if daemon.is_alive():
                daemon.kill()
        admin.close()
        server.stop()
    first_edit_s, seconds = seconds[0], seconds[1:]
    return {"models": models, "edits": len(seconds), "seconds": seconds, "median_s": statistics.median(seconds),
            "max_s": max(seconds), "first_edit_s": first_edit_s, "first_pass_s": first_pass_s, "peak_rss_mb": round(rss, 1),
            "by": "kubectl annotate" if kubectl else "client patch (kubectl absent)"}
