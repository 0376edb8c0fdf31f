"""The aks-mode model repository shared by the agent-pool tests: one config, one model shape, a writer."""

from __future__ import annotations

from pathlib import Path

CONFIG = """apiVersion: gitops.kaito.sh/v1alpha1
kind: Config
defaults:
  provisioning: aks
azure:
  subscriptionId: 00000000-0000-0000-0000-000000000000
  resourceGroup: rg-ml
  clusterName: aks-ml
"""
MODEL = """apiVersion: gitops.kaito.sh/v1alpha1
kind: ModelDeployment
metadata:
  name: {name}
spec:
  model: phi-4-mini-instruct
  instanceType: Standard_NC24ads_A100_v4
  nodeSelector: {{apps: {name}}}
"""


def write_repo(root: Path, names: list[str]) -> None:
    (root / "models" / "ml").mkdir(parents=True, exist_ok=True)
    (root / "gitops-kaito.yaml").write_text(CONFIG)
    for old in (root / "models" / "ml").glob("*.yaml"):
        old.unlink()
    for name in names:
        (root / "models" / "ml" / f"{name}.yaml").write_text(MODEL.format(name=name))
