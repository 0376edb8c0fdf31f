"""deploy/rbac.yaml grants exactly what the code calls: every (verb, group, resource) the reconciler's client sent.

A full flow on a private sandbox (daemon with Lease, git passes in three provisioning modes, drift, prune, status,
chat, import) is recorded by the emulator; its request log, mapped to RBAC terms, must equal the rules' expansion.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import yaml
from kubernetes import client

from gitops_kaito.cli import main
from gitops_kaito.model.resources import data_path
from gitops_kaito.provision.aks import StaticTokenCredential
from gitops_kaito.provision.pools import PoolRunner
from gitops_kaito.sandbox import Sandbox, SandboxSettings
from gitops_kaito.sandbox.arm import ArmEmulator, KubeNodeApi, NodeBridge
from gitops_kaito.service.service import Service
from gitops_kaito.service.settings import RunSettings
from tests.aksfixtures import TARGET
from tests.fixtures_cluster import wait_until
from tests.gitfixtures import Developer, make_remote, model_file
from tests.kaito_helpers import create, workspace

pytestmark = pytest.mark.cluster

UA = "gitops-kaito/"
Access = tuple[str, str, str]  # (verb, apiGroup, resource[/subresource])
_METHOD_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def rbac_access(method: str, path: str, query: str) -> Access | None:
    """The RBAC (verb, group, resource) of one request; None for non-resource URLs (discovery, /version)."""
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 4:
        group, rest = parts[1], parts[3:]
    else:
        return None
    if len(rest) >= 2 and rest[0] == "namespaces" and len(rest) > 2:
        rest = rest[2:]  # namespaced: drop namespaces/<ns>
    if not rest:
        return None
    resource, name, sub = rest[0], rest[1] if len(rest) > 1 else "", rest[2] if len(rest) > 2 else ""
    if sub:
        resource = f"{resource}/{sub}"
    if method in ("GET", "HEAD"):
        watching = parse_qs(query).get("watch", [""])[0] in ("true", "1")
        verb = "watch" if watching else "get" if name else "list"
    else:
        verb = _METHOD_VERBS[method]
    return verb, group, resource


def granted(docs: Iterable[dict[str, Any]]) -> set[Access]:
    out: set[Access] = set()
    for doc in docs:
        if doc.get("kind") not in ("ClusterRole", "Role"):
            continue
        for rule in doc.get("rules") or []:
            for group in rule.get("apiGroups") or []:
                for resource in rule.get("resources") or []:
                    for verb in rule.get("verbs") or []:
                        out.add((verb, group, resource))
    return out


def test_mapping_of_paths_to_rbac_terms() -> None:
    assert rbac_access("GET", "/apis/kaito.sh/v1beta1/workspaces", "labelSelector=x") == ("list", "kaito.sh",
                                                                                          "workspaces")
    assert rbac_access("GET", "/apis/kaito.sh/v1beta1/namespaces/ml/workspaces/phi", "") == ("get", "kaito.sh",
                                                                                             "workspaces")
    assert rbac_access("PATCH", "/api/v1/namespaces/ml/configmaps/x", "") == ("patch", "", "configmaps")
    assert rbac_access("POST", "/api/v1/namespaces/ml/services/phi:http/proxy/v1/chat/completions", "") == (
        "create", "", "services/proxy")
    assert rbac_access("GET", "/api/v1/namespaces/ml", "") == ("get", "", "namespaces")
    assert rbac_access("GET", "/apis/karpenter.sh/v1/nodeclaims", "watch=true") == ("watch", "karpenter.sh",
                                                                                   "nodeclaims")
    assert rbac_access("GET", "/apis", "") is None and rbac_access("GET", "/version", "") is None


def _state(text: str) -> str:
    return str((yaml.safe_load(text) or {}).get("state", ""))


RAG = ("apiVersion: gitops.kaito.sh/v1alpha1\nkind: RAGDeployment\nmetadata: {{name: docs, namespace: ml}}\n"
       "spec:\n  compute: {{instanceType: {sku}}}\n  embedding: {{local: {{model: BAAI/bge-small-en-v1.5}}}}\n"
       "  llm: {{model: phi}}\n  contextWindowSize: 4096\n")


def run_flow(sb: Sandbox, tmp: Path, stack: ExitStack) -> None:
    ns = "ml"
    sb.ensure_namespace(ns)
    sb.ensure_namespace("gitops-kaito")
    admin = sb.api_client("rbac-test-admin/1")
    remote = make_remote(tmp)
    dev = Developer(remote, tmp / "dev")
    # phi names a modelAccessSecret: the preflight reads its keys (get secrets) before writing the model.
    client.CoreV1Api(admin).create_namespaced_secret(ns, {"metadata": {"name": "hf-token"},
                                                           "stringData": {"HF_TOKEN": "x"}})
    dev.write(f"models/{ns}/phi.yaml", model_file("phi", namespace=ns) + "  config: {max-model-len: 4096}\n"
              "  modelAccessSecret: hf-token\n")
    dev.write(f"models/{ns}/qwen.yaml", model_file("qwen", "qwen2.5-coder-7b-instruct", ns)
              + "  provisioning: nodeclaim\n  instanceType: Standard_NC24ads_A100_v4\n")
    dev.write(f"models/{ns}/mistral.yaml", model_file("mistral", "mistral-7b-instruct", ns)
              + "  provisioning: machine\n  instanceType: Standard_NC24ads_A100_v4\n")
    # aks mode (pools in the local ARM endpoint, whose Nodes register in the sandbox: the gate lists Nodes) and a
    # model in a namespace that does not exist yet (created by server-side apply).
    dev.write(f"models/{ns}/llama.yaml", model_file("llama", namespace=ns)
              + "  provisioning: aks\n  instanceType: Standard_NC24ads_A100_v4\n")
    dev.write("models/fresh/falcon.yaml", model_file("falcon", namespace="fresh"))
    dev.write(f"models/{ns}/fleet.yaml", model_file("fleet", namespace=ns) + "  replicas: 2\n")  # an InferenceSet
    dev.write(f"models/{ns}/docs.yaml", RAG.format(sku="Standard_NV36ads_A10_v5"))  # a RAG engine on phi
    dev.write("gitops-kaito.yaml", "apiVersion: gitops.kaito.sh/v1alpha1\nkind: Config\nreplacePolicy: auto\n"
              "azure: {subscriptionId: 00000000-0000-0000-0000-000000000000, resourceGroup: rg-ml, "
              "clusterName: aks-ml}\n")
    dev.commit("models")
    arm = stack.enter_context(ArmEmulator())
    NodeBridge(KubeNodeApi(sb.url)).attach(arm)
    pools = PoolRunner({**TARGET, "arm_endpoint": arm.url, "polling_interval_s": 0.01, "retry_total": 0},
                       credential=StaticTokenCredential(arm.settings.token), env={}, wait_s=5)
    secret = tmp / "secret"
    secret.write_bytes(b"0123456789abcdef0123456789abcdef")
    settings = RunSettings(git_url=remote.url, interval="1s", listen="127.0.0.1:0",
                           webhook_secret_file=str(secret), kubeconfig=str(sb.kubeconfig_path),
                           cache_dir=str(tmp / "cache"), lease_namespace="gitops-kaito", allow_mass_prune=True)
    custom = client.CustomObjectsApi(admin)

    def committed_ready() -> bool:
        try:
            text = remote.show("status/STATUS.md")
        except Exception:
            return False
        return (all(f"ml/{m}" in text for m in ("phi", "qwen", "mistral", "llama")) and "fresh/falcon" in text
                and _state(remote.show("status/ml/phi.yaml")) == "Ready" and bool(custom.list_namespaced_custom_object(
                    "kaito.sh", "v1beta1", ns, "workspaces", label_selector="gitops.kaito.sh/model=ml.llama")["items"])
                and bool(custom.list_namespaced_custom_object("kaito.sh", "v1beta1", ns, "ragengines")["items"]))

    with Service.build(settings, pools=pools) as svc:
        wait_until(committed_ready, 60, interval=0.1, what="both models in the committed status, phi Ready")
        # Drift twice on phi (an Event created, then aggregated), then chat with it.
        for _ in range(2):
            done = svc.daemon.passes_done
            custom.patch_namespaced_custom_object("kaito.sh", "v1beta1", ns, "workspaces", "phi", {
                "metadata": {"annotations": {"gitops.kaito.sh/source-path": "x"}}})
            assert svc.daemon.wait_for_passes(done + 2, 30)
        assert main(["chat", f"{ns}/phi", "hi", "--kubeconfig", str(sb.kubeconfig_path)]) == 0
        # A Workspace made by hand, imported (its ConfigMap read), then everything removed: prune in every mode.
        client.CoreV1Api(admin).create_namespaced_config_map(ns, {"metadata": {"name": "hand-cfg"}, "data": {
            "inference_config.yaml": "vllm:\n  max-model-len: 2048\n"}})
        hand = workspace("hand")
        hand["inference"]["config"] = "hand-cfg"
        create(admin, ns, hand)
        (tmp / "import").mkdir()
        assert main(["import", "-A", "--repo", str(tmp / "import"), "--kubeconfig", str(sb.kubeconfig_path)]) == 0
        # An immutable change in every mode: replaced (deleted, waited for with GETs, created again).
        dev.pull()
        for name, model, mode in (("qwen", "qwen2.5-coder-7b-instruct", "nodeclaim"),
                                  ("mistral", "mistral-7b-instruct", "machine")):
            dev.write(f"models/{ns}/{name}.yaml", model_file(name, model, ns)
                      + f"  provisioning: {mode}\n  instanceType: Standard_NC48ads_A100_v4\n")
        dev.write(f"models/{ns}/fleet.yaml", model_file("fleet", namespace=ns)
                  + "  replicas: 2\n  instanceType: Standard_NC48ads_A100_v4\n")  # not rolled by KAITO: replaced
        dev.write(f"models/{ns}/docs.yaml", RAG.format(sku="Standard_NC24ads_A100_v4"))  # compute is immutable
        dev.commit("bigger nodes")
        wait_until(lambda: "NC48" in str(custom.list_cluster_custom_object("karpenter.sh", "v1alpha5", "machines")),
                   30, interval=0.1, what="the Machines replaced")
        dev.pull()
        dev.remove(f"models/{ns}/mistral.yaml")
        dev.remove(f"models/{ns}/phi.yaml")
        dev.remove(f"models/{ns}/qwen.yaml")
        dev.remove(f"models/{ns}/llama.yaml")
        dev.remove("models/fresh/falcon.yaml")
        dev.remove(f"models/{ns}/fleet.yaml")
        dev.remove(f"models/{ns}/docs.yaml")
        dev.commit("remove all")
        wait_until(lambda: not custom.list_cluster_custom_object("kaito.sh", "v1beta1", "workspaces",
                                                                 label_selector="gitops.kaito.sh/managed-by")
                   ["items"] and not custom.list_cluster_custom_object("kaito.sh", "v1beta1", "inferencesets")["items"]
                   and not custom.list_cluster_custom_object("kaito.sh", "v1beta1", "ragengines")["items"]
                   and not arm.pool_names(), 30, interval=0.1, what="every managed Workspace, set, engine and pool "
                   "pruned")
        done = svc.daemon.passes_done
        assert svc.daemon.wait_for_passes(done + 1, 30)
    admin.close()


# Every provisioning mode against one KAITO, which a real cluster cannot be (its webhook wants instanceType with node
# auto-provisioning and refuses it without): the webhook is off, the verbs are what this test is about.
@pytest.mark.parametrize("sandbox", [SandboxSettings(speed="fast", admission=False)], indirect=True)
def test_cluster_role_covers_exactly_what_the_code_calls(sandbox: Sandbox, tmp_path: Path) -> None:
    with ExitStack() as stack:
        run_flow(sandbox, tmp_path, stack)
    used: set[Access] = set()
    for entry in sandbox.server.request_log.select(user_agent_prefix=UA):
        access = rbac_access(entry.method, entry.path, entry.query)
        if access is not None:
            used.add(access)
    docs = list(yaml.safe_load_all((data_path("deploy") / "rbac.yaml").read_text()))
    rules = granted(docs)
    assert not used - rules, f"missing from deploy/rbac.yaml: {sorted(used - rules)}"
    assert not rules - used, f"granted but never used: {sorted(rules - used)}"
