"""`gitops-kaito run --commit-status` end to end: the daemon against the sandbox and a bare Git remote, reporting on
the applied commit to loopback servers that speak GitHub's and GitLab's APIs.

The interval is an hour: every pass is triggered by the test, one at a time, like tests/test_run_daemon.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import git
import pytest

from gitops_kaito.service.service import Service
from gitops_kaito.service.settings import RunSettings
from tests.fixtures_cluster import ClusterTarget, skip_on_real, wait_until
from tests.forgefixtures import Forge
from tests.gitfixtures import Developer, Remote, make_remote, model_file
from tests.test_run_daemon import get, metric

pytestmark = pytest.mark.cluster

CONTEXT = "gitops-kaito/default"


def settings(cluster: ClusterTarget, remote: Remote, tmp: Path, forge: Forge, **extra: Any) -> RunSettings:
    return RunSettings(git_url=remote.url, branch="main", interval="3600s", listen="127.0.0.1:0",
                       kubeconfig=str(cluster.kubeconfig), context=cluster.context or "", cache_dir=str(tmp / "cache"),
                       lease_namespace=cluster.namespace, commit_status=forge.provider, commit_status_api=forge.api,
                       commit_status_repo=forge.repo, commit_status_token=forge.token, **extra)


def pass_until(svc: Service, done: Callable[[], bool], what: str, timeout: float = 90) -> None:
    """One triggered pass at a time (each asks simulated KAITO how far the models got) until `done`."""
    reporter = svc.git.commit_status
    assert reporter is not None

    def step() -> bool:
        count = svc.daemon.passes_done
        svc.daemon.trigger(f"test: {what}")
        assert svc.daemon.wait_for_passes(count + 1, 30)
        assert reporter.wait_idle(10)
        return done()

    wait_until(step, timeout, interval=0, what=what)


def phi_pushed(tmp_path: Path, ns: str) -> tuple[Remote, Developer, str]:
    """A bare remote whose main has phi in `ns`, the developer clone that pushed it, and that commit."""
    remote = make_remote(tmp_path)
    dev = Developer(remote, tmp_path / "dev")
    dev.write(f"models/{ns}/phi.yaml", model_file("phi", namespace=ns))
    return remote, dev, dev.commit("phi")


def test_a_revision_goes_pending_then_success_and_a_failing_one_pending_then_failure(
        cluster: ClusterTarget, tmp_path: Path, forge_factory: Any) -> None:
    skip_on_real(cluster, "an injected quota failure of simulated Karpenter")
    assert cluster.sandbox is not None
    ns = cluster.namespace
    forge: Forge = forge_factory("github")
    remote, dev, sha_a = phi_pushed(tmp_path, ns)
    with Service.build(settings(cluster, remote, tmp_path, forge)) as svc:
        assert svc.daemon.wait_for_passes(1, 30)
        reporter = svc.git.commit_status
        assert reporter is not None and reporter.wait_idle(10)
        assert forge.states(sha_a, CONTEXT) == ["pending"], "the first pass created phi: its commit is pending"
        pass_until(svc, lambda: forge.states(sha_a, CONTEXT)[-1] == "success", "phi Ready")
        assert forge.states(sha_a, CONTEXT) == ["pending", "success"]
        last = forge.last(sha_a, CONTEXT)
        assert last is not None and last["description"] == "1 model Ready"
        # The link is STATUS.md in the status commit that reported it: a commit of the remote that shows phi Ready.
        link = last["target_url"]
        assert link.startswith(f"{forge.api.removesuffix('/api/v3')}/org/models/blob/")
        status_sha = link.split("/blob/")[1].split("/")[0]
        assert "Ready" in git.Repo(remote.bare).git.show(f"{status_sha}:status/STATUS.md")

        cluster.sandbox.inject("quota", workspace="llama", namespace=ns)
        dev.pull()  # the daemon's status commits
        dev.write(f"models/{ns}/llama.yaml", model_file("llama", namespace=ns))
        sha_b = dev.commit("llama, which will find no quota")
        pass_until(svc, lambda: (forge.states(sha_b, CONTEXT) or ["none"])[-1] == "failure", "llama Failed")
        assert forge.states(sha_b, CONTEXT) == ["pending", "failure"]
        last = forge.last(sha_b, CONTEXT)
        assert last is not None and last["description"].startswith(f"1 of 2 models failing: {ns}/llama Failed")
        assert "quota" in last["description"].lower()
        assert forge.states(sha_a, CONTEXT) == ["pending", "success"], "the earlier commit keeps its own status"
        assert all(sha in (sha_a, sha_b) for sha, _ in forge.statuses), "never a status commit"
        metrics = get(f"{svc.url}/metrics")[1]
        assert metric(metrics, "gitops_kaito_commit_statuses_total", provider="github", result="sent") == 4


def test_gitlab_per_model_statuses_through_its_state_machine(
        cluster: ClusterTarget, tmp_path: Path, forge_factory: Any) -> None:
    skip_on_real(cluster, "simulated KAITO")
    ns = cluster.namespace
    forge: Forge = forge_factory("gitlab", "platform/ml/models")
    remote, _dev, sha = phi_pushed(tmp_path, ns)
    with Service.build(settings(cluster, remote, tmp_path, forge, commit_status_per_model=True,
                                commit_status_context="sandbox")) as svc:
        assert svc.daemon.wait_for_passes(1, 30)
        pass_until(svc, lambda: (forge.states(sha, "sandbox") or ["none"])[-1] == "success", "phi Ready")
        assert forge.states(sha, "sandbox") == ["pending", "success"]
        assert forge.states(sha, f"sandbox/{ns}/phi") == ["pending", "success"]
        path = forge.requests[0][0]
        assert path == f"/api/v4/projects/platform%2Fml%2Fmodels/statuses/{sha}"


def test_a_revoked_token_is_a_log_line_and_a_metric_not_a_crashed_daemon(
        cluster: ClusterTarget, tmp_path: Path, forge_factory: Any, caplog: pytest.LogCaptureFixture) -> None:
    skip_on_real(cluster, "simulated KAITO")
    ns = cluster.namespace
    forge: Forge = forge_factory("github")
    remote, _dev, sha = phi_pushed(tmp_path, ns)
    run = settings(cluster, remote, tmp_path, forge)
    forge.token = "the-rotated-token-the-daemon-does-not-have"  # the daemon's token was revoked
    with caplog.at_level(logging.WARNING), Service.build(run) as svc:
        assert svc.daemon.wait_for_passes(1, 30)
        reporter = svc.git.commit_status
        assert reporter is not None and reporter.wait_idle(10)
        pass_until(svc, lambda: metric(get(f"{svc.url}/metrics")[1], "gitops_kaito_commit_statuses_total",
                                       provider="github", result="unauthorized") == 2, "phi Ready")
        assert svc.daemon.health() and get(f"{svc.url}/readyz")[0] == 200, "the daemon goes on"
        assert "Ready" in remote.show("status/STATUS.md"), "passes still apply and commit status"
        assert forge.statuses == {}
        refused = [r.getMessage() for r in caplog.records if "commit status" in r.getMessage()
                   and "HTTP 401" in r.getMessage()]
        assert len(refused) == 2, "one line per state (pending, then success), not one per pass"
        assert "GITOPS_KAITO_COMMIT_STATUS_TOKEN was refused (revoked or expired?)" in refused[0]
        assert f"{CONTEXT}=pending on org/models@{sha[:12]}" in refused[0]
        assert run.commit_status_token not in "\n".join(r.getMessage() for r in caplog.records)
        metrics = get(f"{svc.url}/metrics")[1]
        assert metric(metrics, "gitops_kaito_commit_status_requests_total", provider="github", code="401") == 2
