"""The watch-driven daemon for real (Service with its default settings) against the emulator: a hand edit made with
`kubectl annotate` and the time until the daemon's correcting PATCH reaches the API server; the daemon's peak memory.

Runs in a spawned child (its own RSS); the emulator lives in the same process, as in the git scenarios.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from bench import emulator, genrepo
from bench.gitloop import Remote

SOURCE = "gitops.kaito.sh/source-path"


def _wait(condition: Any, timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.005)
    raise TimeoutError("condition not met in time")


def _status_kib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1])
    return 0.0


def hand_edit(workdir: Path, models: int, kubectl: str | None, edits: int = 5) -> dict[str, Any]:
    """`edits` hand edits of different Workspaces, one after another; seconds from the edit's PATCH (logged by the
    emulator as it arrives) to the daemon's correcting PATCH of the same Workspace."""
    from kubernetes import client

    from gitops_kaito.service.service import Service
    from gitops_kaito.service.settings import RunSettings

    remote = Remote(workdir, models)
    server, kubeconfig = emulator.start(workdir, genrepo.NAMESPACES)
    settings = RunSettings(git_url=remote.url, listen="127.0.0.1:0", leader_election=False,
                           kubeconfig=str(kubeconfig), cache_dir=str(workdir / "cache"))  # defaults otherwise
    configuration = client.Configuration()
    configuration.host = server.url
    admin = client.ApiClient(configuration)
    admin.user_agent = emulator.ADMIN_AGENT
    seconds: list[float] = []
    first_pass_s = 0.0
    try:
        started = time.perf_counter()
        with Service.build(settings) as svc:
            if not svc.daemon.wait_for_passes(1, timeout_s=600):
                raise RuntimeError("the daemon's first pass did not finish")
            first_pass_s = time.perf_counter() - started
            items = client.CustomObjectsApi(admin).list_cluster_custom_object("kaito.sh", "v1beta1", "workspaces")["items"]
            picked = [items[(i * len(items)) // edits] for i in range(min(edits, len(items)))]
            for i, ws in enumerate(picked):
                name, namespace = ws["metadata"]["name"], ws["metadata"]["namespace"]
                path = f"/apis/kaito.sh/v1beta1/namespaces/{namespace}/workspaces/{name}"
                done = svc.daemon.passes_done  # the correcting pass is one of the passes after this
                since = time.time()
                if kubectl:
                    subprocess.run([kubectl, "--kubeconfig", str(kubeconfig), "-n", namespace, "annotate",
                                    "workspace", name, f"{SOURCE}=hand/edit-{i}", "--overwrite"],
                                   check=True, capture_output=True, timeout=60)
                else:
                    client.CustomObjectsApi(admin).patch_namespaced_custom_object(
                        "kaito.sh", "v1beta1", namespace, "workspaces", name,
                        {"metadata": {"annotations": {SOURCE: f"hand/edit-{i}"}}}, field_manager="kubectl-annotate")
                edit = _wait(lambda p=path, t=since: next(
                    (e for e in server.request_log.select(method="PATCH", path_regex=p + "$")
                     if e.time >= t and not e.user_agent.startswith(emulator.OURS)), None), 60)
                fix = _wait(lambda p=path, t=edit.time: next(
                    (e for e in server.request_log.select(user_agent_prefix=emulator.OURS, method="PATCH",
                                                          path_regex=p + "$") if e.time >= t), None), 60)
                seconds.append(fix.time - edit.time)
                svc.daemon.wait_for_passes(done + 1, timeout_s=60)  # the correcting pass has ended
            rss = _status_kib("VmHWM") / 1024
    finally:
        admin.close()
        server.stop()
    return {"models": models, "edits": len(seconds), "seconds": seconds, "median_s": statistics.median(seconds),
            "max_s": max(seconds), "first_pass_s": first_pass_s, "peak_rss_mb": round(rss, 1),
            "by": "kubectl annotate" if kubectl else "client patch (kubectl absent)"}
