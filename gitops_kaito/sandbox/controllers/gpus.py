"""What the simulated cloud and KAITO know about GPU SKUs and presets, taken from gitops_kaito.repo.catalog.

When the catalog is unavailable or does not know a name, conservative defaults keep the sandbox running.

A preset name the catalog does not know, such as an arbitrary Hugging Face id org/name (KAITO v0.12.0 accepts any
name containing '/' and generates the model from Hugging Face: `pkg/utils/plugin/plugin.go` IsValidPreset at v0.12.0), is a model of unknown size:
- node count (estimate_nodes): the Workspace's resource.count, else 1. An approximation: real KAITO runs its
  NodeEstimator on the size it reads from the model's Hugging Face metadata, which the sandbox never fetches;
- disk (disk_request): 1024Gi, KAITO's NodeClaim storage request for a model it does not know (`pkg/workspace/resource/node_claim.go` at v0.12.0);
- served name (served_model_name): the lowercase repository name after '/', as KAITO's generator sets it.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_DISK = "1024Gi"  # KAITO's request when the preset is unknown or the Workspace uses a template


@dataclass(frozen=True)
class GpuShape:
    instance_type: str
    gpu_count: int
    gpu_product: str      # as GPU Feature Discovery labels it, e.g. NVIDIA-A100
    gpu_memory_mib: int   # per GPU, like the nvidia.com/gpu.memory label
    cpu: int
    memory_gib: int


@lru_cache(maxsize=1)
def _catalog() -> Any:
    try:
        module = importlib.import_module("gitops_kaito.repo.catalog")
        return module.load_catalog()
    except Exception as err:  # the catalog is optional for the sandbox
        log.debug("catalog unavailable for the sandbox: %s", err)
        return None


def _find_preset(name: str) -> Any:
    cat = _catalog()
    if cat is None or not name:
        return None
    try:
        return cat.find_preset(name)
    except Exception:
        return None


def find_preset(name: str) -> Any:
    """The catalog's preset of that name, alias or Hugging Face id (any case), or None."""
    return _find_preset(name)


def find_sku(instance_type: str, cloud: str) -> Any:
    """The catalog's SKU of that name in that cloud (KAITO's table for CLOUD_PROVIDER), or None."""
    cat = _catalog()
    if cat is None:
        return None
    try:
        return cat.sku(instance_type, clouds=[cloud])
    except Exception:
        return None


def gpu_shape(instance_type: str) -> GpuShape:
    cat = _catalog()
    sku = None
    if cat is not None:
        try:
            sku = cat.sku(instance_type)
        except Exception:
            sku = None
    if sku is None:
        return GpuShape(instance_type, 1, "NVIDIA-GPU", 80 * 1024, 24, 220)
    count = max(int(sku.gpu_count), 1)
    return GpuShape(
        instance_type=instance_type,
        gpu_count=count,
        gpu_product=str(sku.gpu_model).replace(" ", "-"),
        gpu_memory_mib=round(float(sku.gpu_memory_per_gpu_gib) * 1024),
        cpu=24 * count,
        memory_gib=220 * count,
    )


def served_model_name(preset_name: str) -> str:
    """vLLM's --served-model-name: the lowercase HF repo suffix (`presets/workspace/generator/generator.go` at v0.12.0)."""
    preset = _find_preset(preset_name)
    served = str(preset.served_name) if preset is not None else ""
    if served:
        return served
    return preset_name.rsplit("/", 1)[-1].lower()


def disk_request(preset_name: str | None) -> str:
    preset = _find_preset(preset_name or "")
    if preset is None:
        return DEFAULT_DISK
    return f"{int(preset.disk_gib)}Gi"


def estimate_nodes(preset_name: str, instance_type: str, max_model_len: int | None, fallback: int) -> int:
    """KAITO's NodeEstimator through the catalog's fit; `fallback` (the Workspace's resource.count, at least 1)
    when the preset or SKU is unknown, e.g. a Hugging Face id outside the catalog (see the module docstring)."""
    cat = _catalog()
    preset = _find_preset(preset_name)
    if cat is None or preset is None:
        return max(fallback, 1)
    try:
        sku = cat.sku(instance_type)
        if sku is None:
            return max(fallback, 1)
        fit = cat.fit(preset, sku, max_model_len=max_model_len)
        return max(int(fit.nodes), 1)
    except Exception as err:
        log.debug("node estimate failed for %s on %s: %s", preset_name, instance_type, err)
        return max(fallback, 1)
