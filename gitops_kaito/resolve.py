"""Resolves a ModelRequest against the catalog and repo config: preset, GPU SKU, node count, price, disk.

Pure: KAITO's admission rules that can be checked before a cluster sees the Workspace are enforced here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gitops_kaito.modelrequest import LoadError, ModelRequest

if TYPE_CHECKING:
    from gitops_kaito.catalog import Fit, GpuSku, Preset
    from gitops_kaito.config import RepoConfig


@dataclass(frozen=True)
class ResolvedModel:
    """A request with everything the renderer needs decided."""

    request: ModelRequest
    preset: Preset
    sku: GpuSku | None  # None in byo mode without an instanceType
    fit: Fit | None
    nodes: int
    gpus: int
    provisioning: str
    price_per_hour: float | None
    disk_gib: int
    label_selector: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class RepoLoad:
    """Everything read from a model repository: the config, the models that resolved, and every error."""

    root: Path
    config: RepoConfig
    models: tuple[ResolvedModel, ...]
    errors: tuple[LoadError, ...]
    config_ok: bool  # False when gitops-kaito.yaml itself is broken: the sync must not prune
    discovered_ids: frozenset[str]  # every model id whose file was found, valid or not: prune must spare them
