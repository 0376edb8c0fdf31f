"""End to end with Git on both ends: a bare remote, developers pushing, a cluster, status commits back.

The cluster is a private bare emulator by default, where the tests play KAITO by writing Workspace status the way
FACTS.md §5.5 describes; with GITOPS_KAITO_TEST_KUBECONFIG it is a real cluster, where those steps (and request
counts) are skipped: a real KAITO's progress is awaited by passing until the status settles, never forged.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import git
import pytest
import yaml
from kubernetes import client

from gitops_kaito.adapters.history import model_history
from gitops_kaito.adapters.kube import ApiRetry, Kube
from gitops_kaito.cli import main
from gitops_kaito.core.status import DriftEntry, EndpointCheck
from gitops_kaito.model.objects import MANAGED_KINDS
from gitops_kaito.reconcile.gitsync import GitPassResult, GitSyncSettings, run_git_pass
from gitops_kaito.sandbox.apiserver import ApiServer
from tests.fixtures_cluster import ClusterTarget, skip_on_real, wait_until
from tests.gitfixtures import Developer, Remote, make_remote, model_file

pytestmark = pytest.mark.cluster

UA = "gitops-kaito/"
WRITES = ("create", "update", "patch", "delete", "deletecollection")
COUNTS = "counts the requests the emulator logged"


@dataclass
class World:
    target: ClusterTarget
    kube: Kube
    admin: client.ApiClient
    remote: Remote
    dev: Developer
    settings: GitSyncSettings

    @property
    def ns(self) -> str:
        return self.target.namespace

    @property
    def kubeconfig(self) -> Path:
        return self.target.kubeconfig

    @property
    def server(self) -> ApiServer:
        assert self.target.emulator is not None, "an emulator-only step ran on a real cluster"
        return self.target.emulator

    def model(self, name: str, model: str = "phi-4-mini-instruct") -> str:
        return model_file(name, model, namespace=self.ns)

    def writes(self) -> int:
        return self.server.request_log.count(user_agent_prefix=UA, verbs=WRITES)

    def git_pass(self, now: str, **kwargs: Any) -> GitPassResult:
        kwargs.setdefault("endpoint_checker", served)
        return run_git_pass(self.settings, self.kube, now=now, **kwargs)

    def settle(self, now: str) -> GitPassResult:
        """Pass until three passes in a row commit nothing: where a KAITO runs, states move on their own between
        passes, and one quiet pass can fall between two of its steps."""
        streak = [0]

        def quiet() -> GitPassResult | None:
            res = self.git_pass(now)
            streak[0] = streak[0] + 1 if res.writeback is not None and not res.writeback.committed else 0
            return res if streak[0] >= 3 else None
        return wait_until(quiet, timeout=60, interval=0.3, what="three passes in a row with nothing to commit")

    def kaito_ready(self, name: str) -> None:
        """Play KAITO: the Workspace reaches WorkspaceSucceeded=True and state Ready for its generation."""
        assert self.target.bare, "plays KAITO: only where no KAITO runs"
        api = client.CustomObjectsApi(self.admin)
        ws = api.get_namespaced_custom_object("kaito.sh", "v1beta1", self.ns, "workspaces", name)
        gen = ws["metadata"].get("generation", 1)
        conds = [{"type": t, "status": "True", "reason": r, "message": "", "observedGeneration": gen,
                  "lastTransitionTime": "2025-01-01T00:00:00Z"}
                 for t, r in (("NodeClaimReady", "NodeClaimsReady"), ("NodesReady", "NodesReady"),
                              ("ResourceReady", "workspaceResourceStatusSuccess"),
                              ("InferenceReady", "WorkspaceInferenceStatusSuccess"),
                              ("WorkspaceSucceeded", "workspaceSucceeded"))]
        api.patch_namespaced_custom_object_status("kaito.sh", "v1beta1", self.ns, "workspaces", name,
                                                  {"status": {"conditions": conds, "state": "Ready"}})
        client.CoreV1Api(self.admin).create_namespaced_service(self.ns, {  # KAITO's Service (FACTS.md §7)
            "metadata": {"name": name}, "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 5000}],
                                                 "selector": {"kaito.sh/workspace": name}}})

    def workspace(self, name: str) -> dict[str, Any] | None:
        """The Workspace if it stands; None when gone or being deleted (a controller's finalizer may hold it)."""
        return self.get("workspaces", name)

    def get(self, plural: str, name: str) -> dict[str, Any] | None:
        """A kaito.sh/v1beta1 object of the test namespace if it stands; None when gone or being deleted."""
        try:
            obj = client.CustomObjectsApi(self.admin).get_namespaced_custom_object(
                "kaito.sh", "v1beta1", self.ns, plural, name)
        except client.ApiException as err:
            if err.status == 404:
                return None
            raise
        return None if obj["metadata"].get("deletionTimestamp") else dict(obj)


@pytest.fixture
def world(kaito_cluster: ClusterTarget, tmp_path: Path) -> Iterator[World]:
    kube = Kube.connect(kaito_cluster.kubeconfig, context=kaito_cluster.context,
                        retry=ApiRetry(base_delay_s=0.01, max_delay_s=0.05))
    admin = kaito_cluster.api_client("test-admin/1.0")
    remote = make_remote(tmp_path)
    dev = Developer(remote, tmp_path / "dev")
    dev.write("README.md", "models\n")
    dev.commit("init")
    settings = GitSyncSettings(url=remote.url, cache_dir=tmp_path / "cache")
    try:
        yield World(kaito_cluster, kube, admin, remote, dev, settings)
    finally:
        kube.close()
        admin.close()


def served(api: Any, ns: str, name: str) -> EndpointCheck:
    return EndpointCheck(True, f"served-{name}")


def test_merged_model_gets_its_status_and_a_revert_prunes_it(world: World) -> None:
    dev, ns = world.dev, world.ns
    # A second model keeps the revert under the prune guard's default share (0.5 of the managed models).
    dev.write(f"models/{ns}/qwen.yaml", world.model("qwen", "qwen2.5-coder-7b-instruct"))
    dev.commit("add qwen")
    dev.write(f"models/{ns}/phi.yaml", world.model("phi"))
    added = dev.commit("add phi")

    first = world.git_pass("2025-01-01T00:00:00Z")
    assert first.revision == f"main@sha1:{added}"
    assert first.sync.created >= 1 and world.workspace("phi") is not None
    assert first.writeback is not None and first.writeback.committed
    doc = yaml.safe_load(world.remote.show(f"status/{ns}/phi.yaml"))
    assert doc["state"] in ("Pending", "Provisioning") and doc["revision"] == first.revision
    tip = git.Repo(world.remote.bare).commit("main")
    assert tip.author.name == "gitops-kaito" and f"Gitops-Kaito-Revision: {first.revision}" in tip.message

    if world.target.bare:  # play KAITO: phi becomes Ready
        world.kaito_ready("phi")
        second = world.git_pass("2025-01-01T00:05:00Z")
        assert second.revision == first.revision  # our own status commit is not a change of desired state
        doc = yaml.safe_load(world.remote.show(f"status/{ns}/phi.yaml"))
        assert doc["state"] == "Ready" and doc["since"] == "2025-01-01T00:05:00Z"
        assert doc["endpointCheck"] == {"answers": True, "servedModel": "served-phi"}
        table = world.remote.show("status/STATUS.md")
        assert "2 models: 1 Ready, 1 P" in table
        assert "[ok] Ready" in next(ln for ln in table.splitlines() if ln.startswith(f"| {ns}/phi"))

    # A pass with no change: no applies, no commit (a real KAITO's progress first settles).
    settled = world.settle("2025-01-01T00:07:00Z")
    assert settled.revision == first.revision
    assert (settled.sync.created, settled.sync.updated, settled.sync.pruned) == (0, 0, 0)
    tip_sha = world.remote.sha()
    writes = world.writes() if world.target.emulator is not None else 0
    third = world.git_pass("2025-01-01T00:09:00Z")
    assert third.writeback is not None and not third.writeback.committed
    assert world.remote.sha() == tip_sha
    if world.target.emulator is not None:
        assert world.writes() == writes

    # git revert of the commit that added the model prunes it; status says so.
    dev.pull()
    with dev.repo.git.custom_environment(GIT_AUTHOR_NAME="Dev", GIT_AUTHOR_EMAIL="d@x",
                                         GIT_COMMITTER_NAME="Dev", GIT_COMMITTER_EMAIL="d@x"):
        dev.repo.git.revert("--no-edit", added)
    dev.push()
    fourth = world.git_pass("2025-01-01T00:10:00Z")
    assert fourth.sync.pruned >= 1 and world.workspace("phi") is None
    assert fourth.revision == f"main@sha1:{dev.repo.head.commit.hexsha}"
    names = git.Repo(world.remote.bare).git.ls_tree("-r", "--name-only", "main", "--", "status").splitlines()
    assert names == ["status/STATUS.md", f"status/{ns}/qwen.yaml"]
    assert f"{ns}/phi" not in world.remote.show("status/STATUS.md")
    assert f"Pruned: {ns}.phi" in git.Repo(world.remote.bare).commit("main").message
    events = model_history(git.Repo(world.remote.bare), f"{ns}/phi", "main")
    assert events[0].state == "Removed"
    if world.target.bare:
        assert [e.state for e in events][:2] == ["Removed", "Ready"]


def test_status_only_commit_does_not_trigger_applies(world: World) -> None:
    dev, ns = world.dev, world.ns
    dev.write(f"models/{ns}/phi.yaml", world.model("phi"))
    dev.commit("add phi")
    world.git_pass("2025-01-01T00:00:00Z")
    # Someone edits a status file by hand: a status-only commit.
    dev.pull()
    dev.write(f"status/{ns}/phi.yaml", "state: Ready\n")
    dev.commit("tamper with status")
    writes = world.writes() if world.target.emulator is not None else 0
    again = world.git_pass("2025-01-01T00:01:00Z")
    if world.target.emulator is not None:
        assert world.writes() == writes  # nothing applied
    assert again.sync.created == again.sync.updated == 0
    assert again.writeback is not None and again.writeback.committed  # the report is restored
    assert yaml.safe_load(world.remote.show(f"status/{ns}/phi.yaml"))["model"] == f"{ns}/phi"


def test_push_race_during_a_pass(world: World) -> None:
    dev = world.dev
    dev.write(f"models/{world.ns}/phi.yaml", world.model("phi"))
    dev.commit("add phi")
    raced: list[str] = []

    def race(attempt: int) -> None:
        if attempt == 1:
            dev.write("docs.md", "a developer's commit lands mid-push\n")
            raced.append(dev.commit("docs"))

    res = world.git_pass("2025-01-01T00:00:00Z", before_push=race, sleep=lambda s: None)
    assert res.writeback is not None and res.writeback.attempts == 2
    log = [line.split()[0] for line in world.remote.log()]
    assert log[0] == res.writeback.sha and log[1] == raced[0]


def test_separate_status_branch_and_cli(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    dev = world.dev
    dev.write(f"models/{world.ns}/phi.yaml", world.model("phi"))
    main_sha = dev.commit("add phi")
    code = main(["sync", "--git-url", world.remote.url, "--status-branch", "gitops-status",
                 *world.target.cli_args(), "--cache-dir", str(world.settings.cache_dir), "-o", "json"])
    assert code in (0, 1)
    out = json.loads(capsys.readouterr().out)
    assert out["revision"] == f"main@sha1:{main_sha}"
    assert world.remote.sha("main") == main_sha  # the followed branch is untouched
    assert main(["status", "--git-url", world.remote.url, "--branch", "gitops-status", "-o", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [m["model"] for m in report["models"]] == [f"{world.ns}/phi"]


def test_endpoint_check_goes_through_the_service_proxy(world: World) -> None:
    skip_on_real(world.target, "plays KAITO and answers for the model through the emulator's service proxy")
    pytest.importorskip("gitops_kaito.adapters.endpoint")
    calls: list[tuple[str, str, str, str]] = []

    def proxy(ns: str, service: str, port: str, method: str, subpath: str, body: bytes) -> Any:
        calls.append((ns, service, port, subpath))
        if subpath.strip("/") == "v1/models":
            return 200, {"Content-Type": "application/json"}, json.dumps(
                {"object": "list", "data": [{"id": "phi-4-mini-instruct"}]}).encode()
        return 404, {}, b""

    world.server.set_proxy_handler(proxy)
    world.dev.write("models/ml/phi.yaml", world.model("phi"))
    world.dev.commit("add phi")
    first = run_git_pass(world.settings, world.kube, now="2025-01-01T00:00:00Z")
    assert calls == []  # not InferenceReady yet: no probe
    assert first.reports[0].endpoint_check == EndpointCheck()
    world.kaito_ready("phi")
    second = run_git_pass(world.settings, world.kube, now="2025-01-01T00:01:00Z")
    assert calls and calls[0][:3] == ("ml", "phi", "http")
    assert second.reports[0].endpoint_check == EndpointCheck(True, "phi-4-mini-instruct")
    doc = yaml.safe_load(world.remote.show("status/ml/phi.yaml"))
    assert doc["endpointCheck"] == {"answers": True, "servedModel": "phi-4-mini-instruct"}
    world.server.set_proxy_handler(None)  # the model stops answering: 503 from the proxy
    run_git_pass(world.settings, world.kube, now="2025-01-01T00:02:00Z")
    doc = yaml.safe_load(world.remote.show("status/ml/phi.yaml"))
    assert doc["endpointCheck"]["answers"] is False and doc["since"] == "2025-01-01T00:01:00Z"


def _three_models_settled(world: World) -> str:
    for name in ("a", "b", "c"):
        world.dev.write(f"models/{world.ns}/{name}.yaml", world.model(name))
    sha = world.dev.commit("three models")
    first = world.git_pass("2025-01-01T00:00:00Z")
    assert first.writeback is not None and first.writeback.committed
    if not world.target.bare:  # a KAITO moves the states on: let them settle before comparing files
        world.settle("2025-01-01T00:01:00Z")
    return sha


def test_one_model_changed_rewrites_its_status_file_only(world: World) -> None:
    dev, ns = world.dev, world.ns
    first_sha = _three_models_settled(world)
    before = {n: world.remote.show(f"status/{ns}/{n}.yaml") for n in ("a", "b", "c")}

    dev.pull()
    # A mutable change (an annotation the Workspace carries): b's objects are updated in place.
    dev.write(f"models/{ns}/b.yaml", world.model("b").replace(f"  namespace: {ns}\n",
                                                              f"  namespace: {ns}\n  annotations:\n    team: blue\n"))
    second_sha = dev.commit("change b only")
    second = world.git_pass("2025-01-01T00:05:00Z")
    assert second.writeback is not None and second.writeback.committed
    commit = git.Repo(world.remote.bare).commit("main")
    assert sorted(commit.stats.files) == ["status/STATUS.md", f"status/{ns}/b.yaml"]
    assert yaml.safe_load(world.remote.show(f"status/{ns}/b.yaml"))["revision"] == f"main@sha1:{second_sha}"
    for name in ("a", "c"):  # untouched models keep the revision last applied to them, byte for byte
        assert world.remote.show(f"status/{ns}/{name}.yaml") == before[name]
        assert yaml.safe_load(before[name])["revision"] == f"main@sha1:{first_sha}"


def _noop_pass(world: World, monkeypatch: pytest.MonkeyPatch) -> tuple[GitPassResult, list[str]]:
    """A pass over three settled models, with the git commands that reached the remote."""
    from gitops_kaito.adapters.gitsource import GitSource

    _three_models_settled(world)
    remote_calls: list[str] = []
    original = GitSource._run

    def counting(self: GitSource, repo: Any, args: Any, network: bool = False, **kw: Any) -> str:
        if network:
            remote_calls.append(args[0])
        return original(self, repo, args, network=network, **kw)

    monkeypatch.setattr(GitSource, "_run", counting)
    if world.target.emulator is not None:
        world.server.request_log.clear()
    return world.git_pass("2025-01-01T00:09:00Z"), remote_calls


def test_a_noop_pass_commits_nothing_and_fetches_once(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    third, remote_calls = _noop_pass(world, monkeypatch)
    assert third.writeback is not None and not third.writeback.committed
    assert (third.sync.created, third.sync.updated, third.sync.pruned) == (0, 0, 0)
    assert remote_calls.count("fetch") == 1 and "ls-remote" not in remote_calls
    assert remote_calls.count("cat-file") == 1  # every status file read with one batch


def test_a_noop_pass_lists_once_per_kind(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    skip_on_real(world.target, COUNTS)
    third, _ = _noop_pass(world, monkeypatch)
    assert third.writeback is not None and not third.writeback.committed
    ours = world.server.request_log.select(user_agent_prefix=UA)
    # One per managed kind: ConfigMap, NodeClaim, Machine, Workspace, InferenceSet, ...
    assert [e.verb for e in ours].count("list") == len(ours) == len(MANAGED_KINDS)


def test_drift_report_is_in_the_status_once_and_the_state_stays_ready(world: World) -> None:
    skip_on_real(world.target, "plays KAITO to make the model Ready")
    dev, ns = world.dev, world.ns
    dev.write("gitops-kaito.yaml", "apiVersion: gitops.kaito.sh/v1alpha1\nkind: Config\ndrift: report\n")
    dev.write(f"models/{ns}/phi.yaml", world.model("phi"))
    dev.commit("add phi, drift: report")
    world.git_pass("2025-01-01T00:00:00Z")
    world.kaito_ready("phi")
    world.git_pass("2025-01-01T00:01:00Z")
    client.CustomObjectsApi(world.admin).patch_namespaced_custom_object(
        "kaito.sh", "v1beta1", ns, "workspaces", "phi",
        {"metadata": {"annotations": {"gitops.kaito.sh/source-path": "hand/made.yaml"}}},
        field_manager="kubectl-annotate")

    drifted = world.git_pass("2025-01-01T00:02:00Z")
    assert drifted.sync.updated == 0 and drifted.writeback is not None and drifted.writeback.committed
    doc = yaml.safe_load(world.remote.show(f"status/{ns}/phi.yaml"))
    assert doc["state"] == "Ready" and doc["since"] == "2025-01-01T00:01:00Z"  # a drifted model can be Ready
    assert doc["drift"] == [{"object": f"Workspace/{ns}/phi",
                             "fields": ["metadata.annotations.gitops.kaito.sh/source-path"],
                             "by": ["kubectl-annotate"], "since": "2025-01-01T00:02:00Z"}]
    row = next(ln for ln in world.remote.show("status/STATUS.md").splitlines() if ln.startswith(f"| {ns}/phi "))
    assert "[ok] Ready" in row and row.endswith(
        "| drifted: Workspace metadata.annotations.gitops.kaito.sh/source-path (by kubectl-annotate), "
        "not corrected: drift: report |")

    tip, writes = world.remote.sha(), world.writes()
    again = world.git_pass("2025-01-01T00:03:00Z")  # the same drift: no commit, no write, no Event
    assert again.writeback is not None and not again.writeback.committed and world.remote.sha() == tip
    assert world.writes() == writes
    assert [r.drift for r in again.reports] == [(DriftEntry(f"Workspace/{ns}/phi", (
        "metadata.annotations.gitops.kaito.sh/source-path",), ("kubectl-annotate",)),)]  # since: set when written

    # The model says correct: the next pass reverts the edit, and the status drops the drift entry.
    dev.pull()
    dev.write(f"models/{ns}/phi.yaml", world.model("phi").replace(
        "  name: phi\n", "  name: phi\n  annotations: {gitops.kaito.sh/drift: correct}\n"))
    dev.commit("phi: drift: correct")
    fixed = world.git_pass("2025-01-01T00:04:00Z")
    assert fixed.sync.drift_corrected == 1
    assert "drift" not in yaml.safe_load(world.remote.show(f"status/{ns}/phi.yaml"))



def test_what_holds_back_more_than_one_model_is_in_status_md_until_fixed(world: World) -> None:
    """"Why isn't it syncing?" answered in Git: a broken gitops-kaito.yaml and the prune guard are listed in
    STATUS.md with file and line; a model's own broken file stays in its row; fixing them clears the list."""
    dev, ns = world.dev, world.ns
    for name in ("phi", "qwen"):
        dev.write(f"models/{ns}/{name}.yaml", world.model(name))
    dev.commit("two models")
    world.git_pass("2025-01-01T00:00:00Z")
    assert "Problems in the last pass" not in world.remote.show("status/STATUS.md")

    dev.pull()  # the pass pushed a status commit
    dev.write("gitops-kaito.yaml", "apiVersion: gitops.kaito.sh/v1alpha1\nkind: Config\nprune:\n  maxShar: 0.9\n")
    dev.write(f"models/{ns}/bad.yaml", world.model("bad", "no-such-model"))
    dev.commit("a typo in the config, and a model that does not exist")
    world.git_pass("2025-01-01T00:01:00Z")
    md = world.remote.show("status/STATUS.md")
    problems = md.split("**Problems in the last pass**", 1)[1].split("| Model |", 1)[0]
    assert "gitops-kaito.yaml:4" in problems and "maxShar" in problems, md
    assert "no-such-model" not in problems, "a model's own error belongs in its row"
    assert "no-such-model" in next(ln for ln in md.splitlines() if ln.startswith(f"| {ns}/bad "))

    dev.pull()
    dev.write("gitops-kaito.yaml", "apiVersion: gitops.kaito.sh/v1alpha1\nkind: Config\n")
    dev.remove(f"models/{ns}/bad.yaml")
    dev.remove(f"models/{ns}/phi.yaml")
    dev.remove(f"models/{ns}/qwen.yaml")
    dev.commit("fix the config; remove every model (the prune guard refuses)")
    world.git_pass("2025-01-01T00:02:00Z")
    md = world.remote.show("status/STATUS.md")
    assert "**Problems in the last pass**" in md and "prune guard: refusing to delete 2 of 2" in md, md
    assert "maxShar" not in md
