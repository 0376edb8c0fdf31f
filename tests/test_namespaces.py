"""A model in a namespace that does not exist yet: the namespace is created (server-side apply), never pruned.

Namespaces are only looked at when a write says one is missing, so a settled pass still makes one LIST per kind.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from gitops_kaito.model.objects import MANAGED_KINDS
from gitops_kaito.model.ownership import LABEL_MANAGED_BY
from gitops_kaito.reconcile.apply import ANNOTATION_CREATED_BY
from tests.fixtures_cluster import private_emulator
from tests.test_sync_cluster import HEADER, REV2, REV3, Env

pytestmark = pytest.mark.cluster


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    """A private emulator: these tests create and inspect namespaces, cluster-wide state a real cluster shares."""
    with private_emulator(tmp_path / "emulator") as target:
        e = Env(tmp_path, target)
        yield e
        e.close()


def write(env: Env, ns: str, name: str) -> Path:
    path = env.repo / "models" / ns / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{HEADER}metadata:\n  name: {name}\nspec:\n  model: phi-4-mini-instruct\n"
                    "  config: {max-model-len: 4096}\n")
    return path


def namespaces(env: Env) -> dict[str, client.V1Namespace]:
    return {n.metadata.name: n for n in client.CoreV1Api(env.admin).list_namespace().items}


def test_a_missing_namespace_is_created_once_and_never_pruned(env: Env) -> None:
    env.model("qwen", "  model: qwen2.5-coder-7b-instruct\n")  # keeps the prune guard quiet later
    path = write(env, "fresh", "phi")

    dry = env.sync(dry_run=True)
    assert dry.outcome("fresh.phi").state == "Applied", dry.outcome("fresh.phi")  # type: ignore[union-attr]
    assert "fresh" not in namespaces(env), "a dry run created the namespace"

    first = env.sync()
    assert first.outcome("fresh.phi").state == "Applied" and first.failed == 0  # type: ignore[union-attr]
    ns = namespaces(env)["fresh"]
    assert ns.metadata.labels[LABEL_MANAGED_BY] == "gitops-kaito"
    assert "gitops-kaito" in ns.metadata.annotations[ANNOTATION_CREATED_BY]
    custom = client.CustomObjectsApi(env.admin)
    assert custom.get_namespaced_custom_object("kaito.sh", "v1beta1", "fresh", "workspaces", "phi")
    assert client.CoreV1Api(env.admin).read_namespaced_config_map("phi-inference-config", "fresh")

    env.mark()
    assert not env.sync(revision=REV2).plan.has_changes
    assert env.writes() == 0
    assert len(env.requests()) == len(MANAGED_KINDS)  # still one LIST per managed kind: namespaces are not read

    path.unlink()
    gone = env.sync(revision=REV3)
    assert gone.pruned == 2 and "fresh" in namespaces(env)  # its objects go, the namespace stays
