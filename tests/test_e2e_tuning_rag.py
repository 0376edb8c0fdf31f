"""TuningJob and RAGDeployment end to end: a bare git remote, the sandbox with its simulated KAITO (tuning Jobs, the
RAGEngine controller, model and RAG servers behind the service proxy), passes that apply and commit status.

A pull request's plan shows each with its cost; a pass applies it; it reaches KAITO's done state; status is
committed; a Succeeded run stays done over many passes (same Job) and its output reaches the adapter of the model
that names it; a RAG engine waits for its model, then binds to its endpoint and answers; suspend, drift and a git
revert behave as for models.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import git
import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException
from test_sandbox_tuning_rag import _proxy

from gitops_kaito.adapters.history import model_history
from gitops_kaito.adapters.kube import ApiRetry, Kube
from gitops_kaito.cli import main
from gitops_kaito.reconcile.gitsync import GitPassResult, GitSyncSettings, run_git_pass
from tests.fixtures_cluster import ClusterTarget, skip_on_real, wait_until
from tests.gitfixtures import Developer, make_remote
from tests.test_gitsync import World as GitWorld

pytestmark = pytest.mark.cluster

OUTPUT = "example.azurecr.io/adapters/phi3:1"


class World(GitWorld):
    """test_gitsync's world (target, clients, remote, developer, settings) with the simulated KAITO's tuning runs and
    RAG engines to look at; passes use the real endpoint checks."""

    def git_pass(self, now: str = "2025-01-01T00:00:00Z", **kwargs: Any) -> GitPassResult:
        return run_git_pass(self.settings, self.kube, now=now, **kwargs)

    def until(self, what: str, done: Any) -> GitPassResult:
        """Pass until done(result) holds (the simulated KAITO moves between passes)."""
        def attempt() -> GitPassResult | None:
            res = self.git_pass()
            return res if done(res) else None
        return wait_until(attempt, timeout=60, interval=0.05, what=what)

    def status(self, name: str) -> dict[str, Any]:
        return dict(yaml.safe_load(self.remote.show(f"status/{self.ns}/{name}.yaml")))

    def job_uid(self, name: str) -> str:
        """The uid of the run's Job; "" while KAITO is between deleting one and creating the next."""
        try:
            return str(client.BatchV1Api(self.admin).read_namespaced_job(name, self.ns).metadata.uid)
        except ApiException as err:
            if err.status == 404:
                return ""
            raise

    def plan_markdown(self, base: str) -> str:
        out = io.StringIO()
        with redirect_stdout(out):
            code = main(["plan", "--repo", str(self.dev.path), "--base", base, "--format", "markdown"])
        assert code == 1, out.getvalue()
        return out.getvalue()

    def revert(self, *shas: str) -> None:
        """git revert of these commits (newest first), pushed."""
        self.dev.pull()
        with self.dev.repo.git.custom_environment(GIT_AUTHOR_NAME="Dev", GIT_AUTHOR_EMAIL="d@x",
                                                  GIT_COMMITTER_NAME="Dev", GIT_COMMITTER_EMAIL="d@x"):
            self.dev.repo.git.revert("--no-edit", *shas)
        self.dev.push()


@pytest.fixture
def world(cluster: ClusterTarget, tmp_path: Path) -> Iterator[World]:
    skip_on_real(cluster, "needs the simulated KAITO's tuning runs and RAG engines")
    kube = Kube.connect(cluster.kubeconfig, context=cluster.context,
                        retry=ApiRetry(base_delay_s=0.01, max_delay_s=0.05))
    admin = cluster.api_client("test-admin/1.0")
    remote = make_remote(tmp_path)
    dev = Developer(remote, tmp_path / "dev")
    dev.write("gitops-kaito.yaml", "apiVersion: gitops.kaito.sh/v1alpha1\nkind: Config\nprune: {allowAll: true}\n")  # the reverts below remove every request
    dev.commit("init")
    try:
        yield World(cluster, kube, admin, remote, dev, GitSyncSettings(url=remote.url, cache_dir=tmp_path / "c"))
    finally:
        kube.close()
        admin.close()


def tuning_file(ns: str, suspend: bool = False) -> str:
    return f"""apiVersion: gitops.kaito.sh/v1alpha1
kind: TuningJob
metadata:
  name: tune
  namespace: {ns}
spec:
  model: phi-3-mini-128k-instruct
  method: qlora
  input:
    urls: ["https://huggingface.co/datasets/philschmid/dolly-15k-oai-style/resolve/main/train.parquet"]
  output:
    image: {OUTPUT}
    pushSecret: acr-push
  suspend: {str(suspend).lower()}
"""


