"""docs/real-cluster.md stays true to the repository: the files it names exist, the KAITO version is the one the
catalog renders for, and the placeholder image is called one where it stands."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from gitops_kaito.model.kaito import KAITO_VERSION

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "real-cluster.md"


def test_the_set_up_guide_covers_what_a_real_cluster_needs() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert f"KAITO {KAITO_VERSION}" in text
    for topic in ("helm upgrade --install kaito-workspace", "disableNodeAutoProvisioning", "provisioning:",
                  "federated-credential", "azure.workload.identity/client-id", "docker build", "placeholder",
                  "kind create cluster", "k3d cluster create", "kubectl apply -f deploy/crds/",
                  "GITOPS_KAITO_TEST_KUBECONFIG"):
        assert topic in text, topic
    for mode in ("`kaito`", "`nodeclaim`", "`aks`", "`byo`", "`machine`"):
        assert mode in text, mode
    assert "docs/real-cluster.md" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_repository_path_the_guide_names_exists() -> None:
    text = DOC.read_text(encoding="utf-8")
    named = set(re.findall(r"`((?:deploy|tests|docs|\.ci)/[\w./-]*)`", text))
    named |= set(re.findall(r"\b((?:deploy/crds|tests/test_\w+\.py))", text))
    assert named, "the guide names no files"
    missing = sorted(p for p in named if not (ROOT / p.rstrip("/")).exists())
    assert not missing, missing


def test_the_placeholder_image_says_so_where_it_stands() -> None:
    lines = (ROOT / "deploy" / "deployment.yaml").read_text(encoding="utf-8").splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("image:"))
    image = yaml.safe_load(lines[at].strip())["image"]
    assert "PLACEHOLDER" in " ".join(lines[max(0, at - 3):at]), "no placeholder note above the image line"
    assert image in DOC.read_text(encoding="utf-8")
