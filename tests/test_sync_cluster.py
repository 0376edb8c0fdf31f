"""Sync passes through the real kubernetes client: create, smallest-patch update, replace policy, prune and its guard,
drift, no-op passes, isolation, missing CRDs.

The target is a private bare emulator (our CRDs installed via the API, namespace `ml`) by default, or a real cluster
with GITOPS_KAITO_TEST_KUBECONFIG (a throwaway namespace, its CRDs never touched). Request counts, injected faults and
a cluster missing CRDs need the emulator's hooks: those parts skip on a real cluster, the behaviour around them runs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import yaml
from kubernetes import client

from gitops_kaito.adapters.events import flush
from gitops_kaito.adapters.kube import KAITO_MISSING, ApiRetry, Kube
from gitops_kaito.cli import main
from gitops_kaito.core.plan import Action
from gitops_kaito.model.objects import ANNOTATION_DIGEST, MANAGED_KINDS, ObjectRef
from gitops_kaito.model.ownership import ANNOTATION_REVISION, LABEL_MODEL
from gitops_kaito.model.resources import data_path
from gitops_kaito.reconcile.apply import ApplyOptions
from gitops_kaito.reconcile.sync import GETS_PER_KIND, SyncError, plan_repository, run_pass
from gitops_kaito.repo.config import API_VERSION as CONFIG_API_VERSION
from gitops_kaito.repo.config import KIND as CONFIG_KIND
from gitops_kaito.sandbox.apiserver import ApiServer, Fault
from tests.fixtures_cluster import ClusterTarget, private_emulator, skip_on_real, wait_until

pytestmark = pytest.mark.cluster

UA = "gitops-kaito/"
WRITES = ("create", "update", "patch", "delete", "deletecollection")
REV1, REV2, REV3 = "main@sha1:" + "1" * 40, "main@sha1:" + "2" * 40, "main@sha1:" + "3" * 40
HEADER = "apiVersion: gitops.kaito.sh/v1alpha1\nkind: ModelDeployment\n"
COUNTS = "counts the requests the emulator logged"
FAULTS = "injects faults into the emulator"


class Env:
    """A target with KAITO's and Karpenter's CRDs and a namespace, a repo dir and a reconciler client."""

    def __init__(self, tmp: Path, target: ClusterTarget) -> None:
        self.target = target
        self.ns = target.namespace
        self.kubeconfig = target.kubeconfig
        self.kube = Kube.connect(self.kubeconfig, context=target.context,
                                 retry=ApiRetry(base_delay_s=0.01, max_delay_s=0.05))
        # A separate client with another User-Agent plays the people (and, on a bare emulator, the controllers).
        self.admin = target.api_client("test-admin/1.0")
        self._since = 0.0
        self.repo = tmp / "repo"
        self.models = self.repo / "models" / self.ns
        self.models.mkdir(parents=True)

    @property
    def server(self) -> ApiServer:
        assert self.target.emulator is not None, "an emulator-only step ran on a real cluster"
        return self.target.emulator

    def close(self) -> None:
        self.kube.close()
        self.admin.close()

    def id(self, name: str) -> str:
        return f"{self.ns}.{name}"

    def model(self, name: str, spec: str) -> Path:
        path = self.models / f"{name}.yaml"
        path.write_text(f"{HEADER}metadata:\n  name: {name}\nspec:\n{spec}")
        return path

    def config(self, text: str) -> None:
        (self.repo / "gitops-kaito.yaml").write_text(f"apiVersion: {CONFIG_API_VERSION}\nkind: {CONFIG_KIND}\n{text}")

    def three_models(self) -> None:
        self.model("phi", "  model: phi-4-mini-instruct\n  config: {max-model-len: 4096}\n")
        self.model("qwen", "  model: qwen2.5-coder-7b-instruct\n")
        self.model("mistral", "  model: mistral-7b-instruct\n")

    def sync(self, revision: str = REV1, **kwargs: Any) -> Any:
        """A pass and its Events (which the connection's sender threads post after it returns)."""
        result = run_pass(self.repo, self.kube, revision=revision, **kwargs)
        assert flush(self.kube, 30)
        return result

    def cli(self) -> list[str]:
        return ["--repo", str(self.repo), *self.target.cli_args()]

    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.admin)

    def workspace(self, name: str) -> dict[str, Any]:
        return self.custom().get_namespaced_custom_object("kaito.sh", "v1beta1", self.ns, "workspaces", name)

    def configmap(self, name: str) -> Any:
        return client.CoreV1Api(self.admin).read_namespaced_config_map(name, self.ns)

    def nodeclaims(self, name: str) -> list[dict[str, Any]]:
        """The NodeClaims our model `name` owns (cluster-scoped: other tests' and KAITO's are not ours)."""
        return self.custom().list_cluster_custom_object(  # type: ignore[no-any-return]
            "karpenter.sh", "v1", "nodeclaims", label_selector=f"{LABEL_MODEL}={self.id(name)}")["items"]

    def mark(self) -> None:
        """Count requests from now on (by arrival time: the log entry of a reply may land a moment late)."""
        self._since = time.time()

    def requests(self, verbs: tuple[str, ...] | None = None) -> list[Any]:
        return [e for e in self.server.request_log.select(user_agent_prefix=UA, verbs=verbs)
                if e.time >= self._since]

    def write_requests(self) -> list[Any]:
        """Requests that change something: a server-side dry run (dryRun=All) persists nothing."""
        return [e for e in self.requests(WRITES) if "dryRun=All" not in e.query]

    def writes(self, expect: int = 0) -> int:
        """Writes since mark(), once the pass's last request is in the log (the emulator logs after replying)."""
        if expect:
            wait_until(lambda: len(self.write_requests()) >= expect, timeout=10, what=f"{expect} logged writes")
        else:
            wait_until(lambda: len(self.requests(("list",))) >= len(MANAGED_KINDS), timeout=10,
                       what="the pass's LISTs logged")
        return len(self.write_requests())

    def names(self, kind: str) -> set[str]:
        """What stands in the namespace: an object being deleted (a controller's finalizer holds it) is gone."""
        if kind == "ConfigMap":
            found = [i.to_dict() for i in client.CoreV1Api(self.admin).list_namespaced_config_map(self.ns).items]
        else:
            found = self.custom().list_namespaced_custom_object("kaito.sh", "v1beta1", self.ns, "workspaces")["items"]
        return {i["metadata"]["name"] for i in found
                if i["metadata"]["name"] != "kube-root-ca.crt" and not i["metadata"].get("deletion_timestamp")
                and not i["metadata"].get("deletionTimestamp")}