def model_file(ns: str, name: str, model: str, adapter_from: str | None = None) -> str:
    adapters = f"  adapters:\n  - name: tuned\n    tuning: {adapter_from}\n" if adapter_from else ""
    return (f"apiVersion: gitops.kaito.sh/v1alpha1\nkind: ModelDeployment\nmetadata:\n  name: {name}\n"
            f"  namespace: {ns}\nspec:\n  model: {model}\n{adapters}")


def test_a_tuning_run_end_to_end(world: World) -> None:
    ns, dev = world.ns, world.dev
    base = dev.repo.head.commit.hexsha
    dev.write(f"models/{ns}/tune.yaml", tuning_file(ns))
    dev.write(f"models/{ns}/phi3.yaml", model_file(ns, "phi3", "phi-3-mini-128k-instruct", adapter_from="tune"))
    added = dev.commit("add a tuning run and the model that serves its adapter")

    # The pull request's plan: the run with its SKU and price, the model waiting for it.
    comment = world.plan_markdown(base)
    row = next(ln for ln in comment.splitlines() if f"`{ns}.tune`" in ln)
    assert "qlora tuning" in row and "Standard_NC24ads_A100_v4" in row and "$3.67" in row
    assert f"applied once {ns}.tune is Succeeded" in comment

    first = world.git_pass()
    assert world.get("workspaces", "tune") is not None and world.get("workspaces", "phi3") is None
    assert first.writeback is not None and first.writeback.committed

    done = world.until("the run Succeeded and the model Ready", lambda r: {
        rep.model_id: rep.state for rep in r.reports} == {f"{ns}.tune": "Succeeded", f"{ns}.phi3": "Ready"})
    assert done.revision == f"main@sha1:{added}"
    status = world.status("tune")
    assert (status["state"], status["kind"], status["output"]) == ("Succeeded", "TuningJob", OUTPUT)
    assert "| " + f"{ns}/tune (TuningJob) | [ok] Succeeded" in world.remote.show("status/STATUS.md")
    ws = world.get("workspaces", "phi3")
    assert ws is not None and ws["inference"]["adapters"] == [
        {"source": {"name": "tuned", "image": OUTPUT, "imagePullSecrets": ["acr-push"]}}]

    # Done is done: many passes later the same Job, nothing written, nothing committed.
    uid, tip = world.job_uid("tune"), world.remote.sha()
    for _ in range(5):
        again = world.git_pass()
        assert not again.sync.plan.has_changes and not again.writeback.committed  # type: ignore[union-attr]
    assert world.job_uid("tune") == uid and world.remote.sha() == tip

    # A hand edit of the run's spec makes KAITO train again (a new Job); gitops-kaito reports the drift and never
    # corrects it, which would be one more run. (The output image: KAITO's webhook refuses an edit of an immutable
    # field such as the labelSelector.)
    client.CustomObjectsApi(world.admin).patch_namespaced_custom_object(
        "kaito.sh", "v1beta1", ns, "workspaces", "tune", {"tuning": {"output": {"image": OUTPUT + "-edited"}}})
    rerun = wait_until(lambda: (u := world.job_uid("tune")) != uid and u, what="KAITO's run after the hand edit")
    drifted = world.git_pass()
    tune_changes = drifted.sync.plan.for_model(f"{ns}.tune")
    assert any(c.drift_reported for c in tune_changes) and drifted.sync.updated == 0
    assert world.job_uid("tune") == rerun
    edited = world.get("workspaces", "tune")
    assert edited is not None and edited["tuning"]["output"]["image"] == OUTPUT + "-edited"

    # A changed request is a new run: the pull request's plan says so, the pass replaces the Workspace and KAITO
    # trains again, to Succeeded; history has the run's states from the status commits.
    dev.pull()
    before = dev.repo.head.commit.hexsha
    dev.write(f"models/{ns}/tune.yaml", tuning_file(ns).replace("train.parquet", "train-v2.parquet"))
    changed = dev.commit("train on new data")
    assert "🔁 new run" in world.plan_markdown(before)
    second = world.until("the new run Succeeded", lambda r: r.revision == f"main@sha1:{changed}" and any(
        rep.model_id == f"{ns}.tune" and rep.state == "Succeeded" for rep in r.reports) and world.job_uid(
        "tune") not in ("", rerun))
    assert second.sync.replaced == 0  # the replace happened in an earlier pass of this loop
    events = model_history(git.Repo(world.remote.bare), f"{ns}/tune", "main")
    assert "Succeeded" in [e.state for e in events]

    # Suspend removes the run; the git revert of the addition prunes everything it made.
    dev.pull()
    dev.write(f"models/{ns}/tune.yaml", tuning_file(ns, suspend=True))
    paused = dev.commit("suspend the run")
    world.dev.pull()
    suspended = world.git_pass()
    assert world.get("workspaces", "tune") is None and world.status("tune")["state"] == "Suspended"
    assert suspended.sync.pruned >= 1
    world.revert(paused, changed, added)
    world.git_pass()
    assert world.get("workspaces", "tune") is None and world.get("workspaces", "phi3") is None
    names = git.Repo(world.remote.bare).git.ls_tree("-r", "--name-only", "main", "--", "status").splitlines()
    assert names == ["status/STATUS.md"]


