"""The simulated KAITO's tuning runs (a Job per revision, Pending -> Running -> Succeeded or Failed) and its RAGEngine
controller (NodeClaim, Service, conditions, a RAG service that answers and forwards chat to its LLM)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException
from test_sandbox_controllers import Recorder, cond, state_is, workspace

from gitops_kaito.adapters.endpoint import proxy_path
from tests.fixtures_cluster import ClusterTarget, skip_on_real, wait_until

pytestmark = pytest.mark.cluster

GROUP, VERSION = "kaito.sh", "v1beta1"
SKU = "Standard_NC24ads_A100_v4"


def tuning_workspace(name: str, urls: tuple[str, ...] = ("https://example.com/data.parquet",)) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Workspace", "metadata": {"name": name},
            "resource": {"instanceType": SKU, "labelSelector": {"matchLabels": {"apps": name}}},
            "tuning": {"preset": {"name": "phi-3-mini-128k-instruct"}, "method": "qlora",
                       "input": {"urls": list(urls)},
                       "output": {"image": "example.azurecr.io/adapter:1", "imagePushSecret": "push"}}}


def rag_engine(name: str, llm_url: str | None, instance_type: str | None = "Standard_NV36ads_A10_v5"
               ) -> dict[str, Any]:
    spec: dict[str, Any] = {"embedding": {"local": {"modelID": "BAAI/bge-small-en-v1.5"}}}
    if instance_type:
        spec["compute"] = {"instanceType": instance_type, "labelSelector": {"matchLabels": {"apps": name}}}
    if llm_url:
        spec["inferenceService"] = {"url": llm_url, "contextWindowSize": 4096}
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "RAGEngine", "metadata": {"name": name}, "spec": spec}


def job(api: client.ApiClient, ns: str, name: str) -> Any:
    try:
        return client.BatchV1Api(api).read_namespaced_job(name, ns)
    except ApiException as err:
        if err.status == 404:
            return None
        raise


@pytest.fixture
def api(cluster: ClusterTarget) -> Any:
    skip_on_real(cluster, "needs the simulated KAITO controllers")
    api = cluster.api_client("gitops-kaito-tests")
    yield api
    api.close()


def test_tuning_runs_once_per_revision(cluster: ClusterTarget, api: client.ApiClient) -> None:
    ns, name = cluster.namespace, "tune"
    custom = client.CustomObjectsApi(api)
    rec = Recorder(api, ns, name)
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, "workspaces", tuning_workspace(name))
    done = rec.wait(state_is("Succeeded"), what="state Succeeded")
    assert rec.states() == ["Pending", "Running", "Succeeded"]
    assert cond(done, "JobStarted")["reason"] == "WorkspaceTuningJobStatusStarted"  # type: ignore[index]
    assert cond(done, "WorkspaceSucceeded")["status"] == "True"  # type: ignore[index]
    first = job(api, ns, name)
    assert first.metadata.annotations["workspace.kaito.io/revision"] == "1"
    assert first.metadata.owner_references[0].kind == "Workspace"
    assert wait_until(lambda: (job(api, ns, name).status.succeeded or 0) == 1, what="Job succeeded")

    # A label change is not a spec change: the same Job, no new run.
    custom.patch_namespaced_custom_object(GROUP, VERSION, ns, "workspaces", name,
                                          {"metadata": {"labels": {"team": "a"}}})
    wait_until(lambda: (custom.get_namespaced_custom_object(GROUP, VERSION, ns, "workspaces", name)["metadata"]
                        .get("labels") or {}).get("team") == "a")
    assert job(api, ns, name).metadata.uid == first.metadata.uid

    # Any spec change is a new revision: KAITO deletes the Job and runs again, even after success.
    custom.patch_namespaced_custom_object(GROUP, VERSION, ns, "workspaces", name,
                                          {"tuning": {"input": {"urls": ["https://example.com/other.parquet"]}}})
    again = wait_until(lambda: (j := job(api, ns, name)) is not None and j.metadata.uid != first.metadata.uid and j,
                       what="a new Job")
    assert again.metadata.annotations["workspace.kaito.io/revision"] == "2"
    rec.wait(lambda o: state_is("Succeeded")(o) and o["metadata"]["generation"] == 2 and all(
        c.get("observedGeneration") == 2 for c in o["status"]["conditions"]), what="second run Succeeded")
    rec.stop()
    custom.delete_namespaced_custom_object(GROUP, VERSION, ns, "workspaces", name)
    wait_until(lambda: job(api, ns, name) is None, what="the Job deleted with its Workspace")


def test_injected_tuning_failure_is_kaitos_failed(cluster: ClusterTarget, api: client.ApiClient) -> None:
    ns, name = cluster.namespace, "badtune"
    sb = cluster.sandbox
    assert sb is not None
    failure = sb.inject("tuning-failed", workspace=name, namespace=ns)
    try:
        custom = client.CustomObjectsApi(api)
        rec = Recorder(api, ns, name)
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, "workspaces", tuning_workspace(name))
        failed = rec.wait(state_is("Failed"), what="state Failed")
        rec.stop()
    finally:
        sb.clear_failures(failure)
    assert cond(failed, "JobStarted")["reason"] == "WorkspaceTuningJobStatusFailed"  # type: ignore[index]
    assert cond(failed, "WorkspaceSucceeded")["reason"] == "workspaceFailed"  # type: ignore[index]
    assert wait_until(lambda: (job(api, ns, name).status.failed or 0) == 1, what="Job failed")


def _proxy(api: client.ApiClient, method: str, ns: str, svc: str, path: str, body: Any = None) -> tuple[int, Any]:
    params = api.param_serialize(method=method, resource_path=proxy_path(ns, svc, path), body=body,
                                 header_params={"Content-Type": "application/json", "Accept": "application/json"})
    try:
        resp = api.call_api(*params)
        resp.read()
    except ApiException as err:
        return int(err.status or 0), None
    return resp.status, json.loads(resp.data or b"null")


def test_rag_engine_gets_node_service_and_binds_to_its_llm(cluster: ClusterTarget, api: client.ApiClient) -> None:
    ns = cluster.namespace
    custom = client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, "workspaces", workspace("llm"))
    url = f"http://llm.{ns}.svc.cluster.local:80/v1/chat/completions"
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, "ragengines", rag_engine("rag", url))

    def rag() -> dict[str, Any]:
        return dict(custom.get_namespaced_custom_object(GROUP, VERSION, ns, "ragengines", "rag"))
    done = wait_until(lambda: (cond(r := rag(), "RAGEngineSucceeded") or {}).get("status") == "True" and r,
                      what="RAGEngineSucceeded")
    assert [c["type"] for c in done["status"]["conditions"]] == [
        "NodeClaimReady", "ResourceReady", "ServiceReady", "RAGEngineSucceeded"]
    assert done["metadata"]["finalizers"] == ["ragengine.finalizer.kaito.sh"]
    sel = f"kaito.sh/ragengine=rag,kaito.sh/ragenginenamespace={ns}"
    [claim] = custom.list_cluster_custom_object("karpenter.sh", "v1", "nodeclaims", label_selector=sel)["items"]
    assert claim["metadata"]["labels"]["karpenter.sh/nodepool"] == "kaito"
    assert claim["spec"]["nodeClassRef"]["kind"] == "KaitoNodeClass"
    svc = client.CoreV1Api(api).read_namespaced_service("rag", ns)
    assert (svc.spec.ports[0].port, svc.spec.ports[0].target_port) == (80, 5000)

    assert _proxy(api, "GET", ns, "rag", "health") == (200, {"status": "Healthy"})
    wait_until(lambda: state_is("Ready")(custom.get_namespaced_custom_object(GROUP, VERSION, ns, "workspaces", "llm")),
               what="the LLM Workspace Ready")
    code, reply = _proxy(api, "POST", ns, "rag", "v1/chat/completions",
                         {"messages": [{"role": "user", "content": "what is KAITO?"}]})
    assert code == 200 and reply["model"] == "phi-4-mini-instruct"  # answered by the bound Workspace's server

    custom.delete_namespaced_custom_object(GROUP, VERSION, ns, "ragengines", "rag")
    wait_until(lambda: not custom.list_cluster_custom_object("karpenter.sh", "v1", "nodeclaims",
                                                             label_selector=sel)["items"], what="NodeClaim gone")
    wait_until(lambda: not [r for r in custom.list_namespaced_custom_object(GROUP, VERSION, ns, "ragengines")["items"]],
               what="RAGEngine gone")


def test_retrieve_only_rag_engine_without_compute(cluster: ClusterTarget, api: client.ApiClient) -> None:
    ns = cluster.namespace
    custom = client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, "ragengines", rag_engine("docs", None, None))
    done = wait_until(lambda: (cond(r := dict(custom.get_namespaced_custom_object(
        GROUP, VERSION, ns, "ragengines", "docs")), "RAGEngineSucceeded") or {}).get("status") == "True" and r)
    assert "NodeClaimReady" not in {c["type"] for c in done["status"]["conditions"]}
    code, _ = _proxy(api, "POST", ns, "docs", "index", {"index_name": "kb", "documents": [{"text": "KAITO runs models"}]})
    assert code == 200
    code, found = _proxy(api, "POST", ns, "docs", "retrieve", {"index_name": "kb", "query": "models", "top_k": 3})
    assert code == 200 and found["results"][0]["text"] == "KAITO runs models"
    assert _proxy(api, "POST", ns, "docs", "v1/chat/completions", {"messages": []})[0] == 400


def test_kaitos_tuning_and_rag_examples_apply(cluster: ClusterTarget, shared_kaito: Path) -> None:
    """Every tuning and RAG manifest of KAITO's examples is accepted: PVCs, ConfigMaps, Workspaces, RAGEngines."""
    api = cluster.api_client()
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    ns = cluster.namespace
    kinds: list[str] = []
    for path in sorted((shared_kaito / "examples").glob("*.yaml")):
        if "tuning" not in path.name and "ragengine" not in path.name:
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            kind = doc["kind"]
            doc["metadata"]["name"] = f"{doc['metadata']['name']}-{len(kinds)}"  # two examples share names
            if kind == "PersistentVolumeClaim":
                core.create_namespaced_persistent_volume_claim(ns, doc)
            elif kind == "ConfigMap":
                core.create_namespaced_config_map(ns, doc)
            else:
                group, version = doc["apiVersion"].split("/")
                plural = {"Workspace": "workspaces", "RAGEngine": "ragengines"}[kind]
                custom.create_namespaced_custom_object(group, version, ns, plural, doc)
            kinds.append(kind)
    assert sorted(set(kinds)) == ["ConfigMap", "PersistentVolumeClaim", "RAGEngine", "Workspace"]
    stored = custom.list_namespaced_custom_object(GROUP, VERSION, ns, "ragengines")["items"]
    assert len(stored) == 2  # the v1alpha1 example is stored (relabelled) beside the v1beta1 one
    api.close()
