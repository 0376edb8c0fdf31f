"""The service's start-up read of the repository's daemon: settings, without a cluster (the service is built and
stopped, never started, so no pass runs)."""

from __future__ import annotations

import dataclasses
import logging
import socket
from pathlib import Path
from typing import Any, cast

import pytest

from gitops_kaito.service.service import Service
from gitops_kaito.service.settings import resolve_settings
from tests.gitfixtures import Developer, make_remote


class NoCluster:
    """Kube stand-in: a service that never starts only closes it."""

    closed = False

    def close(self) -> None:
        self.closed = True


def test_a_repository_listen_address_that_cannot_be_bound_falls_back(tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    """A merged daemon.listen naming a busy port (or an address not on this host) made every start fail before
    the first pass could read the fix: the listener binds what flags, environment and defaults say instead."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        remote = make_remote(tmp_path)
        dev = Developer(remote, tmp_path / "dev")
        dev.write("gitops-kaito.yaml", "apiVersion: gitops.kaito.sh/v1alpha1\nkind: Config\ndaemon:\n"
                  f"  listen: 127.0.0.1:{taken}\n  interval: 2h\n")
        dev.commit("a listen address already in use")
        flags = {"git_url": remote.url, "cache_dir": str(tmp_path / "cache"), "leader_election": False}
        # listen stays "not set" (the repository may set it); its fallback is a free loopback port, not 8080.
        settings = dataclasses.replace(resolve_settings(flags, {}), listen="127.0.0.1:0")
        kube = NoCluster()
        with caplog.at_level(logging.WARNING, logger="gitops_kaito"):
            svc = Service.build(settings, kube=cast(Any, kube))
        try:
            assert svc.daemon.settings.interval_s == 7200, "the rest of the repository's settings still apply"
            assert svc.settings.listen == "127.0.0.1:0" and svc.listener.port not in (0, taken)
        finally:
            svc.stop()
    assert kube.closed
    assert any(f"127.0.0.1:{taken}" in r.getMessage() and "cannot listen" in r.getMessage()
               for r in caplog.records), "the fallback was not reported"


def test_a_failure_following_the_repository_settings_does_not_fail_the_pass(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The repository's settings are followed after the pass has applied; a failure there (a scheduler that would
    not take the new interval) made the pass "crash": no metrics, no notifications, a failure backoff."""
    from gitops_kaito.adapters.gitsource import Checkout
    from gitops_kaito.core.plan import Plan
    from gitops_kaito.core.status import ModelReport
    from gitops_kaito.reconcile.gitsync import GitPassResult
    from gitops_kaito.reconcile.sync import PassResult
    from gitops_kaito.repo.config import RepoConfig
    from gitops_kaito.service import service
    from gitops_kaito.service.metrics import Metrics

    revision = "main@sha1:" + "1" * 40
    done = GitPassResult(Checkout(tmp_path, "1" * 40, "main", None), revision,
                         PassResult(revision=revision, plan=Plan(()), outcomes=(), errors=()),
                         (ModelReport("ml.a", "ml", "a", "Ready", revision=revision),), None, RepoConfig())
    monkeypatch.setattr(service, "run_git_pass", lambda *a, **kw: done)

    def broken(config: RepoConfig) -> None:
        raise RuntimeError("the scheduler is shutting down")

    metrics = Metrics()
    settings = resolve_settings({"git_url": "file:///nowhere", "cache_dir": str(tmp_path / "cache")}, {})
    git = service.GitPass(service.git_settings(settings), cast(Any, NoCluster()), metrics, on_config=broken)
    report = git(service.PassContext("test", lambda: True))
    assert report.ok, report.summary
    assert b'gitops_kaito_models{state="Ready"} 1.0' in metrics.render(), "the pass's metrics were not recorded"
    assert any(r.exc_info and "the scheduler is shutting down" in str(r.exc_info[1]) for r in caplog.records), \
        "the failure was not logged"
