"""An InferenceSet end to end, through a bare git remote, against the sandbox (its KAITO InferenceSet controller makes
the child Workspaces, the simulated KAITO and Karpenter provision them): the pull-request plan with cost, the pass,
Ready with ready/desired replicas in the committed status, an autoscaler's /scale never reverted nor drift, drift of a
managed field corrected, suspend, import skipping KAITO's children, and a git revert that prunes the set.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fixtures_cluster import wait_until
from gitfixtures import Developer, make_remote, model_file
from kubernetes import client

from gitops_kaito.adapters.kube import ApiRetry, Kube
from gitops_kaito.cli import main
from gitops_kaito.core.status import EndpointCheck
from gitops_kaito.model.kaito import INFERENCESET_CREATED_BY_LABEL
from gitops_kaito.reconcile.gitsync import GitPassResult, GitSyncSettings, run_git_pass
from gitops_kaito.sandbox.runtime import Sandbox, SandboxSettings

UA = "gitops-kaito/"
FLEET = "  autoscale: {minReplicas: 2, maxReplicas: 4, threshold: 5}\n"


def served(api: Any, ns: str, name: str) -> EndpointCheck:
    return EndpointCheck(True, f"served-{name}")


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxSettings(speed="fast", namespaces=("default", "ml"))) as sb:
        yield sb


def run(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    return code, out.getvalue()


def test_an_inferenceset_from_pull_request_to_revert(sandbox: Sandbox, tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    dev = Developer(remote, tmp_path / "dev")
    dev.write("models/ml/qwen.yaml", model_file("qwen", "qwen2.5-coder-7b-instruct"))  # keeps prune under the guard
    dev.write("models/ml/other.yaml", model_file("other"))
    dev.commit("two models")
    dev.write("models/ml/fleet.yaml", model_file("fleet") + FLEET)
    added = dev.commit("add an autoscaled fleet")

    # The pull request's plan: offline, from git alone, with replicas and cost.
    code, comment = run(["plan", "--repo", str(dev.path), "--base", "HEAD~1", "--format", "markdown"])
    assert code == 1, comment
    row = next(line for line in comment.splitlines() if line.startswith("| `ml.fleet`"))
    assert "🟢 create" in row and "| 2 (2–4, autoscaled) |" in row and "$" in row, row
    assert "| Replicas |" in comment and "Change in cost per hour: **+$" in comment
    assert "`ml.fleet`: autoscaled 2-4 replicas: up to $" in comment

    kube = Kube.connect(sandbox.kubeconfig_path, retry=ApiRetry(base_delay_s=0.01, max_delay_s=0.05))
    settings = GitSyncSettings(url=remote.url, cache_dir=tmp_path / "cache")
    custom = client.CustomObjectsApi(sandbox.api_client("test-admin/1.0"))

    def git_pass() -> GitPassResult:
        return run_git_pass(settings, kube, endpoint_checker=served)

    def fleet(result: GitPassResult) -> Any:
        return next(r for r in result.reports if r.model_id == "ml.fleet")

    def children() -> list[dict[str, Any]]:
        return custom.list_namespaced_custom_object("kaito.sh", "v1beta1", "ml", "workspaces",
                                                    label_selector=f"{INFERENCESET_CREATED_BY_LABEL}=fleet")["items"]

    def the_set() -> dict[str, Any]:
        return dict(custom.get_namespaced_custom_object("kaito.sh", "v1beta1", "ml", "inferencesets", "fleet"))

    first = git_pass()
    assert first.sync.ok and first.sync.created >= 1, first.sync.errors
    ready = wait_until(lambda: (r := git_pass()) and fleet(r).state == "Ready" and r, 60, interval=0.05,
                       what="the fleet Ready")
    assert fleet(ready).replicas == (2, 2)
    kids = children()
    assert len(kids) == 2 and all(k["metadata"]["name"].startswith("fleet-") for k in kids)
    assert all(k["metadata"]["ownerReferences"][0]["kind"] == "InferenceSet" for k in kids)
    assert all("gitops.kaito.sh/managed-by" not in k["metadata"]["labels"] for k in kids)
    status_md = remote.show("status/STATUS.md")
    assert "ml/fleet | [ok] Ready" in status_md and "2/2 replicas ready" in status_md
    assert yaml.safe_load(remote.show("status/ml/fleet.yaml"))["replicas"] == {"ready": 2, "desired": 2}
    # history reads the set's state changes back from the status commits
    code, out = run(["history", "--git-url", remote.url, "--model", "ml/fleet", "-o", "json"])
    states = [e["state"] for e in yaml.safe_load(out)]  # newest first
    assert code == 0 and states[0] == "Ready" and states[-1] in ("Pending", "Provisioning"), out

    # chat reaches the set through a serving replica's Service
    code, answer = run(["chat", "ml/fleet", "hello", "--kubeconfig", str(sandbox.kubeconfig_path)])
    assert code == 0 and answer.strip(), answer

    # The autoscaler takes the set to 3 through the scale subresource: never reverted, never drift.
    custom.patch_namespaced_custom_object_scale("kaito.sh", "v1beta1", "ml", "inferencesets", "fleet",
                                                {"spec": {"replicas": 3}}, field_manager="keda-hpa")
    for _ in range(3):
        again = git_pass()
        assert not [c for c in again.sync.plan.for_model("ml.fleet") if c.writes or c.drift], again.sync.plan
        assert the_set()["spec"]["replicas"] == 3
    scaled = wait_until(lambda: (r := git_pass()) and fleet(r).replicas == (3, 3) and r, 60, interval=0.05,
                        what="3/3 replicas ready")
    assert fleet(scaled).state == "Ready" and len(children()) == 3

    # A hand edit of a field gitops-kaito manages is drift, corrected; replicas stay the autoscaler's.
    custom.patch_namespaced_custom_object("kaito.sh", "v1beta1", "ml", "inferencesets", "fleet",
                                          {"metadata": {"annotations": {"scaledobject.kaito.sh/threshold": "99"}}},
                                          field_manager="kubectl-edit")
    corrected = git_pass()
    (change,) = [c for c in corrected.sync.plan.for_model("ml.fleet") if c.writes]
    assert change.drift and corrected.sync.drift_corrected == 1
    assert the_set()["metadata"]["annotations"]["scaledobject.kaito.sh/threshold"] == "5"
    assert the_set()["spec"]["replicas"] == 3

    # import never takes KAITO's children (and the set is managed already)
    (tmp_path / "imported").mkdir()
    code, _ = run(["import", "-A", "--repo", str(tmp_path / "imported"), "--kubeconfig",
                   str(sandbox.kubeconfig_path)])
    assert code == 0 and not list((tmp_path / "imported").rglob("fleet-*.yaml"))

    # A revert of the commit that added it prunes the set; KAITO's controller deletes its children.
    dev.pull()
    with dev.repo.git.custom_environment(GIT_AUTHOR_NAME="Dev", GIT_AUTHOR_EMAIL="d@e",
                                         GIT_COMMITTER_NAME="Dev", GIT_COMMITTER_EMAIL="d@e"):
        dev.repo.git.revert("--no-edit", added)
    dev.push()
    pruned = git_pass()
    assert pruned.sync.pruned == 1 and pruned.sync.ok, pruned.sync.errors
    wait_until(lambda: not children() and not custom.list_namespaced_custom_object(
        "kaito.sh", "v1beta1", "ml", "inferencesets")["items"], 30, interval=0.05, what="the set and its replicas gone")
    git_pass()
    assert "ml/fleet" not in remote.show("status/STATUS.md")
    kube.close()


def test_suspending_an_inferenceset_removes_it_and_its_replicas(sandbox: Sandbox, tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    dev = Developer(remote, tmp_path / "dev")
    dev.write("models/ml/fleet.yaml", model_file("fleet") + "  replicas: 2\n")
    dev.commit("fleet")
    kube = Kube.connect(sandbox.kubeconfig_path)
    custom = client.CustomObjectsApi(sandbox.api_client("test-admin/1.0"))
    settings = GitSyncSettings(url=remote.url, cache_dir=tmp_path / "cache")
    assert run_git_pass(settings, kube, endpoint_checker=served).sync.created == 1
    wait_until(lambda: len(custom.list_namespaced_custom_object("kaito.sh", "v1beta1", "ml", "workspaces")["items"])
               == 2, 30, interval=0.05, what="two replicas")
    dev.pull()  # the status commit
    dev.write("models/ml/fleet.yaml", model_file("fleet") + "  replicas: 2\n  suspend: true\n")
    dev.commit("suspend")
    suspended = run_git_pass(settings, kube, endpoint_checker=served)
    assert suspended.sync.pruned == 1
    assert next(r for r in suspended.reports if r.model_id == "ml.fleet").state == "Suspended"
    wait_until(lambda: not custom.list_namespaced_custom_object("kaito.sh", "v1beta1", "ml", "workspaces")["items"],
               30, interval=0.05, what="the replicas gone")
    assert "ml/fleet | [--] Suspended" in remote.show("status/STATUS.md")
    kube.close()


def test_a_settled_pass_with_an_inferenceset_is_one_list_per_managed_kind(sandbox: Sandbox, tmp_path: Path) -> None:
    from gitops_kaito.model.objects import MANAGED_KINDS
    from gitops_kaito.reconcile.sync import run_pass

    repo = tmp_path / "repo"
    (repo / "models" / "ml").mkdir(parents=True)
    (repo / "models" / "ml" / "fleet.yaml").write_text(model_file("fleet") + FLEET)
    custom = client.CustomObjectsApi(sandbox.api_client("test-admin/1.0"))
    with Kube.connect(sandbox.kubeconfig_path) as kube:
        assert run_pass(repo, kube).created == 1
        wait_until(lambda: len(custom.list_namespaced_custom_object(
            "kaito.sh", "v1beta1", "ml", "workspaces", label_selector=INFERENCESET_CREATED_BY_LABEL)["items"]) == 2,
            30, interval=0.05, what="KAITO's two replicas")
        log = sandbox.server.request_log
        before = len(log.select(user_agent_prefix=UA))
        again = run_pass(repo, kube)
        assert not again.plan.has_changes and again.live is not None and len(again.live.kaito_children) == 2
        wait_until(lambda: len(log.select(user_agent_prefix=UA)) - before >= len(MANAGED_KINDS), 10,
                   what="the pass's LISTs logged")
        ours = log.select(user_agent_prefix=UA)[before:]
        assert [e.verb for e in ours] == ["list"] * len(MANAGED_KINDS), [e.path for e in ours]
