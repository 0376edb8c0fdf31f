"""End to end with Git on both ends: a bare remote, developers pushing, the API emulator, status commits back.

KAITO's progress is played by a test client that writes Workspace status the way FACTS.md §5.5 describes.
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

from gitops_kaito.cli import main
from gitops_kaito.gitsync import GitSyncSettings, run_git_pass
from gitops_kaito.history import model_history
from gitops_kaito.kube import Kube, RetryPolicy
from gitops_kaito.resources import data_path
from gitops_kaito.sandbox.apiserver import ApiServer
from gitops_kaito.status import EndpointCheck
from tests.gitfixtures import Developer, Remote, make_remote, model_file

pytestmark = [pytest.mark.cluster, pytest.mark.emulator_only]

UA = "gitops-kaito/"
WRITES = ("create", "update", "patch", "delete", "deletecollection")


@dataclass
class World:
    server: ApiServer
    kube: Kube
    admin: client.ApiClient
    remote: Remote
    dev: Developer
    settings: GitSyncSettings
    kubeconfig: Path

    def writes(self) -> int:
        return self.server.request_log.count(user_agent_prefix=UA, verbs=WRITES)

    def kaito_ready(self, name: str, ns: str = "ml") -> None:
        """Play KAITO: the Workspace reaches WorkspaceSucceeded=True and state Ready for its generation."""
        api = client.CustomObjectsApi(self.admin)
        ws = api.get_namespaced_custom_object("kaito.sh", "v1beta1", ns, "workspaces", name)
        gen = ws["metadata"].get("generation", 1)
        conds = [{"type": t, "status": "True", "reason": r, "message": "", "observedGeneration": gen,
                  "lastTransitionTime": "2025-01-01T00:00:00Z"}
                 for t, r in (("NodeClaimReady", "NodeClaimsReady"), ("NodesReady", "NodesReady"),
                              ("ResourceReady", "workspaceResourceStatusSuccess"),
                              ("InferenceReady", "WorkspaceInferenceStatusSuccess"),
                              ("WorkspaceSucceeded", "workspaceSucceeded"))]
        api.patch_namespaced_custom_object_status("kaito.sh", "v1beta1", ns, "workspaces", name,
                                                  {"status": {"conditions": conds, "state": "Ready"}})
        client.CoreV1Api(self.admin).create_namespaced_service(ns, {  # KAITO's Service (FACTS.md §7)
            "metadata": {"name": name}, "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 5000}],
                                                 "selector": {"kaito.sh/workspace": name}}})

    def workspace(self, name: str, ns: str = "ml") -> dict[str, Any] | None:
        try:
            return client.CustomObjectsApi(self.admin).get_namespaced_custom_object(  # type: ignore[no-any-return]
                "kaito.sh", "v1beta1", ns, "workspaces", name)
        except client.ApiException as err:
            if err.status == 404:
                return None
            raise


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    server = ApiServer().start()
    kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
    kube = Kube.connect(kubeconfig, retry=RetryPolicy(base_delay_s=0.01, max_delay_s=0.05))
    admin = client.ApiClient(kube.api_client.configuration)
    admin.user_agent = "test-admin/1.0"
    ext = client.ApiextensionsV1Api(admin)
    for path in sorted(data_path("deploy/crds").glob("*.yaml")):
        ext.create_custom_resource_definition(yaml.safe_load(path.read_text()))
    client.CoreV1Api(admin).create_namespace({"metadata": {"name": "ml"}})
    remote = make_remote(tmp_path)
    dev = Developer(remote, tmp_path / "dev")
    dev.write("README.md", "models\n")
    dev.commit("init")
    settings = GitSyncSettings(url=remote.url, cache_dir=tmp_path / "cache")
    try:
        yield World(server, kube, admin, remote, dev, settings, kubeconfig)
    finally:
        kube.close()
        server.stop()


def served(api: Any, ns: str, name: str) -> EndpointCheck:
    return EndpointCheck(True, f"served-{name}")


def test_merged_model_ends_ready_and_revert_prunes(world: World) -> None:
    dev = world.dev
    # A second model keeps the revert under the prune guard's default share (0.5 of the managed models).
    dev.write("models/ml/qwen.yaml", model_file("qwen", "qwen2.5-coder-7b-instruct"))
    dev.commit("add qwen")
    dev.write("models/ml/phi.yaml", model_file("phi"))
    added = dev.commit("add phi")

    first = run_git_pass(world.settings, world.kube, now="2025-01-01T00:00:00Z", endpoint_checker=served)
    assert first.revision == f"main@sha1:{added}"
    assert first.sync.created >= 1 and world.workspace("phi") is not None
    assert first.writeback is not None and first.writeback.committed
    doc = yaml.safe_load(world.remote.show("status/ml/phi.yaml"))
    assert doc["state"] in ("Pending", "Provisioning") and doc["revision"] == first.revision

    world.kaito_ready("phi")
    second = run_git_pass(world.settings, world.kube, now="2025-01-01T00:05:00Z", endpoint_checker=served)
    assert second.revision == first.revision  # our own status commit is not a change of desired state
    doc = yaml.safe_load(world.remote.show("status/ml/phi.yaml"))
    assert doc["state"] == "Ready" and doc["since"] == "2025-01-01T00:05:00Z"
    assert doc["endpointCheck"] == {"answers": True, "servedModel": "served-phi"}
    table = world.remote.show("status/STATUS.md")
    assert "2 models: 1 Ready, 1 P" in table
    assert "[ok] Ready" in next(ln for ln in table.splitlines() if ln.startswith("| ml/phi"))
    tip = git.Repo(world.remote.bare).commit("main")
    assert tip.author.name == "gitops-kaito" and f"Gitops-Kaito-Revision: {first.revision}" in tip.message

    # A pass with no change: no applies, no commit.
    tip_sha, writes = world.remote.sha(), world.writes()
    third = run_git_pass(world.settings, world.kube, now="2025-01-01T00:09:00Z", endpoint_checker=served)
    assert third.writeback is not None and not third.writeback.committed
    assert world.remote.sha() == tip_sha and world.writes() == writes

    # git revert of the commit that added the model prunes it; status says so.
    dev.pull()
    with dev.repo.git.custom_environment(GIT_AUTHOR_NAME="Dev", GIT_AUTHOR_EMAIL="d@x",
                                         GIT_COMMITTER_NAME="Dev", GIT_COMMITTER_EMAIL="d@x"):
        dev.repo.git.revert("--no-edit", added)
    dev.push()
    fourth = run_git_pass(world.settings, world.kube, now="2025-01-01T00:10:00Z", endpoint_checker=served)
    assert fourth.sync.pruned >= 1 and world.workspace("phi") is None
    assert fourth.revision == f"main@sha1:{dev.repo.head.commit.hexsha}"
    names = git.Repo(world.remote.bare).git.ls_tree("-r", "--name-only", "main", "--", "status").splitlines()
    assert names == ["status/STATUS.md", "status/ml/qwen.yaml"]
    assert "ml/phi" not in world.remote.show("status/STATUS.md")
    assert "Pruned: ml.phi" in git.Repo(world.remote.bare).commit("main").message
    events = model_history(git.Repo(world.remote.bare), "ml/phi", "main")
    assert [e.state for e in events][:2] == ["Removed", "Ready"]


def test_status_only_commit_does_not_trigger_applies(world: World) -> None:
    dev = world.dev
    dev.write("models/ml/phi.yaml", model_file("phi"))
    dev.commit("add phi")
    run_git_pass(world.settings, world.kube, now="2025-01-01T00:00:00Z", endpoint_checker=served)
    # Someone edits a status file by hand: a status-only commit.
    dev.pull()
    dev.write("status/ml/phi.yaml", "state: Ready\n")
    dev.commit("tamper with status")
    writes = world.writes()
    again = run_git_pass(world.settings, world.kube, now="2025-01-01T00:01:00Z", endpoint_checker=served)
    assert world.writes() == writes  # nothing applied
    assert again.sync.created == again.sync.updated == 0
    assert again.writeback is not None and again.writeback.committed  # the report is restored
    assert yaml.safe_load(world.remote.show("status/ml/phi.yaml"))["model"] == "ml/phi"


def test_push_race_during_a_pass(world: World) -> None:
    dev = world.dev
    dev.write("models/ml/phi.yaml", model_file("phi"))
    dev.commit("add phi")
    raced: list[str] = []

    def race(attempt: int) -> None:
        if attempt == 1:
            dev.write("docs.md", "a developer's commit lands mid-push\n")
            raced.append(dev.commit("docs"))

    res = run_git_pass(world.settings, world.kube, now="2025-01-01T00:00:00Z", endpoint_checker=served,
                       before_push=race, sleep=lambda s: None)
    assert res.writeback is not None and res.writeback.attempts == 2
    log = [line.split()[0] for line in world.remote.log()]
    assert log[0] == res.writeback.sha and log[1] == raced[0]


def test_separate_status_branch_and_cli(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    dev = world.dev
    dev.write("models/ml/phi.yaml", model_file("phi"))
    main_sha = dev.commit("add phi")
    code = main(["sync", "--git-url", world.remote.url, "--status-branch", "gitops-status",
                 "--kubeconfig", str(world.kubeconfig), "--cache-dir", str(world.settings.cache_dir),
                 "-o", "json"])
    assert code in (0, 1)
    out = json.loads(capsys.readouterr().out)
    assert out["revision"] == f"main@sha1:{main_sha}"
    assert world.remote.sha("main") == main_sha  # the followed branch is untouched
    assert main(["status", "--git-url", world.remote.url, "--branch", "gitops-status", "-o", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [m["model"] for m in report["models"]] == ["ml/phi"]


def test_endpoint_check_goes_through_the_service_proxy(world: World) -> None:
    pytest.importorskip("gitops_kaito.endpoint")
    calls: list[tuple[str, str, str, str]] = []

    def proxy(ns: str, service: str, port: str, method: str, subpath: str, body: bytes) -> Any:
        calls.append((ns, service, port, subpath))
        if subpath.strip("/") == "v1/models":
            return 200, {"Content-Type": "application/json"}, json.dumps(
                {"object": "list", "data": [{"id": "phi-4-mini-instruct"}]}).encode()
        return 404, {}, b""

    world.server.set_proxy_handler(proxy)
    world.dev.write("models/ml/phi.yaml", model_file("phi"))
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


def test_one_model_changed_rewrites_its_status_file_only_and_a_noop_pass_lists_once_per_kind(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    from gitops_kaito.gitsource import GitSource

    dev = world.dev
    for name in ("a", "b", "c"):
        dev.write(f"models/ml/{name}.yaml", model_file(name))
    first_sha = dev.commit("three models")
    first = run_git_pass(world.settings, world.kube, now="2025-01-01T00:00:00Z", endpoint_checker=served)
    assert first.writeback is not None and first.writeback.committed
    before = {n: world.remote.show(f"status/ml/{n}.yaml") for n in ("a", "b", "c")}

    dev.pull()
    # A mutable change (an annotation the Workspace carries): b's objects are updated in place.
    dev.write("models/ml/b.yaml", model_file("b").replace("  namespace: ml\n",
                                                          "  namespace: ml\n  annotations:\n    team: blue\n"))
    second_sha = dev.commit("change b only")
    second = run_git_pass(world.settings, world.kube, now="2025-01-01T00:05:00Z", endpoint_checker=served)
    assert second.writeback is not None and second.writeback.committed
    commit = git.Repo(world.remote.bare).commit("main")
    assert sorted(commit.stats.files) == ["status/STATUS.md", "status/ml/b.yaml"]
    assert yaml.safe_load(world.remote.show("status/ml/b.yaml"))["revision"] == f"main@sha1:{second_sha}"
    for name in ("a", "c"):  # untouched models keep the revision last applied to them, byte for byte
        assert world.remote.show(f"status/ml/{name}.yaml") == before[name]
        assert yaml.safe_load(before[name])["revision"] == f"main@sha1:{first_sha}"

    remote_calls: list[str] = []
    original = GitSource._run

    def counting(self: GitSource, repo: Any, args: Any, network: bool = False, **kw: Any) -> str:
        if network:
            remote_calls.append(args[0])
        return original(self, repo, args, network=network, **kw)

    monkeypatch.setattr(GitSource, "_run", counting)
    world.server.request_log.clear()
    third = run_git_pass(world.settings, world.kube, now="2025-01-01T00:09:00Z", endpoint_checker=served)
    assert third.writeback is not None and not third.writeback.committed
    ours = world.server.request_log.select(user_agent_prefix=UA)
    assert [e.verb for e in ours].count("list") == len(ours) == 4  # ConfigMap, NodeClaim, Machine, Workspace
    assert remote_calls.count("fetch") == 1 and "ls-remote" not in remote_calls
    assert remote_calls.count("cat-file") == 1  # every status file read with one batch
