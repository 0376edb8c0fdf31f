"""RAGDeployment requests: KAITO v0.12.0's RAGEngine webhook rules checked offline, compute and price, the LLM bound
by model (its in-cluster chat URL) and the RAGEngine rendered valid under KAITO's own CRD."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_render_schemas import OWN_CRDS, check_metadata, crd_schema, validate

from gitops_kaito.core import render
from gitops_kaito.repo.catalog import load_catalog
from gitops_kaito.repo.config import RepoConfig
from gitops_kaito.repo.rag import ResolvedRag, link_llm, request_from_document, resolve_rag
from gitops_kaito.repo.resolve import ResolveError

REVISION = "main@sha1:0123456789abcdef0123456789abcdef01234567"


def doc(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"compute": {"instanceType": "Standard_NV36ads_A10_v5"},
                            "embedding": {"local": {"model": "BAAI/bge-small-en-v1.5"}},
                            "llm": {"model": "phi"}, "contextWindowSize": 4096}
    base.update(spec)
    return {"apiVersion": "gitops.kaito.sh/v1alpha1", "kind": "RAGDeployment", "metadata": {"name": "docs"},
            "spec": {k: v for k, v in base.items() if v is not None}}


def resolve(data: dict[str, Any]) -> ResolvedRag:
    config = RepoConfig()
    return resolve_rag(request_from_document(data, "ml", "models/ml/docs.yaml", config), load_catalog(), config)


RULES = [
    ({"embedding": {}}, ("spec", "embedding"), "not neither"),
    ({"embedding": {"local": {"model": "BAAI/bge-small-en-v1.5"}, "remote": {"url": "https://e.example/v1"}}},
     ("spec", "embedding"), "but not both"),
    ({"embedding": {"local": {"model": "BAAI/bge", "image": "reg.io/emb:1"}}}, ("spec", "embedding", "local"),
     "not both"),
    ({"embedding": {"local": {"image": "emb-latest"}}}, ("spec", "embedding", "local", "image"),
     "Invalid image format"),
    ({"embedding": {"local": {"model": "bge-small"}}}, ("spec", "embedding", "local", "model"), "Hugging Face id"),
    ({"llm": {"url": "not a url"}}, ("spec", "llm", "url"), "URL input error"),
    ({"llm": {"model": "phi", "url": "https://x.example/v1/chat/completions"}}, ("spec", "llm"), "not both"),
    ({"contextWindowSize": None}, ("spec",), "contextWindowSize is required"),
    ({"contextWindowSize": 0}, ("spec", "contextWindowSize"), "positive integer"),
    ({"compute": {"instanceType": "Standard_X1"}}, ("spec", "compute", "instanceType"), "Unsupported instance type"),
    ({"compute": {"instanceType": "Standard_NV36ads_A10_v5", "nodeSelector": {"kaito.sh/ragengine": "x"}}},
     ("spec", "compute", "nodeSelector"), "KAITO-reserved"),
    ({"vectorDB": {"engine": "chroma", "url": "http://db:8000"}}, ("spec", "vectorDB", "engine"), "qdrant"),
    ({"guardrails": {"enabled": False, "configMap": "policy"}}, ("spec", "guardrails"), "disabled"),
]


@pytest.mark.parametrize(("spec", "path", "message"), RULES, ids=[r[2] for r in RULES])
def test_each_rule_names_its_field(spec: dict[str, Any], path: tuple[Any, ...], message: str) -> None:
    with pytest.raises(ResolveError) as caught:
        resolve(doc(**spec))
    assert caught.value.json_path == path and message in caught.value.message


def test_compute_prices_a_gpu_sku_and_leaves_a_cpu_vm_unpriced() -> None:
    gpu = resolve(doc())
    assert gpu.sku is not None and gpu.nodes == 1 and gpu.price_per_hour == gpu.sku.price.usd_per_hour  # type: ignore[union-attr]
    cpu = resolve(doc(compute={"instanceType": "Standard_D8s_v5"}, embedding={"remote": {"url": "https://e.x/v1"}}))
    assert cpu.sku is None and cpu.price_per_hour is None and "price is not known" in cpu.note
    none = resolve(doc(compute=None))
    assert (none.nodes, none.gpus, none.price_per_hour) == (0, 0, None)


def test_render_binds_the_llm_to_the_models_service() -> None:
    ragengine = render.render_rag(resolve(doc(storage={"persistentVolumeClaim": "rag-data"},
                                              vectorDB={"engine": "qdrant", "url": "http://qdrant:6333"},
                                              guardrails={"configMap": "policy"})),
                                  RepoConfig(), REVISION).objects[0].manifest
    spec = ragengine["spec"]
    assert spec["inferenceService"] == {"url": "http://phi.ml.svc.cluster.local:80/v1/chat/completions",
                                        "contextWindowSize": 4096}
    assert spec["compute"] == {"instanceType": "Standard_NV36ads_A10_v5",
                               "labelSelector": {"matchLabels": {"apps": "docs"}}}
    assert spec["embedding"] == {"local": {"modelID": "BAAI/bge-small-en-v1.5"}}
    assert spec["storage"] == {"persistentVolume": {"persistentVolumeClaim": "rag-data"},
                               "vectorDB": {"engine": "qdrant", "url": "http://qdrant:6333"}}
    assert spec["guardrails"] == {"enabled": True, "configMapRef": {"name": "policy"}}
    retrieve_only = render.render_rag(resolve(doc(llm=None, contextWindowSize=None, compute=None)), RepoConfig(),
                                      REVISION).objects[0].manifest
    assert set(retrieve_only["spec"]) == {"embedding"}


def test_link_checks_the_bound_model() -> None:
    from test_render import make_model

    rag = resolve(doc(contextWindowSize=200000))
    phi = make_model(name="phi")
    assert [(p[0], p[1]) for p in link_llm({rag.request.id: rag})] == [("ml.docs", ("spec", "llm", "model"))]
    [(_rid, path, message)] = link_llm({rag.request.id: rag, phi.request.id: phi})
    assert path == ("spec", "contextWindowSize") and "exceeds" in message
    fits = resolve(doc())
    assert link_llm({fits.request.id: fits, phi.request.id: phi}) == []


def test_every_rendered_ragengine_is_valid_under_kaitos_crd(shared_kaito: Path) -> None:
    kaito = crd_schema(shared_kaito / "crd-ragengines-v0.12.yaml", "v1beta1")
    own = crd_schema(OWN_CRDS / "ragengines.kaito.sh.yaml", "v1beta1")
    variants = [doc(), doc(compute=None, llm=None, contextWindowSize=None),
                doc(embedding={"remote": {"url": "https://e.example/v1", "accessSecret": "k"}},
                    compute={"instanceType": "Standard_D8s_v5"}, llm={"url": "https://llm.example/v1/chat/completions",
                                                                       "accessSecret": "s"}),
                doc(embedding={"local": {"image": "reg.io/emb:1", "pullSecret": "p"}},
                    storage={"persistentVolumeClaim": "d", "mountPath": "/data"},
                    vectorDB={"engine": "qdrant", "url": "http://q:6333", "accessSecret": "v"},
                    guardrails={"enabled": True})]
    for sku in (s.name for s in load_catalog().skus(("azure",))):
        variants.append(doc(compute={"instanceType": sku, "nodeSelector": {"pool": "rag"}}))
    for data in variants:
        manifest = render.render_rag(resolve(data), RepoConfig(), REVISION).objects[0].manifest
        check_metadata(manifest)
        validate(manifest, kaito, "KAITO's RAGEngine CRD")
        validate(manifest, own, "project RAGEngine CRD")
