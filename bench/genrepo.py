"""Deterministic model repositories of any size for the benchmarks: models/<ns>/<name>.yaml with mixed presets.

The same N always gives the same files, so runs on different machines measure the same input.
"""

from __future__ import annotations

import random
from pathlib import Path

NAMESPACES = ("ml", "research", "prod", "staging", "team-a", "team-b")
# Ungated presets in kaito (NAP) mode: a repo of these needs no Secrets and no node objects to be in steady state.
PRESETS = (
    "phi-4-mini-instruct",
    "phi-3.5-mini-instruct",
    "mistral-7b-instruct",
    "qwen2.5-coder-7b-instruct",
    "deepseek-r1-distill-llama-8b",
    "phi-4",
    "gpt-oss-20b",
    "ministral-3-8b-instruct",
)
INSTANCE_TYPES = ("Standard_NC24ads_A100_v4", "Standard_NC48ads_A100_v4", "Standard_NC80adis_H100_v5")
HEADER = "apiVersion: gitops.kaito.sh/v1alpha1\nkind: ModelDeployment\n"


def model_text(namespace: str, name: str, index: int, rng: random.Random) -> str:
    preset = PRESETS[index % len(PRESETS)]
    lines = [HEADER.rstrip("\n"), "metadata:", f"  name: {name}", f"  namespace: {namespace}", "spec:",
             f"  model: {preset}"]
    if index % 4 == 1:
        lines.append(f"  instanceType: {INSTANCE_TYPES[rng.randrange(len(INSTANCE_TYPES))]}")
    if index % 3 == 0:  # an inference ConfigMap next to the Workspace
        lines += ["  config:", f"    max-model-len: {rng.choice((2048, 4096, 8192))}",
                  f"    gpu-memory-utilization: {rng.choice((0.8, 0.9, 0.95))}"]
    return "\n".join(lines) + "\n"


def model_path(root: Path, index: int) -> Path:
    namespace = NAMESPACES[index % len(NAMESPACES)]
    return root / "models" / namespace / f"model-{index:05d}.yaml"


def generate(root: Path, count: int, seed: int = 8) -> list[Path]:
    """Write `count` model files under root/models (root is created); returns their paths in index order."""
    rng = random.Random(seed)
    paths: list[Path] = []
    for index in range(count):
        path = model_path(root, index)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(model_text(path.parent.name, path.stem, index, rng))
        paths.append(path)
    return paths


def touch_one(root: Path, index: int = 0) -> Path:
    """Change one model in a way that changes its rendered objects (a new max-model-len), for 'one model changed'."""
    path = model_path(root, index)
    text = path.read_text()
    if "max-model-len" in text:
        head, _, tail = text.partition("max-model-len: ")
        value, _, rest = tail.partition("\n")
        text = f"{head}max-model-len: {int(value) + 1}\n{rest}"
    else:
        text += "  config:\n    max-model-len: 3000\n"
    path.write_text(text)
    return path