@pytest.fixture
def env(kaito_cluster: ClusterTarget, tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path, kaito_cluster)
    yield e
    e.close()


def test_first_sync_creates_and_a_second_pass_plans_nothing(env: Env) -> None:
    env.three_models()
    first = env.sync()
    assert (first.created, first.updated, first.pruned, first.failed) == (4, 0, 0, 0)
    assert {o.model_id: o.state for o in first.outcomes} == {env.id("mistral"): "Applied", env.id("phi"): "Applied",
                                                             env.id("qwen"): "Applied"}
    assert env.names("Workspace") == {"phi", "qwen", "mistral"}
    assert env.names("ConfigMap") == {"phi-inference-config"}
    ws = env.workspace("phi")
    assert ws["metadata"]["labels"][LABEL_MODEL] == env.id("phi")
    assert ws["metadata"]["annotations"][ANNOTATION_REVISION] == REV1
    assert ws["metadata"]["annotations"][ANNOTATION_DIGEST].startswith("sha256:")
    assert ws["inference"]["config"] == "phi-inference-config"

    second = env.sync(revision=REV2)  # a new commit that changes nothing for these models
    assert not second.plan.has_changes, [(str(c.ref), c.patch) for c in second.plan.pending]
    assert (second.created, second.updated, second.pruned, second.failed) == (0, 0, 0, 0)


def test_a_settled_pass_writes_nothing_and_lists_once_per_kind(env: Env) -> None:
    skip_on_real(env.target, COUNTS)
    env.three_models()
    env.sync()
    env.mark()
    assert not env.sync(revision=REV2).plan.has_changes
    assert env.writes() == 0
    lists = env.requests(("list",))
    assert sorted(e.path for e in lists) == ["/api/v1/configmaps", "/apis/kaito.sh/v1beta1/inferencesets",
                                             "/apis/kaito.sh/v1beta1/ragengines",
                                             "/apis/kaito.sh/v1beta1/workspaces",
                                             "/apis/karpenter.sh/v1/nodeclaims",
                                             "/apis/karpenter.sh/v1alpha5/machines"]
    assert len(env.requests()) == len(MANAGED_KINDS) == 6  # discovery is cached: the LISTs are all


def test_editing_a_request_updates_with_the_smallest_patch(env: Env) -> None:
    env.three_models()
    env.sync()
    ws_version = env.workspace("phi")["metadata"]["resourceVersion"]
    env.model("phi", "  model: phi-4-mini-instruct\n  config: {max-model-len: 8192}\n")
    env.mark()
    result = env.sync(revision=REV2)
    (change,) = result.plan.pending
    assert (str(change.ref), change.action, change.drift) == (f"ConfigMap/{env.ns}/phi-inference-config",
                                                               Action.UPDATE, False)
    assert [op["path"] for op in change.patch] == ["/data/inference_config.yaml"]
    assert "8192" in env.configmap("phi-inference-config").data["inference_config.yaml"]
    assert result.updated == 1
    if env.target.bare:  # a controller may write the Workspace's status (a new resourceVersion) meanwhile
        assert env.workspace("phi")["metadata"]["resourceVersion"] == ws_version
        assert env.writes(expect=1) == 1


