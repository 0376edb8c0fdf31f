"""The schema fast path of modelrequest.validate_document: never more lenient than jsonschema, and it does fire.

Random mutations of a rich valid request are checked against jsonschema itself, plus every file of the corpus.
"""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from gitops_kaito.repo import modelrequest
from gitops_kaito.repo.yamlsource import LocatedDoc, SourceError, load_yaml_file

CORPUS = Path(__file__).parent / "corpus"

RICH: dict[str, Any] = {
    "apiVersion": "gitops.kaito.sh/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "phi-4", "namespace": "ml", "annotations": {"team": "a", "gitops.kaito.sh/replace": "allowed"},
                 "labels": {"app": "phi", "example.com/tier": "gold"}},
    "spec": {
        "model": "phi-4-mini-instruct", "instanceType": "Standard_NC24ads_A100_v4", "nodes": 2, "runtime": "vllm",
        "provisioning": "nodeclaim", "nodeSelector": {"pool": "gpu"},
        "config": {"max-model-len": 4096, "gpu-memory-utilization": 0.9, "enforce-eager": True, "dtype": "half"},
        "adapters": [{"name": "a1", "image": "myacr.azurecr.io/adapter:1", "strength": "0.5"}],
        "modelAccessSecret": "hf-token", "suspend": False,
    },
}

# Values that break a rule somewhere: wrong types, lookalikes (1.0, True for an int), bad strings, extremes.
ODD_VALUES: list[Any] = [None, True, False, 0, 1, -1, 65, 1.0, 0.5, 1.5, "", "x", "UPPER", "a b", "-x", "x" * 300,
                         [], ["a"], {}, {"k": "v"}, {"k": 1}, {"Bad Key": "v"}, "phi-4", "vllm", "0.5", "2"]


def schema_errors(data: Any) -> list[str]:
    return [e.message for e in modelrequest._validator().iter_errors(data)]


def paths(node: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [here]
    if isinstance(node, dict):
        for key, value in node.items():
            out += paths(value, (*here, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += paths(value, (*here, i))
    return out


def mutate(doc: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    for _ in range(rng.randint(1, 3)):
        target = rng.choice(paths(out)[1:])
        parent: Any = out
        for part in target[:-1]:
            parent = parent[part]
        last = target[-1]
        move = rng.random()
        if move < 0.6:
            parent[last] = copy.deepcopy(rng.choice(ODD_VALUES))
        elif move < 0.8 and isinstance(parent, dict):
            del parent[last]
        elif isinstance(parent, dict):
            parent[rng.choice(["extra", "Nodes", "max-model-len", "x_y", "strength"])] = rng.choice(ODD_VALUES)
    return out


def test_the_fast_path_is_compiled_for_the_shipped_schema_and_accepts_valid_documents() -> None:
    check = modelrequest._fast_check()
    assert check is not None
    assert not schema_errors(RICH) and check(RICH)
    assert modelrequest.validate_document(LocatedDoc(RICH)) == []


def test_the_fast_path_never_accepts_what_jsonschema_refuses() -> None:
    check = modelrequest._fast_check()
    assert check is not None
    rng = random.Random(8)
    refused = accepted = 0
    for _ in range(3000):
        doc = mutate(RICH, rng)
        if check(doc):
            accepted += 1
            assert not schema_errors(doc), doc
        elif schema_errors(doc):
            refused += 1
    assert refused > 1000 and accepted > 100  # both outcomes were exercised


def test_corpus_files_get_the_same_verdict_and_messages_with_and_without_the_fast_path() -> None:
    seen = 0
    for path in sorted(CORPUS.rglob("*.y*ml")):
        if path.name == "expect.yaml":
            continue
        try:
            doc = load_yaml_file(path, CORPUS)
        except SourceError:
            continue
        seen += 1
        fast = modelrequest.validate_document(doc)
        with mock.patch.object(modelrequest, "_fast_check", return_value=None):
            slow = modelrequest.validate_document(doc)
        assert fast == slow, path
    assert seen > 20


@pytest.mark.parametrize("extra", [{"format": "email"}, {"oneOf": [{"type": "string"}]}, {"$ref": "#/$defs/missing"}])
def test_an_unknown_schema_keyword_turns_the_fast_path_off(extra: dict[str, Any]) -> None:
    schema = copy.deepcopy(modelrequest.schema())
    schema["properties"]["spec"]["properties"]["model"].update(extra)
    with pytest.raises(modelrequest._Unsupported):
        modelrequest._compile(schema, schema, ())
