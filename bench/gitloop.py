"""Git on both ends: status commits per pass (nothing changed / one model changed) and webhook-to-first-apply latency.

A bare repository on disk is the remote, a clone plays the developer, the daemon pieces run for real on loopback.
"""

from __future__ import annotations

import json
import random
import statistics
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import git

from bench import emulator, genrepo

DEV_ENV = {"GIT_AUTHOR_NAME": "Dev", "GIT_AUTHOR_EMAIL": "dev@example.com",
           "GIT_COMMITTER_NAME": "Dev", "GIT_COMMITTER_EMAIL": "dev@example.com"}
SECRET = b"bench-webhook-secret"


class Remote:
    """A bare repository and a developer clone that pushes to it."""

    def __init__(self, workdir: Path, models: int) -> None:
        self.bare = workdir / "models.git"
        git.Repo.init(self.bare, bare=True, initial_branch="main")
        self.dev_path = workdir / "dev"
        self.dev = git.Repo.clone_from(self.bare.as_uri(), self.dev_path)
        self.dev.git.checkout("--orphan", "main")
        genrepo.generate(self.dev_path, models)
        self.commit("models")

    @property
    def url(self) -> str:
        return self.bare.as_uri()

    def commit(self, message: str) -> str:
        self.dev.git.add("-A")
        with self.dev.git.custom_environment(**DEV_ENV):
            self.dev.git.commit("-q", "-m", message)
        if self.commits():  # the reconciler's status commits land on main too
            self.dev.git.pull("-q", "--rebase", "origin", "main")
        self.dev.git.push("-q", "origin", "HEAD:refs/heads/main")
        return str(self.dev.head.commit.hexsha)

    def commits(self) -> int:
        bare = git.Repo(self.bare)
        try:
            return int(bare.git.rev_list("--count", "main"))
        except git.GitCommandError:
            return 0

    def changed_files(self) -> int:
        """Files changed by the newest commit on the remote's main."""
        return len(git.Repo(self.bare).git.diff_tree("--no-commit-id", "--name-only", "-r", "main").splitlines())


@contextmanager
def count_git_network() -> Iterator[Counter[str]]:
    """Counts the git operations that talk to the remote (fetch, ls-remote, push), by subcommand."""
    from gitops_kaito.adapters.gitsource import GitSource

    seen: Counter[str] = Counter()
    original = GitSource._run

    def counting(self: GitSource, repo: Any, args: Any, network: bool = False, **kwargs: Any) -> str:
        if network:
            seen[str(args[0])] += 1
        return original(self, repo, args, network=network, **kwargs)

    GitSource._run = counting  # type: ignore[method-assign,assignment]
    try:
        yield seen
    finally:
        GitSource._run = original  # type: ignore[method-assign]


@dataclass(frozen=True)
class PassFigures:
    commits: int
    status_files_changed: int
    api_requests: int
    api_writes: int
    api_lists: int
    git_network: dict[str, int]
    seconds: float


def writeback(workdir: Path, models: int = 50) -> dict[str, Any]:
    """Status commits per git pass: the first pass, nothing changed, one model changed, nothing changed again."""
    from gitops_kaito.adapters.kube import Kube
    from gitops_kaito.reconcile.desiredcache import DesiredCache
    from gitops_kaito.reconcile.gitsync import GitSyncSettings, git_source, run_git_pass

    remote = Remote(workdir, models)
    server, kubeconfig = emulator.start(workdir, genrepo.NAMESPACES)
    settings = GitSyncSettings(url=remote.url, cache_dir=workdir / "cache")
    cache = DesiredCache()  # as the daemon's GitPass keeps one
    source = git_source(settings)  # and one GitSource
    figures: dict[str, Any] = {"models": models}
    try:
        with Kube.connect(kubeconfig) as kube:
            def one_pass() -> PassFigures:
                before = remote.commits()
                server.request_log.clear()
                with count_git_network() as network:
                    started = time.perf_counter()
                    result = run_git_pass(settings, kube, cache=cache, source=source)
                    seconds = time.perf_counter() - started
                if not result.sync.ok:
                    raise RuntimeError(f"git pass failed: {result.sync.errors[:3]}")
                commits = remote.commits() - before
                c = emulator.counts(server, emulator.OURS)
                return PassFigures(commits, remote.changed_files() if commits else 0, c.total, c.writes, c.lists,
                                   dict(network), seconds)

            figures["first"] = one_pass().__dict__
            figures["unchanged"] = one_pass().__dict__
            genrepo.touch_one(remote.dev_path, 0)
            remote.commit("one model changed")
            figures["one_changed"] = one_pass().__dict__
            figures["unchanged_again"] = one_pass().__dict__
    finally:
        server.stop()
    return figures