def test_a_preset_change_is_blocked_by_default_and_replaced_with_policy_auto(env: Env) -> None:
    env.model("phi", "  model: phi-4-mini-instruct\n")
    env.sync()
    uid = env.workspace("phi")["metadata"]["uid"]
    env.model("phi", "  model: phi-3.5-mini-instruct\n")
    blocked = env.sync(revision=REV2)
    outcome = blocked.outcome(env.id("phi"))
    assert outcome is not None and outcome.state == "Blocked"
    assert "inference.preset" in outcome.message and "replacePolicy: auto" in outcome.message
    assert env.workspace("phi")["inference"]["preset"]["name"] == "phi-4-mini-instruct"

    env.config("replacePolicy: auto\n")
    # A real KAITO holds the old Workspace with its finalizer until it has cleaned up: allow it time.
    replaced = env.sync(revision=REV3, options=ApplyOptions(replace_wait_s=60, poll_s=0.02))
    assert replaced.replaced == 1 and replaced.outcome(env.id("phi")).state == "Applied"  # type: ignore[union-attr]
    ws = env.workspace("phi")
    assert ws["inference"]["preset"]["name"] == "phi-3.5-mini-instruct"
    assert ws["metadata"]["uid"] != uid


def test_deleting_a_request_prunes_its_objects_and_nothing_else(env: Env) -> None:
    env.three_models()
    env.sync()
    if env.target.bare:  # play KAITO: its own NodeClaim for the Workspace, without our labels
        env.custom().create_cluster_custom_object("karpenter.sh", "v1", "nodeclaims", {
            "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
            "metadata": {"name": "ws0a1b2c3d4", "labels": {"kaito.sh/workspace": "phi",
                                                           "kaito.sh/workspacenamespace": env.ns}},
            "spec": {"nodeClassRef": {"group": "kaito.sh", "kind": "KaitoNodeClass", "name": "default"},
                     "requirements": [{"key": "node.kubernetes.io/instance-type", "operator": "In",
                                       "values": ["Standard_NC24ads_A100_v4"]}]}})
    # A person's ConfigMap that names the model but is not managed by us.
    client.CoreV1Api(env.admin).create_namespaced_config_map(env.ns, {"metadata": {"name": "notes", "labels": {
        LABEL_MODEL: env.id("phi")}}, "data": {"a": "b"}})
    (env.models / "phi.yaml").unlink()
    result = env.sync(revision=REV2)
    assert result.pruned == 2 and not result.errors
    assert [str(c.ref) for c in result.plan.pending] == [f"Workspace/{env.ns}/phi",
                                                         f"ConfigMap/{env.ns}/phi-inference-config"]
    assert env.names("Workspace") == {"qwen", "mistral"}
    assert env.names("ConfigMap") == {"notes"}
    if env.target.bare:
        assert env.custom().get_cluster_custom_object("karpenter.sh", "v1", "nodeclaims", "ws0a1b2c3d4")
    assert result.outcome(env.id("phi")).state == "Pruned"  # type: ignore[union-attr]


def test_the_prune_guard_holds_until_explicitly_allowed(env: Env) -> None:
    env.three_models()
    env.sync()
    for name in ("phi", "qwen"):
        (env.models / f"{name}.yaml").unlink()
    env.mark()
    refused = env.sync(revision=REV2)
    assert refused.pruned == 0
    assert any("refusing to delete 2 of 3 managed models" in e for e in refused.errors)
    assert refused.outcome(env.id("phi")).state == "Blocked"  # type: ignore[union-attr]
    assert env.names("Workspace") == {"phi", "qwen", "mistral"}
    if env.target.emulator is not None:
        assert env.writes() == 0
    allowed = env.sync(revision=REV2, allow_mass_prune=True)
    assert allowed.pruned == 3
    assert env.names("Workspace") == {"mistral"}


def test_a_repo_whose_config_is_broken_never_prunes(env: Env) -> None:
    env.three_models()
    env.sync()
    (env.models / "phi.yaml").unlink()
    env.config("prune: [not, a, mapping\n")
    result = env.sync(revision=REV2)
    assert result.pruned == 0 and result.errors
    assert "phi" in env.names("Workspace")