def rag_file(ns: str, window: int = 4096) -> str:
    return f"""apiVersion: gitops.kaito.sh/v1alpha1
kind: RAGDeployment
metadata:
  name: docs
  namespace: {ns}
spec:
  compute: {{instanceType: Standard_NV36ads_A10_v5}}
  embedding: {{local: {{model: BAAI/bge-small-en-v1.5}}}}
  llm: {{model: phi}}
  contextWindowSize: {window}
"""


def test_a_rag_engine_waits_for_its_model_then_binds_to_it(world: World) -> None:
    ns, dev = world.ns, world.dev
    base = dev.repo.head.commit.hexsha
    dev.write(f"models/{ns}/phi.yaml", model_file(ns, "phi", "phi-4-mini-instruct"))
    dev.write(f"models/{ns}/docs.yaml", rag_file(ns))
    added = dev.commit("add a model and a RAG engine on it")

    comment = world.plan_markdown(base)
    row = next(ln for ln in comment.splitlines() if f"`{ns}.docs`" in ln)
    assert "RAG" in row and "Standard_NV36ads_A10_v5" in row and "$" in row
    assert f"applied once {ns}.phi is Ready" in comment

    world.git_pass()
    assert world.get("workspaces", "phi") is not None and world.get("ragengines", "docs") is None

    done = world.until("the model and the RAG engine Ready", lambda r: {
        rep.model_id: rep.state for rep in r.reports} == {f"{ns}.phi": "Ready", f"{ns}.docs": "Ready"})
    assert done.revision == f"main@sha1:{added}"
    rag = world.get("ragengines", "docs")
    assert rag is not None
    url = f"http://phi.{ns}.svc.cluster.local:80/v1/chat/completions"
    assert rag["spec"]["inferenceService"] == {"url": url, "contextWindowSize": 4096}
    status = world.status("docs")
    assert status["llm"] == url and status["endpointCheck"]["answers"] is True
    code, reply = _proxy(world.admin, "POST", ns, "docs", "v1/chat/completions",
                         {"messages": [{"role": "user", "content": "hello"}]})
    assert code == 200 and reply["model"] == "phi-4-mini-instruct"

    # A hand edit of a field we manage is drift, corrected on the next pass.
    client.CustomObjectsApi(world.admin).patch_namespaced_custom_object(
        "kaito.sh", "v1beta1", ns, "ragengines", "docs", {"spec": {"inferenceService": {"contextWindowSize": 99}}})
    corrected = world.git_pass()
    assert corrected.sync.drift_corrected == 1
    assert world.get("ragengines", "docs")["spec"]["inferenceService"]["contextWindowSize"] == 4096  # type: ignore[index]

    # Suspend removes the engine (its model stays); the revert of the addition prunes both.
    dev.pull()
    dev.write(f"models/{ns}/docs.yaml", rag_file(ns) + "  suspend: true\n")
    paused = dev.commit("suspend the RAG engine")
    world.git_pass()
    assert world.get("ragengines", "docs") is None and world.get("workspaces", "phi") is not None
    assert world.status("docs")["state"] == "Suspended"
    world.revert(paused, added)
    world.git_pass()
    assert world.get("ragengines", "docs") is None and world.get("workspaces", "phi") is None
    wait_until(lambda: not client.CustomObjectsApi(world.admin).list_cluster_custom_object(
        "karpenter.sh", "v1", "nodeclaims", label_selector=f"kaito.sh/ragengine=docs,kaito.sh/ragenginenamespace={ns}"
    )["items"], what="the RAG engine's NodeClaim released")