@dataclass(frozen=True)
class _Report:
    """What the daemon needs from a pass (its PassReport protocol)."""

    ok: bool
    summary: str


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(response.status)


def wait_until(condition: Callable[[], Any], timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.002)
    raise TimeoutError("condition not met in time")


def webhook_latency(workdir: Path, models: int = 50, deliveries: int = 5) -> dict[str, Any]:
    """A push, then a signed GitHub webhook: seconds until the new model's Workspace is applied."""
    from gitops_kaito.adapters.kube import Kube
    from gitops_kaito.reconcile.desiredcache import DesiredCache
    from gitops_kaito.reconcile.gitsync import GitSyncSettings, git_source, run_git_pass
    from gitops_kaito.service import webhooks
    from gitops_kaito.service.daemon import Daemon, DaemonSettings, PassContext
    from gitops_kaito.service.metrics import Metrics
    from gitops_kaito.service.webserver import Listener, ListenerHooks

    remote = Remote(workdir, models)
    server, kubeconfig = emulator.start(workdir, genrepo.NAMESPACES)
    settings = GitSyncSettings(url=remote.url, cache_dir=workdir / "cache")
    latencies: list[float] = []
    pass_seconds: list[float] = []
    cache = DesiredCache()
    source = git_source(settings)
    with Kube.connect(kubeconfig) as kube:
        def run(context: PassContext) -> _Report:
            started = time.perf_counter()
            result = run_git_pass(settings, kube, cache=cache, source=source)
            pass_seconds.append(time.perf_counter() - started)
            return _Report(result.sync.ok, result.sync.summary())

        metrics = Metrics()
        daemon = Daemon(DaemonSettings(interval_s=3600, jitter_s=0), run, metrics)
        listener = Listener("127.0.0.1", 0, ListenerHooks(
            branch=lambda: "main", secret=SECRET, trigger=daemon.trigger, healthy=daemon.health,
            ready=daemon.readiness, metrics=metrics)).start()
        try:
            daemon.start(run_first_now=True)
            if not daemon.wait_for_passes(1, timeout_s=120):
                raise RuntimeError("the daemon's first pass did not finish")
            pass_seconds.clear()
            for i in range(deliveries):
                name = f"hook-{i}"
                path = remote.dev_path / "models" / "ml" / f"{name}.yaml"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(genrepo.model_text("ml", name, i, random.Random(i)))
                sha = remote.commit(f"add {name}")
                body = json.dumps({"ref": "refs/heads/main", "after": sha}).encode()
                done = daemon.passes_done
                sent = time.time()
                status = _post(f"{listener.url}/hooks/github", body, {
                    "Content-Type": "application/json", "X-GitHub-Event": "push",
                    "X-Hub-Signature-256": webhooks.sign(SECRET, body)})
                if status != 202:
                    raise RuntimeError(f"webhook answered {status}")
                def applied_entry(n: str = name, t: float = sent) -> Any:
                    return next((e for e in server.request_log.select(user_agent_prefix=emulator.OURS, method="PATCH")
                                 if e.path.endswith(f"/workspaces/{n}") and e.time >= t), None)

                applied = wait_until(applied_entry, timeout_s=30)
                latencies.append(applied.time - sent)
                if not daemon.wait_for_passes(done + 1, timeout_s=60):
                    raise RuntimeError("the webhook's pass did not finish")
        finally:
            daemon.stop(timeout_s=30)
            listener.stop()
            server.stop()
    return {"models": models, "deliveries": deliveries, "latencies_s": latencies,
            "median_s": statistics.median(latencies), "max_s": max(latencies),
            "pass_s_median": statistics.median(pass_seconds) if pass_seconds else None}