def test_a_hand_edit_is_reverted_and_reported_as_drift(env: Env) -> None:
    env.three_models()
    env.sync()
    client.CoreV1Api(env.admin).patch_namespaced_config_map(
        "phi-inference-config", env.ns, {"data": {"inference_config.yaml": "vllm: {max-model-len: 1}\n"}},
        field_manager="kubectl-edit")
    env.custom().patch_namespaced_custom_object(
        "kaito.sh", "v1beta1", env.ns, "workspaces", "qwen", {"metadata": {"labels": {"team": "search"}}},
        field_manager="kubectl-label")  # a field we do not manage: not drift
    result = env.sync(revision=REV1)
    (change,) = result.plan.pending
    assert str(change.ref) == f"ConfigMap/{env.ns}/phi-inference-config" and change.drift
    assert result.drift_corrected == 1
    assert result.outcome(env.id("phi")).message == (  # type: ignore[union-attr]
        f"1 object(s) written; drift corrected: ConfigMap/{env.ns}/phi-inference-config")
    assert "4096" in env.configmap("phi-inference-config").data["inference_config.yaml"]
    assert env.workspace("qwen")["metadata"]["labels"]["team"] == "search"


def _object_writes(env: Env) -> list[Any]:
    """Writes to objects since mark(): an Event is a report, not a change of the cluster's state."""
    return [e for e in env.requests(WRITES) if "/events" not in e.path]


def _hand_edit_phi_and_qwen(env: Env) -> None:
    client.CoreV1Api(env.admin).patch_namespaced_config_map(
        "phi-inference-config", env.ns, {"data": {"inference_config.yaml": "vllm: {max-model-len: 1}\n"}},
        field_manager="kubectl-edit")
    env.custom().patch_namespaced_custom_object(
        "kaito.sh", "v1beta1", env.ns, "workspaces", "qwen",
        {"metadata": {"annotations": {"gitops.kaito.sh/source-path": "hand/made.yaml"}}},
        field_manager="kubectl-annotate")


