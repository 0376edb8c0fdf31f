"""`gitops-kaito import` and adopt.py: live Workspaces -> request files, and the next sync pass adopts them in place.

The end-to-end test writes Workspaces as a person would, imports them, syncs, and checks nothing was recreated.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from gitops_kaito.adapters.kube import Kube
from gitops_kaito.cli import main
from gitops_kaito.core import adopt
from gitops_kaito.core.plan import ADOPT_REASON, Action
from gitops_kaito.model.ownership import ANNOTATION_ADOPT, LABEL_MANAGED_BY, owner_labels
from gitops_kaito.reconcile.sync import plan_repository, run_pass
from gitops_kaito.repo.catalog import load_catalog
from gitops_kaito.repo.config import RepoConfig
from gitops_kaito.repo.loader import load_repository
from gitops_kaito.sandbox.controllers.kaito_webhook import NAME as KAITO_WEBHOOK
from tests.fixtures_cluster import ClusterTarget
from tests.kaito_helpers import SKU, create, get, workspace

CATALOG = load_catalog()


def _ws(name: str = "phi", ns: str = "ml", **extra: Any) -> dict[str, Any]:
    body = workspace(name, **extra)
    body["metadata"]["namespace"] = ns
    return body


def _spec(adoption: adopt.Adoption) -> dict[str, Any]:
    assert not adoption.skipped, adoption.skipped
    doc = yaml.safe_load(adoption.text)
    assert doc["metadata"] == {"name": adoption.name, "namespace": adoption.namespace,
                               "annotations": {ANNOTATION_ADOPT: "allowed"}}  # the consent to take it over
    return dict(doc["spec"])


# --- adopt.request_for (pure) ------------------------------------------------------------------------------

def test_a_nap_workspace_with_the_default_selector() -> None:
    adoption = adopt.request_for(_ws(), None, CATALOG, RepoConfig())
    assert adoption.path == "models/ml/phi.yaml"
    assert _spec(adoption) == {"model": "phi-4-mini-instruct", "instanceType": SKU}


def test_selector_secret_adapters_config_runtime_and_count_are_carried() -> None:
    body = _ws("llama", preset="llama-3.1-8b-instruct", labels={"pool": "gpu", "team": "ml"})
    body["resource"]["count"] = 1
    body["metadata"]["annotations"] = {"kaito.sh/runtime": "transformers"}
    body["inference"]["preset"]["presetOptions"] = {"modelAccessSecret": "hf-token"}
    body["inference"]["adapters"] = [{"source": {"name": "falcon-lora", "image": "myacr.azurecr.io/lora:1"},
                                      "strength": "0.5"}]
    body["inference"]["config"] = "llama-params"
    cm = {"data": {"inference_config.yaml": "vllm:\n  max-model-len: 4096\n  gpu-memory-utilization: 0.9\n"}}
    spec = _spec(adopt.request_for(body, cm, CATALOG, RepoConfig()))
    assert spec == {
        "model": "llama-3.1-8b-instruct", "instanceType": SKU, "runtime": "transformers", "nodes": 1,
        "nodeSelector": {"pool": "gpu", "team": "ml"}, "config": {"gpu-memory-utilization": 0.9, "max-model-len": 4096},
        "adapters": [{"name": "falcon-lora", "image": "myacr.azurecr.io/lora:1", "strength": "0.5"}],
        "modelAccessSecret": "hf-token"}


def test_byo_workspace_sets_provisioning_unless_it_is_the_repo_default() -> None:
    body = _ws("byo", labels={"pool": "a100"})
    del body["resource"]["instanceType"]
    assert _spec(adopt.request_for(body, None, CATALOG, RepoConfig()))["provisioning"] == "byo"
    assert "provisioning" not in _spec(adopt.request_for(body, None, CATALOG, RepoConfig(provisioning="byo")))


def test_a_hugging_face_model_outside_the_catalog_is_imported_and_loads(tmp_path: Path) -> None:
    body = _ws("qwen", preset="Qwen/Qwen3-0.6B")
    assert _spec(adopt.request_for(body, None, CATALOG, RepoConfig())) == {"model": "Qwen/Qwen3-0.6B",
                                                                          "instanceType": SKU}
    # One character off a catalog id: the written request opts in, or validate would take it for a typo.
    typo = adopt.request_for(_ws("q9", preset="Qwen/Qwen3.5-9C"), None, CATALOG, RepoConfig())
    assert _spec(typo)["allowUncataloged"] is True
    for adoption in (adopt.request_for(body, None, CATALOG, RepoConfig()), typo):
        path = tmp_path / adoption.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(adoption.text)
    load = load_repository(tmp_path)
    assert load.errors == () and sorted(m.request.model for m in load.models) == ["Qwen/Qwen3-0.6B", "Qwen/Qwen3.5-9C"]
    body["metadata"]["annotations"] = {"kaito.sh/runtime": "transformers"}
    assert "served with vllm only" in adopt.request_for(body, None, CATALOG, RepoConfig()).skipped


@pytest.mark.parametrize(("change", "reason"), [
    (lambda b: b.update(tuning={"preset": {"name": "phi-4-mini-instruct"}}), "tuning Workspace"),
    (lambda b: b["inference"].update(template={"spec": {"containers": []}}), "custom pod template"),
    (lambda b: b.update(apiVersion="kaito.sh/v1alpha1"), "legacy KAITO"),
    (lambda b: b["inference"]["preset"].update(name="no-such-model-7b"), "preset 'no-such-model-7b'"),
    (lambda b: b["resource"]["labelSelector"].update(matchExpressions=[{"key": "a", "operator": "Exists"}]),
     "matchExpressions"),
    (lambda b: b["inference"]["preset"].update(presetOptions={"image": "x"}), "presetOptions image"),
    (lambda b: b["inference"].update(adapters=[{"source": {"name": "a", "urls": ["http://x"]}}]), "adapters[0]"),
    (lambda b: b["inference"].update(config="missing-cm"), "does not exist"),
    (lambda b: b["metadata"].update(labels=owner_labels("ml", "phi")), "already managed"),
])
def test_what_cannot_be_expressed_is_skipped_with_a_reason(change: Any, reason: str) -> None:
    body = _ws()
    change(body)
    adoption = adopt.request_for(body, None, CATALOG, RepoConfig())
    assert reason in adoption.skipped and adoption.text == ""


def test_a_configmap_with_nested_or_foreign_sections_is_skipped() -> None:
    body = _ws()
    body["inference"]["config"] = "cm"
    nested = {"data": {"inference_config.yaml": "vllm:\n  rope-scaling: {type: yarn}\n"}}
    assert "rope-scaling" in adopt.request_for(body, nested, CATALOG, RepoConfig()).skipped
    foreign = {"data": {"inference_config.yaml": "transformers:\n  torch_dtype: bfloat16\n"}}
    assert "only the vllm section" in adopt.request_for(body, foreign, CATALOG, RepoConfig()).skipped


def test_the_written_text_loads_with_the_repository_loader(tmp_path: Path) -> None:
    adoption = adopt.request_for(_ws(), None, CATALOG, RepoConfig())
    path = tmp_path / adoption.path
    path.parent.mkdir(parents=True)
    path.write_text(adoption.text)
    load = load_repository(tmp_path)
    assert load.errors == ()
    [model] = load.models
    assert (model.request.id, model.preset.name, model.sku and model.sku.name) == ("ml.phi", "phi-4-mini-instruct",
                                                                                    SKU)


def test_the_check_renders_with_the_repositorys_template_overrides(tmp_path: Path) -> None:
    """import keeps a file only if the next pass, which renders with the repository's templates/, adopts in place."""
    from gitops_kaito.cli.importer import _check
    from gitops_kaito.core.render import builtin_templates_dir
    from gitops_kaito.model.ownership import DEFAULT_INSTANCE

    adoption = adopt.request_for(_ws(), None, CATALOG, RepoConfig())
    (plain,) = _check(tmp_path, [(adoption, _ws())], DEFAULT_INSTANCE)
    assert not plain.skipped and plain.notes == adoption.notes

    override = tmp_path / "templates" / "workspace-v1beta1.yaml"
    override.parent.mkdir()
    builtin = (builtin_templates_dir() / "workspace-v1beta1.yaml").read_text()
    override.write_text(builtin.replace('name: "{{ .preset_name }}"', "name: phi-4"))
    (pinned,) = _check(tmp_path, [(adoption, _ws())], DEFAULT_INSTANCE)
    assert pinned.skipped == "adopting would replace the Workspace: immutable inference.preset would differ"

    override.write_text("resource: [unclosed\n")  # a broken override: the pass renders nothing, import writes nothing
    (broken,) = _check(tmp_path, [(adoption, _ws())], DEFAULT_INSTANCE)
    assert broken.skipped.startswith("the request does not render: ") and "workspace-v1beta1.yaml" in broken.skipped