def test_drift_report_leaves_a_hand_edit_in_place_until_the_model_says_correct(
        env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.config("drift: report\n")
    env.three_models()
    env.sync()
    _hand_edit_phi_and_qwen(env)
    counting = env.target.emulator is not None
    cm = f"ConfigMap/{env.ns}/phi-inference-config"
    for i, revision in enumerate((REV1, REV2)):  # a pass, then one on a new commit: the same drift, left twice
        env.mark()
        result = env.sync(revision=revision)
        assert not result.plan.has_changes and result.drift_corrected == 0 and result.updated == 0
        assert {(str(c.ref), c.fields, c.drift_by) for c in result.plan.drift_reported} == {
            (cm, ("data.inference_config.yaml",), ("kubectl-edit",)),
            (f"Workspace/{env.ns}/qwen", ("metadata.annotations.gitops.kaito.sh/source-path",),
             ("kubectl-annotate",))}
        assert "; 2 drifted, left in place (drift: report)" in result.summary()  # the daemon's log line
        phi = result.outcome(env.id("phi"))
        assert phi is not None and phi.state == "Unchanged"
        assert phi.message == (f"{cm}: drift reported, not corrected (drift: report): data.inference_config.yaml "
                               "changed in the cluster by kubectl-edit")
        if counting:
            assert env.writes() == (1 if i == 0 else 0)  # the first pass's one write: the DriftDetected Event
            assert _object_writes(env) == []
            assert sorted(e.verb for e in env.requests()) == (["create"] if i == 0 else []) + ["list"] * len(MANAGED_KINDS)
    assert env.configmap("phi-inference-config").data["inference_config.yaml"] == "vllm: {max-model-len: 1}\n"
    assert env.workspace("qwen")["metadata"]["annotations"]["gitops.kaito.sh/source-path"] == "hand/made.yaml"

    common = env.cli()
    assert main(["plan", *common]) == 0  # nothing a sync would write
    text = capsys.readouterr().out
    assert "No changes: nothing to write. 2 object(s) differ from the repository by drift" in text
    assert f"  ? drift   {cm}  (drift reported, not corrected (drift: report): data.inference_config.yaml" in text
    assert "2 drifted, reported and not corrected (drift: report)." in text
    assert main(["plan", "--format", "json", *common]) == 0
    plan_doc = json.loads(capsys.readouterr().out)
    assert plan_doc["hasChanges"] is False and plan_doc["counts"]["driftReported"] == 2
    assert {"object": cm, "model": env.id("phi"), "fields": ["data.inference_config.yaml"], "by": ["kubectl-edit"],
            "immutable": []} in plan_doc["driftReported"]
    assert main(["plan", "--format", "markdown", *common]) == 0
    md = capsys.readouterr().out
    assert f"| `{env.id('phi')}` | 🟣 drift (not corrected) |" in md
    assert f"> - `{cm}`: data.inference_config.yaml (by kubectl-edit)" in md
    assert main(["diff", *common]) == 1  # the cluster differs from the repository
    assert f"? drift {cm} ({env.id('phi')}): drift reported" in capsys.readouterr().out
    assert main(["sync", "-o", "json", *common]) == 0
    sync_doc = json.loads(capsys.readouterr().out)
    assert sync_doc["driftReported"] == 2 and sync_doc["updated"] == 0
    assert main(["sync", *common]) == 0
    sync_text = capsys.readouterr().out
    assert sync_text.count("drifted") == 1 and "; 2 drifted, left in place (drift: report)" in sync_text  # once

    # The model says correct: its hand edit is reverted as drift; the other model's stays reported.
    env.model("qwen", "  model: qwen2.5-coder-7b-instruct\n")
    (env.models / "qwen.yaml").write_text((env.models / "qwen.yaml").read_text().replace(
        "  name: qwen\n", "  name: qwen\n  annotations: {gitops.kaito.sh/drift: correct}\n"))
    corrected = env.sync(revision=REV3)
    assert corrected.drift_corrected == 1 and corrected.updated == 1
    assert [str(c.ref) for c in corrected.plan.drift_reported] == [cm]
    assert env.workspace("qwen")["metadata"]["annotations"]["gitops.kaito.sh/source-path"] == (
        f"models/{env.ns}/qwen.yaml")
    assert env.configmap("phi-inference-config").data["inference_config.yaml"] == "vllm: {max-model-len: 1}\n"


def test_drift_report_still_applies_a_change_of_the_model_file(env: Env) -> None:
    env.config("drift: report\n")
    env.three_models()
    env.sync()
    _hand_edit_phi_and_qwen(env)
    env.model("phi", "  model: phi-4-mini-instruct\n  config: {max-model-len: 8192}\n")
    result = env.sync(revision=REV2)
    (change,) = result.plan.pending
    assert str(change.ref) == f"ConfigMap/{env.ns}/phi-inference-config" and change.action == Action.UPDATE
    assert change.drift and not change.drift_reported  # the repository's change overwrites the hand edit
    assert "applying it also overwrites fields changed in the cluster" in change.reason
    assert result.updated == 1
    assert "8192" in env.configmap("phi-inference-config").data["inference_config.yaml"]
    assert [str(c.ref) for c in result.plan.drift_reported] == [f"Workspace/{env.ns}/qwen"]  # untouched: reported


def test_a_broken_model_does_not_block_a_good_one(env: Env) -> None:
    env.model("phi", "  model: phi-4-mini-instruct\n")
    env.model("qwen", "  model: qwen2.5-coder-7b-instruct\n")
    env.model("mistral", "  model: mistral-7b-instruct\n")
    env.sync()
    # phi's file breaks; qwen is untouched; mistral is edited; llama is new (and, on the emulator, the admission
    # webhook denies it).
    (env.models / "phi.yaml").write_text(HEADER + "metadata: {name: phi\nspec: [\n")
    env.model("mistral", "  model: mistral-7b-instruct\n  config: {max-model-len: 2048}\n")
    env.model("llama", "  model: qwen2.5-coder-32b-instruct\n")
    denied = env.target.emulator is not None
    if denied:
        env.server.faults.add(Fault(method="PATCH", path_regex=r"/workspaces/llama$", status=400, times=None,
                                    message='admission webhook "validation.workspace.kaito.sh" denied the request'))
    result = env.sync(revision=REV2)
    states = {o.model_id: o.state for o in result.outcomes}
    assert states == {env.id("phi"): "Invalid", env.id("mistral"): "Applied", env.id("qwen"): "Unchanged",
                      env.id("llama"): "Failed" if denied else "Applied"}
    if denied:
        assert "denied the request" in result.outcome(env.id("llama")).message  # type: ignore[union-attr]
    assert any(f"models/{env.ns}/phi.yaml" in e for e in result.errors)
    assert "phi" in env.names("Workspace")  # not pruned: its file is broken, not gone
    assert "mistral-inference-config" in env.names("ConfigMap")


def test_transient_errors_are_retried(env: Env) -> None:
    skip_on_real(env.target, FAULTS)
    env.model("phi", "  model: phi-4-mini-instruct\n")
    env.server.faults.add(Fault(method="GET", path_regex=r"/workspaces$", status=503, times=2))
    env.server.faults.add(Fault(method="PATCH", path_regex=r"/workspaces/phi$", status=429, times=1, retry_after=0))
    result = env.sync()
    assert result.created == 1 and result.failed == 0


def test_missing_crds_give_one_clear_error(kaito_cluster: ClusterTarget, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    skip_on_real(kaito_cluster, "a cluster without KAITO's CRDs (tests never uninstall a real cluster's)")
    with private_emulator(tmp_path / "crdless", crds=False) as target:
        e = Env(tmp_path, target)
        try:
            e.model("phi", "  model: phi-4-mini-instruct\n")
            with pytest.raises(SyncError) as err:
                plan_repository(e.repo, e.kube)
            assert str(err.value) == KAITO_MISSING
            code = main(["plan", *e.cli()])
            assert code == 2
            assert capsys.readouterr().err.strip() == f"error: {KAITO_MISSING}"
        finally:
            e.close()


def test_cli_plan_diff_and_sync(env: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env.three_models()
    common = env.cli()
    env.mark()
    assert main(["plan", "--format", "markdown", *common]) == 1
    md = capsys.readouterr().out
    assert md.startswith("<!-- gitops-kaito plan: comment 1 of 1 -->")
    assert f"| `{env.id('phi')}` | 🟢 create | phi-4-mini-instruct |" in md
    assert "**Total after this change**" in md and "<details>" in md
    assert main(["diff", *common]) == 1
    assert f"+++ desired/Workspace/{env.ns}/phi" in capsys.readouterr().out
    if env.target.emulator is not None:
        assert env.writes() == 0
    assert main(["sync", "--dry-run", *common]) == 0
    assert env.names("Workspace") == set()
    capsys.readouterr()
    assert main(["sync", *common]) == 0
    assert "create 4" in capsys.readouterr().out
    assert main(["diff", *common]) == 0
    assert main(["plan", "--format", "json", *common]) == 0
    assert '"hasChanges": false' in capsys.readouterr().out
    assert main(["plan", "--format", "markdown", "--split-dir", str(tmp_path / "md"), *common]) == 0
    assert (tmp_path / "md" / "comment-1.md").read_text().count("no change") == 3


def test_delete_of_a_missing_object_is_not_an_error(env: Env) -> None:
    env.model("phi", "  model: phi-4-mini-instruct\n")
    env.sync()
    ref = ObjectRef("kaito.sh/v1beta1", "Workspace", env.ns, "phi")
    assert env.kube.delete(ref) is True
    # A controller's finalizer may keep it a moment: deleting it again before then is not "missing".
    wait_until(lambda: env.kube.get(ref) is None, timeout=60, what="the Workspace to be gone")
    assert env.kube.delete(ref) is False
    assert env.kube.get(ref) is None


def test_nodeclaim_mode_waits_for_nodes_and_prunes_its_claims(env: Env) -> None:
    env.model("phi", "  model: phi-4-mini-instruct\n  provisioning: nodeclaim\n")
    first = env.sync()
    outcome = first.outcome(env.id("phi"))
    assert outcome is not None and outcome.state == "Provisioning" and "waiting for nodes" in outcome.message
    (claim,) = env.nodeclaims("phi")
    assert env.names("Workspace") == set()

    (env.models / "phi.yaml").unlink()
    gone = env.sync(revision=REV2, allow_mass_prune=True)
    # Where a controller made the nodes ready meanwhile, nothing else was created: the claim is all there is.
    assert [str(c.ref) for c in gone.plan.pending] == [f"NodeClaim/{claim['metadata']['name']}"]
    assert gone.pruned == 1
    # Karpenter's termination finalizer may hold the NodeClaim while the node drains.
    wait_until(lambda: not env.nodeclaims("phi"), timeout=60, what="the model's NodeClaim to be deleted")


def test_nodeclaim_mode_applies_the_workspace_once_its_nodes_are_ready(env: Env) -> None:
    skip_on_real(env.target, "plays Karpenter (writes NodeClaim status)")
    env.model("phi", "  model: phi-4-mini-instruct\n  provisioning: nodeclaim\n")
    first = env.sync()
    outcome = first.outcome(env.id("phi"))
    assert outcome is not None and outcome.state == "Provisioning" and "waiting for nodes" in outcome.message
    claims = env.nodeclaims("phi")
    assert [c["metadata"]["labels"][LABEL_MODEL] for c in claims] == [env.id("phi")]
    assert env.names("Workspace") == set()

    assert env.sync(revision=REV2).outcome(env.id("phi")).state == "Provisioning"  # type: ignore[union-attr]
    name = claims[0]["metadata"]["name"]
    env.custom().patch_cluster_custom_object_status("karpenter.sh", "v1", "nodeclaims", name, {"status": {
        "nodeName": "aks-gpu-0", "conditions": [{"type": "Ready", "status": "True", "reason": "Ready",
                                                  "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}})
    second = env.sync(revision=REV2)
    assert second.outcome(env.id("phi")).state == "Applied" and second.created == 1  # type: ignore[union-attr]
    assert env.names("Workspace") == {"phi"}
    assert "instanceType" not in env.workspace("phi")["resource"]

    env.mark()
    assert not env.sync(revision=REV3).plan.has_changes
    assert env.writes() == 0

    (env.models / "phi.yaml").unlink()
    gone = env.sync(revision=REV3, allow_mass_prune=True)
    assert [str(c.ref) for c in gone.plan.pending] == [f"Workspace/{env.ns}/phi", f"NodeClaim/{name}"]
    assert env.nodeclaims("phi") == []


def _context_server(kubeconfig: dict[str, Any], context: str) -> str:
    ctx = next(c["context"] for c in kubeconfig["contexts"] if c["name"] == context)
    return str(next(c["cluster"]["server"] for c in kubeconfig["clusters"] if c["name"] == ctx["cluster"]))


def test_kubeconfig_context_is_honoured(env: Env, tmp_path: Path) -> None:
    doc = yaml.safe_load(env.kubeconfig.read_text())
    context = env.target.context or doc["current-context"]
    doc["clusters"].append({"name": "dead", "cluster": {"server": "http://127.0.0.1:9"}})
    doc["contexts"].append({"name": "dead", "context": {"cluster": "dead", "user": doc["users"][0]["name"]}})
    doc["current-context"] = "dead"
    path = tmp_path / "two-contexts"
    path.write_text(yaml.safe_dump(doc))
    with Kube.connect(path, context=context) as kube:
        assert kube.host.rstrip("/") == _context_server(doc, context).rstrip("/")
        assert kube.workspace_version() == "kaito.sh/v1beta1"
    assert main(["plan", "--repo", str(env.repo), "--kubeconfig", str(path), "--context", "nope"]) == 2


def test_a_mode_the_cluster_cannot_run_blocks_only_its_models_before_any_write(kaito_cluster: ClusterTarget,
                                                                               tmp_path: Path,
                                                                               capsys: pytest.CaptureFixture[str]
                                                                               ) -> None:
    skip_on_real(kaito_cluster, "a cluster serving Workspaces but not NodeClaims")
    with private_emulator(tmp_path / "partial", crds=False) as target:
        e = Env(tmp_path, target)
        try:
            ext = client.ApiextensionsV1Api(e.admin)
            ext.create_custom_resource_definition(yaml.safe_load(
                (data_path("deploy/crds") / "workspaces.kaito.sh.yaml").read_text()))
            e.model("phi", "  model: phi-4-mini-instruct\n  provisioning: nodeclaim\n")
            e.model("qwen", "  model: qwen2.5-coder-7b-instruct\n")
            assert main(["plan", *e.cli()]) == 1
            out = capsys.readouterr().out
            assert "Cluster serves kaito.sh/v1beta1 Workspace, kaito.sh/v1alpha1 Workspace; not kaito.sh/v1beta1 " \
                   "InferenceSet, karpenter.sh/v1 NodeClaim, karpenter.sh/v1alpha5 Machine." in out
            assert (f"error: {e.id('phi')}: provisioning: nodeclaim cannot run on this cluster: karpenter.sh/v1 "
                    "NodeClaim is not served") in out
            result = e.sync()
            assert result.outcome(e.id("qwen")).state == "Applied"  # type: ignore[union-attr]
            phi = result.outcome(e.id("phi"))
            assert phi is not None and phi.state == "Blocked" and "karpenter.sh/v1 NodeClaim is not served" in phi.message
            assert e.names("Workspace") == {"qwen"}, "nothing of the refused model is written"
        finally:
            e.close()


def test_dropped_connections_are_retried(env: Env) -> None:
    skip_on_real(env.target, FAULTS)
    env.model("phi", "  model: phi-4-mini-instruct\n")
    env.server.faults.add(Fault(method="PATCH", path_regex=r"/workspaces/phi$", drop_connection=True, times=1))
    result = env.sync()
    assert result.created == 1 and result.failed == 0
    assert env.names("Workspace") == {"phi"}


def test_plan_with_server_dry_run_writes_nothing(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.model("phi", "  model: phi-4-mini-instruct\n")
    env.model("qwen", "  model: qwen2.5-coder-7b-instruct\n")
    assert main(["plan", "--server-dry-run", "--format", "json", *env.cli()]) == 1
    out = capsys.readouterr().out
    assert json.loads(out)["refused"] == [] and json.loads(out)["hasChanges"] is True
    assert env.names("Workspace") == set() and env.names("ConfigMap") == set()


def test_plan_with_server_dry_run_shows_what_admission_would_refuse(env: Env,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    skip_on_real(env.target, "a webhook denial injected as a fault")
    env.model("phi", "  model: phi-4-mini-instruct\n")
    env.model("qwen", "  model: qwen2.5-coder-7b-instruct\n")
    denial = 'admission webhook "validation.workspace.kaito.sh" denied the request: instanceType not supported'
    env.server.faults.add(Fault(method="PATCH", path_regex=r"/workspaces/qwen$", status=400, times=None,
                                message=denial))
    assert main(["plan", "--format", "json", *env.cli()]) == 1  # against a cluster the dry run is the default
    out = json.loads(capsys.readouterr().out)
    [refused] = out["refused"]
    assert refused["model"] == env.id("qwen") and refused["object"] == f"Workspace/{env.ns}/qwen"
    assert "instanceType not supported" in refused["message"]
    assert {m["model"]: m["action"] for m in out["models"]} == {env.id("phi"): "create", env.id("qwen"): "refused"}
    patches = [e for e in env.requests() if e.method == "PATCH"]
    assert len(patches) == 2 and all("dryRun=All" in e.query for e in patches if e.status < 400)
    assert env.names("Workspace") == set()


def test_a_missing_repository_directory_is_an_error_not_zero_models(env: Env) -> None:
    env.three_models()
    env.sync()
    with pytest.raises(SyncError, match="does not exist"):
        run_pass(env.repo / "typo", env.kube, revision=REV2, allow_mass_prune=True)
    assert main(["sync", "--repo", str(env.repo / "typo"), *env.target.cli_args()]) == 2
    assert env.names("Workspace") == {"phi", "qwen", "mistral"}


def test_kubeconfig_env_with_several_files_is_merged(env: Env, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    doc = yaml.safe_load(env.kubeconfig.read_text())
    context = env.target.context or doc["current-context"]
    ctx = next(c["context"] for c in doc["contexts"] if c["name"] == context)
    other = {"apiVersion": "v1", "kind": "Config", "clusters": [], "users": [],
             "contexts": [{"name": "second", "context": {"cluster": ctx["cluster"], "user": ctx["user"]}}]}
    doc.pop("current-context")
    (tmp_path / "a").write_text(yaml.safe_dump(doc))
    (tmp_path / "b").write_text(yaml.safe_dump(other))
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'b'}:{tmp_path / 'a'}")
    with Kube.connect(context="second") as kube:
        assert kube.host.rstrip("/") == _context_server(doc, context).rstrip("/")
        assert kube.workspace_version() == "kaito.sh/v1beta1"


def test_many_creates_look_for_unowned_objects_with_one_list_not_a_get_each(env: Env) -> None:
    """A first sync of a large repository: past GETS_PER_KIND creates of a kind, one LIST without a selector finds
    objects someone else made under a desired name (left alone: the model is blocked), instead of one GET per
    create."""
    skip_on_real(env.target, COUNTS)
    names = [f"m{i:02d}" for i in range(GETS_PER_KIND + 4)]
    for name in names:
        env.model(name, "  model: phi-4-mini-instruct\n")
    desired, _ = plan_repository(env.repo, env.kube, revision=REV1)
    [made] = [o.manifest for o in desired.objects if o.ref.kind == "Workspace" and o.ref.name == "m05"]
    by_hand = {k: v for k, v in made.items() if k not in ("metadata", "status")}
    by_hand["metadata"] = {"name": "m05", "namespace": env.ns}
    uid = env.custom().create_namespaced_custom_object("kaito.sh", "v1beta1", env.ns, "workspaces",
                                                       by_hand)["metadata"]["uid"]
    env.mark()
    result = env.sync()
    actions = {c.ref.name: (c.action, c.reason) for c in result.plan.changes if c.ref.kind == "Workspace"}
    action, reason = actions.pop("m05")
    assert action == Action.BLOCKED and "was not created by gitops-kaito" in reason
    assert {a for a, _ in actions.values()} == {Action.CREATE} and len(actions) == len(names) - 1
    assert env.workspace("m05")["metadata"]["uid"] == uid, "the hand-made Workspace was recreated"
    assert not env.workspace("m05")["metadata"].get("labels"), "the hand-made Workspace was taken over"

    def unfiltered() -> list[Any]:
        return [e for e in env.requests(("list",))
                if e.path.endswith("/workspaces") and not parse_qs(e.query).get("labelSelector")]

    wait_until(lambda: unfiltered(), 10, what="the LIST without a selector logged")
    assert len(unfiltered()) == 1
    assert [e.path for e in env.requests(("get",)) if "/workspaces/" in e.path] == [], "a GET per create"