# --- end to end against the sandbox ---------------------------------------------------------------------------

@pytest.mark.cluster
def test_import_then_sync_adopts_in_place(cluster: ClusterTarget, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    # A NAP Workspace beside a BYO one is what a cluster serving KAITO's CRDs without its webhook holds (one KAITO
    # refuses one of the two): on the sandbox, the webhook is lifted for this test.
    with contextlib.ExitStack() as stack:
        if cluster.emulator is not None:
            stack.enter_context(cluster.emulator.api.admission.lifted(KAITO_WEBHOOK))
        _import_then_sync_adopts_in_place(cluster, tmp_path, capsys)


def _import_then_sync_adopts_in_place(cluster: ClusterTarget, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    ns = cluster.namespace
    admin = cluster.api_client()
    core = client.CoreV1Api(admin)
    # What a team has today, applied by hand: a NAP model with a tuned ConfigMap, a BYO model, a tuning job.
    core.create_namespaced_config_map(ns, {"metadata": {"name": "phi-params"}, "data": {
        "inference_config.yaml": "vllm:\n  max-model-len: 8192\n"}})
    phi = workspace("phi")
    phi["inference"]["config"] = "phi-params"
    create(admin, ns, phi)
    byo = workspace("mistral", preset="mistral-7b-instruct", labels={"pool": "gpu-a100"})
    del byo["resource"]["instanceType"]
    create(admin, ns, byo)
    tuning = workspace("tuner")
    del tuning["inference"]
    tuning["tuning"] = {"preset": {"name": "phi-4-mini-instruct"}, "method": "qlora",
                        "input": {"urls": ["https://example.invalid/data.parquet"]},
                        "output": {"image": "myacr.azurecr.io/out:1", "imagePushSecret": "push"}}
    create(admin, ns, tuning)
    uids = {n: get(admin, ns, n)["metadata"]["uid"] for n in ("phi", "mistral")}

    repo = tmp_path / "repo"
    repo.mkdir()
    flags = ["--kubeconfig", str(cluster.kubeconfig)]
    assert main(["import", "-n", ns, "--repo", str(repo), "--dry-run", *flags]) == 1  # tuner is skipped
    out = capsys.readouterr().out
    assert "would import" in out and "tuning Workspace" in out
    assert not (repo / "models").exists(), "--dry-run writes nothing"

    assert main(["import", "-n", ns, "--repo", str(repo), "-o", "json", *flags]) == 1
    assert sorted(p.relative_to(repo).as_posix() for p in repo.rglob("*.yaml")) == [
        f"models/{ns}/mistral.yaml", f"models/{ns}/phi.yaml"]
    phi_spec = yaml.safe_load((repo / "models" / ns / "phi.yaml").read_text())["spec"]
    assert phi_spec == {"model": "phi-4-mini-instruct", "instanceType": SKU, "config": {"max-model-len": 8192}}
    mistral_spec = yaml.safe_load((repo / "models" / ns / "mistral.yaml").read_text())["spec"]
    assert mistral_spec == {"model": "mistral-7b-instruct", "provisioning": "byo",
                            "nodeSelector": {"pool": "gpu-a100"}}
    capsys.readouterr()

    with Kube.connect(cluster.kubeconfig, cluster.context) as kube:
        # The plan shows the imported Workspaces as adopted in place (an update), not as creates.
        _, plan = plan_repository(repo, kube, revision="main@sha1:" + "a" * 40)
        adopted = {str(c.ref): (c.action, c.reason) for c in plan.changes if c.ref.kind == "Workspace"}
        assert adopted == {f"Workspace/{ns}/{n}": (Action.UPDATE, ADOPT_REASON) for n in ("phi", "mistral")}
        assert f"Workspace/{ns}/tuner" not in {str(c.ref) for c in plan.changes}  # never pruned: not ours
        result = run_pass(repo, kube, revision="main@sha1:" + "a" * 40)
        assert result.ok, result.errors
        assert {str(c.ref): c.action for c in result.plan.changes if c.ref.kind == "Workspace"} == {
            f"Workspace/{ns}/phi": Action.UPDATE, f"Workspace/{ns}/mistral": Action.UPDATE}
        actions = {str(c.ref): c.action for c in result.plan.changes}
        assert Action.REPLACE not in actions.values() and Action.DELETE not in actions.values()
        assert result.replaced == 0 and result.pruned == 0
        for name, uid in uids.items():
            live = get(admin, ns, name)
            assert live["metadata"]["uid"] == uid, f"{name} was recreated"
            assert live["metadata"]["labels"][LABEL_MANAGED_BY] == "gitops-kaito"
        assert get(admin, ns, "phi")["inference"]["config"] == "phi-inference-config"
        cm = core.read_namespaced_config_map("phi-inference-config", ns)
        assert yaml.safe_load(cm.data["inference_config.yaml"]) == {"vllm": {"max-model-len": 8192}}
        assert "labels" not in (get(admin, ns, "tuner")["metadata"]) or \
            LABEL_MANAGED_BY not in get(admin, ns, "tuner")["metadata"]["labels"]

        again = run_pass(repo, kube, revision="main@sha1:" + "a" * 40)
        assert not again.plan.has_changes, [c.reason for c in again.plan.pending]

    # Imported models are managed now: a second import finds nothing new to write.
    assert main(["import", "-n", ns, "--repo", str(repo), *flags]) == 1  # only the tuning Workspace remains
    assert "0 imported, 1 skipped" in capsys.readouterr().out
    admin.close()


@pytest.mark.cluster
def test_an_existing_file_is_never_overwritten(cluster: ClusterTarget, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    ns = cluster.namespace
    admin = cluster.api_client()
    create(admin, ns, workspace("phi"))
    admin.close()
    target = tmp_path / "models" / ns / "phi.yaml"
    target.parent.mkdir(parents=True)
    target.write_text("# mine\n")
    assert main(["import", "-n", ns, "--repo", str(tmp_path), "--kubeconfig", str(cluster.kubeconfig)]) == 1
    assert "exists already" in capsys.readouterr().out
    assert target.read_text() == "# mine\n"
