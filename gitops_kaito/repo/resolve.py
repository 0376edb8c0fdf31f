"""Resolves a ModelRequest against the catalog and repo config: preset, GPU SKU, node count, price, disk.

Pure: KAITO's admission rules that can be checked before a cluster sees the Workspace are enforced here.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gitops_kaito.model.kaito import KAITO_VERSION, RESERVED_LABEL_KEYS
from gitops_kaito.repo.catalog import (
    Catalog,
    Fit,
    GpuSku,
    Preset,
    RemovedPreset,
    UnknownPreset,
    hf_repo_id_problem,
    price_for,
    uncataloged_preset,
)
from gitops_kaito.repo.config import RepoConfig
from gitops_kaito.repo.kinds import RequestKind, Resolved
from gitops_kaito.repo.modelrequest import (
    KIND,
    MAX_ADAPTERS,
    SCALER_KEDA,
    SCHEMA_FILE,
    LoadError,
    ModelRequest,
    request_from_document,
)

log = logging.getLogger(__name__)

# Modes where a GPU SKU must be known: KAITO (NAP) needs instanceType, and the reconciler creates the nodes itself
# in the others. byo is the only mode that can go without one.
MODES_NEEDING_SKU = ("kaito", "nodeclaim", "machine", "aks")
# Shown by validate, render and plan next to a model outside the catalog (resolve_request accepted it as a Hugging
# Face id): nothing here checked that it exists, fits its SKU, or that KAITO's generator can serve it.
UNCATALOGED_NOTE = (f"not in KAITO {KAITO_VERSION}'s catalog: KAITO generates it from Hugging Face (best effort); "
                    "size not checked")


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
    # An InferenceSet's replicas (the count at creation under an autoscaler); None: one Workspace. nodes is per
    # replica (what KAITO provisions for each child Workspace); gpus and price_per_hour count every replica.
    replicas: int | None = None

    @property
    def total_nodes(self) -> int:
        return self.nodes * (self.replicas if self.replicas is not None else 1)

    @property
    def uncataloged(self) -> bool:
        """An arbitrary Hugging Face model: its size, GPUs and disk are assumptions, not the catalog's."""
        return not self.preset.cataloged

    @property
    def note(self) -> str:
        """What a reader of validate/render/plan must know about this model, or ""."""
        if self.request.template is not None:
            return TEMPLATE_NOTE
        return f"{self.preset.name} is {UNCATALOGED_NOTE}" if self.uncataloged else ""

    @property
    def summary(self) -> str:
        return self.preset.name


@dataclass(frozen=True)
class RepoLoad:
    """Everything read from a model repository: the config, the models that resolved, and every error."""

    root: Path
    config: RepoConfig
    models: tuple[Resolved, ...]  # every request kind; ModelDeployments are ResolvedModel
    errors: tuple[LoadError, ...]
    config_ok: bool  # False when gitops-kaito.yaml itself is broken: the sync must not prune
    discovered_ids: frozenset[str]  # every model id whose file was found, valid or not: prune must spare them
    # namespaces whose folder (or a file in it whose name tells no model) could not be read: prune spares every
    # model of these namespaces
    kept_namespaces: frozenset[str] = frozenset()


class ResolveError(Exception):
    """A request that cannot be served as written; json_path locates the field to blame."""

    def __init__(self, json_path: Sequence[str | int], message: str) -> None:
        super().__init__(message)
        self.json_path = tuple(json_path)
        self.message = message


def resolve_request(request: ModelRequest, catalog: Catalog, config: RepoConfig) -> ResolvedModel:
    """Decide preset, SKU, nodes and selector for one request, or raise ResolveError naming the field."""
    if request.template is not None or not request.model:
        return _resolve_template(request, catalog, config)
    preset = model_preset(request.model, catalog, request.allow_uncataloged)
    if preset.gated and not request.model_access_secret:
        raise ResolveError(("spec", "model"), f"model {preset.hf_id} is gated on Hugging Face: set "
                           "spec.modelAccessSecret to a Secret holding HF_TOKEN")
    _check_runtime(request, preset)
    _check_config(request, preset)
    _check_adapters(request)
    _check_partition(request, preset, catalog)
    label_selector = _label_selector(request)
    replicas = _replicas(request)
    if preset.cataloged:
        sku, fit = _sku_and_fit(request, preset, catalog, config)
    else:
        sku, fit = _uncataloged_sku(request, preset, catalog, config), None
    if fit is None:
        # byo without a SKU, or a model outside the catalog: KAITO estimates its nodes from Hugging Face metadata
        # we do not read, so assume 1 (the SKU, when given, still gives its GPUs and price).
        nodes = request.nodes or 1
        gpus = nodes * sku.gpu_count if sku is not None else 0
        price = price_for(sku, nodes) if sku is not None else None
    else:
        nodes = _nodes(request, fit)
        gpus = nodes * fit.gpus_per_node
        price = price_for(fit.sku, nodes)
    if replicas is not None:
        gpus *= replicas
        price = price_for(sku, nodes * replicas) if sku is not None else None
    return ResolvedModel(
        request=request, preset=preset, sku=sku, fit=fit, nodes=nodes, gpus=gpus,
        provisioning=request.provisioning, price_per_hour=price, disk_gib=preset.disk_gib,
        label_selector=label_selector, replicas=replicas,
    )


TEMPLATE_DISK_GIB = 1024  # what KAITO requests for a node of a template Workspace (`pkg/workspace/resource/node_claim.go`)
TEMPLATE_NOTE = ("a custom pod template: KAITO runs it as written and never applies a later edit of it to what runs "
                 "(a change of the template replaces the Workspace); size not checked")


def template_preset(template: Mapping[str, Any]) -> Preset:
    """What stands in for a preset when a request brings its own pod template: the first container's image."""
    containers = (template.get("spec") or {}).get("containers") or [{}]
    image = str(containers[0].get("image") or "custom")
    return Preset(name=f"template: {image}", hf_id="", family="template", runtimes=("vllm",), model_size_gib=0.0,
                  disk_gib=TEMPLATE_DISK_GIB, token_limit=0, bytes_per_token=0, supports_tuning=False, gated=False,
                  served_name="", status="supported", replacement=None, aliases=(), cataloged=False)


def _resolve_template(request: ModelRequest, catalog: Catalog, config: RepoConfig) -> ResolvedModel:
    """A request with spec.template (KAITO's inference.template: a PodTemplateSpec, no preset;
    `api/v1beta1/workspace_validation.go` at v0.12.0: preset XOR template)."""
    where = ("spec", "template")
    if request.template is None:
        raise ResolveError(("spec",), "spec needs model (a KAITO preset or Hugging Face id) or template (a pod "
                           "template KAITO runs as written)")
    if request.model:
        raise ResolveError(where, "Preset and Template cannot be set at the same time: remove spec.model or "
                           "spec.template")
    containers = (request.template.get("spec") or {}).get("containers")
    if not isinstance(containers, list) or not containers or not all(
            isinstance(c, Mapping) and c.get("name") and c.get("image") for c in containers):
        raise ResolveError(where, "template.spec.containers must list at least one container with a name and an "
                           "image (a Kubernetes PodTemplateSpec)")
    for field_name in ("config", "adapters", "modelAccessSecret", "image"):
        value = {"config": request.config or request.inference_config, "adapters": request.adapters,
                 "modelAccessSecret": request.model_access_secret, "image": request.preset_image}[field_name]
        if value:
            raise ResolveError(("spec", field_name), f"spec.{field_name} applies to a KAITO preset; a template "
                               "Workspace takes everything from its pod template")
    if request.provisioning == "machine":
        raise ResolveError(where, "machine mode targets legacy KAITO (v1alpha1 Workspaces): use kaito, nodeclaim, aks "
                           "or byo with a template")
    preset = template_preset(request.template)
    sku = _uncataloged_sku(request, preset, catalog, config)
    nodes = request.nodes or 1
    replicas = _replicas(request)
    price = price_for(sku, nodes * (replicas or 1)) if sku is not None else None
    gpus = nodes * sku.gpu_count * (replicas or 1) if sku is not None else 0
    return ResolvedModel(request=request, preset=preset, sku=sku, fit=None, nodes=nodes, gpus=gpus,
                         provisioning=request.provisioning, price_per_hour=price, disk_gib=TEMPLATE_DISK_GIB,
                         label_selector=_label_selector(request), replicas=replicas)


# Modes an InferenceSet can be served in: KAITO provisions each replica's nodes (kaito), or the replicas share
# existing nodes (byo; `pkg/nodeprovision/byo_provisioner.go` at v0.12.0 has no per-replica pin).
INFERENCESET_MODES = ("kaito", "byo")


def _replicas(request: ModelRequest) -> int | None:
    """The InferenceSet's replica count (at creation under an autoscaler), or None for a single Workspace; enforces
    the rules KAITO's InferenceSet webhook and the autoscaler bounds imply (`api/v1beta1/inferenceset_validation.go`
    at v0.12.0: replicas >= 0, checked by the schema)."""
    if not request.inference_set:
        return None
    where = ("spec", "replicas") if request.replicas is not None else ("spec", "autoscale")
    if request.provisioning not in INFERENCESET_MODES:
        reason = ("legacy KAITO (<= v0.4.1) has no InferenceSet" if request.provisioning == "machine" else
                  "KAITO provisions an InferenceSet's nodes per replica itself (kaito), or its replicas share "
                  "existing nodes (byo); gitops-kaito cannot size its own nodes for replicas that come and go")
        raise ResolveError(where, f"replicas need provisioning kaito or byo, not {request.provisioning}: {reason}")
    scale = request.autoscale
    if scale is None:
        return request.replicas
    if scale.min_replicas > scale.max_replicas:
        raise ResolveError(("spec", "autoscale", "minReplicas"), f"autoscale.minReplicas {scale.min_replicas} is "
                           f"more than maxReplicas {scale.max_replicas}")
    initial = request.replicas if request.replicas is not None else max(scale.min_replicas, 1)
    if not scale.min_replicas <= initial <= scale.max_replicas:
        raise ResolveError(("spec", "replicas"), f"replicas {initial} (the count at creation) is outside autoscale's "
                           f"bounds {scale.min_replicas}..{scale.max_replicas}")
    if scale.scaler == SCALER_KEDA and scale.threshold is None:
        raise ResolveError(("spec", "autoscale"), "autoscale.threshold is required with the keda-kaito-scaler "
                           "scaler (the metric value above which it adds a replica); or set scaler: external for "
                           "your own HPA or ScaledObject")
    if scale.scaler != SCALER_KEDA:
        for key, value in (("threshold", scale.threshold), ("metric", scale.metric)):
            if value is not None:
                raise ResolveError(("spec", "autoscale", key), f"autoscale.{key} is a keda-kaito-scaler setting; "
                                   "with scaler: external your own autoscaler decides")
    return initial


def _parse_model(data: dict[str, Any], namespace: str, path: str, config: RepoConfig) -> ModelRequest:
    return request_from_document(data, namespace=namespace, path=path, default_runtime=config.runtime,
                                 default_provisioning=config.provisioning)


def _resolve_model(request: Any, catalog: Catalog, config: RepoConfig) -> ResolvedModel:
    assert isinstance(request, ModelRequest)
    return resolve_request(request, catalog, config)


MODEL_DEPLOYMENT = RequestKind(KIND, SCHEMA_FILE, _parse_model, _resolve_model)


def model_preset(model: str, catalog: Catalog, allow_uncataloged: bool = False) -> Preset:
    """The preset spec.model names: a catalog preset (name, alias or HF id, any case), else a Hugging Face id
    org/name that KAITO v0.12.0 generates itself (any name containing '/' passes IsValidPreset, `pkg/utils/plugin/plugin.go` at v0.12.0).
    Raises ResolveError on spec.model: an unknown name without '/' (with close names), a removed preset, an id
    the Hub would refuse, or an id so close to a catalog id that it is likely a typo (unless allow_uncataloged)."""
    # An org/name the catalog does not know never asks catalog.preset: its UnknownPreset would compute the close
    # names (difflib over every preset, ~1.8 ms per model and load) only for them to be dropped.
    if "/" not in model or catalog.find_preset(model) is not None:
        try:
            return catalog.preset(model)
        except RemovedPreset as err:  # its message names the replacement
            # KAITO v0.12 refuses a removed preset's short name, but any org/name passes its check as a model it
            # generates from Hugging Face (`pkg/utils/plugin/plugin.go` at v0.12.0): with the explicit opt-in, deploy the id as such.
            removed_by_id = "/" in model and err.preset.status == "removed" and hf_repo_id_problem(model) is None
            if removed_by_id and allow_uncataloged:
                return uncataloged_preset(model)
            hint = (". To deploy this Hugging Face repository anyway, as a model KAITO generates (best effort), "
                    "set spec.allowUncataloged: true") if removed_by_id else ""
            raise ResolveError(("spec", "model"), f"{err}{hint}")
        except UnknownPreset as err:  # a name without '/': its message carries the close names
            extra = (" (spec.allowUncataloged applies only to Hugging Face ids such as org/model)"
                     if allow_uncataloged else "")
            raise ResolveError(("spec", "model"), f"{err}{extra}")
    problem = hf_repo_id_problem(model)
    if problem:
        raise ResolveError(("spec", "model"), f"spec.model {model!r} is neither a KAITO {KAITO_VERSION} preset nor "
                           f"a Hugging Face model id: {problem}")
    # The typo guard is skipped when opted out of: its matches would only be dropped.
    close = () if allow_uncataloged else catalog.close_hf_ids(model)
    if close:
        # A typo would otherwise reach KAITO, which accepts any org/name, and fail only when the download does.
        raise ResolveError(("spec", "model"), f"spec.model {model!r} is not in KAITO {KAITO_VERSION}'s catalog; did you "
                           f"mean {', '.join(repr(c) for c in close[:3])}? To deploy this exact Hugging Face "
                           "repository anyway, set spec.allowUncataloged: true")
    return uncataloged_preset(model)


def _check_runtime(request: ModelRequest, preset: Preset) -> None:
    if not preset.cataloged and request.provisioning == "machine":
        # Generating a preset from Hugging Face came with KAITO v0.11.0 (kaito-project/kaito#1977); machine mode is for <= v0.4.1.
        raise ResolveError(("spec", "model"), f"{preset.name} is not in KAITO {KAITO_VERSION}'s catalog, and machine "
                           "mode targets legacy KAITO (<= v0.4.1), which cannot generate a model from Hugging Face: "
                           "use provisioning kaito, nodeclaim, aks or byo")
    if not preset.cataloged and request.runtime != "vllm":
        raise ResolveError(("spec", "runtime"), f"runtime is {request.runtime}, but KAITO serves a Hugging Face "
                           f"model outside its catalog ({preset.name}) only with vllm (the transformers runtime "
                           "needs per-model parameters KAITO has only for its legacy preset names): set "
                           "spec.runtime: vllm")
    if request.runtime not in preset.runtimes:
        raise ResolveError(("spec", "runtime"), f"KAITO cannot serve {preset.name} with the {request.runtime} runtime "
                           f"(supported: {', '.join(preset.runtimes)})")


def _check_config(request: ModelRequest, preset: Preset) -> None:
    length = request.max_model_len
    if length is not None and preset.token_limit and length > preset.token_limit:
        raise ResolveError(("spec", "config", "max-model-len"), f"max-model-len {length} exceeds the token limit "
                           f"of {preset.name} ({preset.token_limit})")


MAX_ADAPTER_NAME_WITH_SECRETS = 31
PARTITION_MODES = ("byo", "nodeclaim", "aks")  # bring-your-own nodes: KAITO's node auto-provisioning off
ANNOTATION_BYPASS_RESOURCE_CHECKS = "kaito.sh/bypass-resource-checks"


def _check_partition(request: ModelRequest, preset: Preset, catalog: Catalog) -> None:
    """KAITO's partition rules (`api/v1beta1/workspace_validation.go:708-778` at v0.12.0), offline. Whether the
    cluster's KAITO runs with the enableMIG / enableAccelerator feature gate cannot be known here."""
    if not request.partition:
        return
    part = dict(request.partition)
    where = ("spec", "partition")
    if request.provisioning not in PARTITION_MODES:
        raise ResolveError(where, "GPU partitioning is only supported with bring-your-own nodes (KAITO's "
                           "disableNodeAutoProvisioning=true): use provisioning byo, nodeclaim or aks, not "
                           f"{request.provisioning}")
    if part.get("mode") == "mig":
        if part.get("count") is not None:
            raise ResolveError((*where, "count"), "count is only valid for accelerator mode")
        profile = str(part.get("profile") or "")
        if profile not in catalog.mig_profiles:
            raise ResolveError((*where, "profile"), f"unknown MIG profile {profile!r}; KAITO knows "
                               f"{', '.join(sorted(catalog.mig_profiles))}")
        slice_gib = catalog.mig_profiles[profile]
        bypass = ANNOTATION_BYPASS_RESOURCE_CHECKS in dict(request.annotations)
        if preset.model_size_gib and preset.model_size_gib > slice_gib and not bypass:
            raise ResolveError((*where, "profile"), f"Model {preset.name} needs {preset.model_size_gib:g} GiB, which "
                               f"exceeds the {profile} MIG slice capacity of {slice_gib:g} GiB (annotate "
                               f"{ANNOTATION_BYPASS_RESOURCE_CHECKS} to try anyway)")
    else:  # accelerator (the schema allows only the two modes)
        if part.get("profile") is not None:
            raise ResolveError((*where, "profile"), "profile is not valid for accelerator mode")
        if part.get("count") is None:
            raise ResolveError(where, "missing field(s): partition.count (accelerator mode)")


def _check_adapters(request: ModelRequest) -> None:
    if len(request.adapters) > MAX_ADAPTERS:
        raise ResolveError(("spec", "adapters"), f"{len(request.adapters)} adapters: KAITO allows at most {MAX_ADAPTERS}")
    seen: set[str] = set()
    for index, adapter in enumerate(request.adapters):
        if adapter.name in seen:
            raise ResolveError(("spec", "adapters", index, "name"), f"duplicate adapter name {adapter.name!r}")
        seen.add(adapter.name)
        if sum(1 for source in (adapter.image, adapter.volume, adapter.tuning) if source) != 1:
            raise ResolveError(("spec", "adapters", index), "an adapter has exactly one of image, volume and tuning "
                               "(a TuningJob of this namespace whose output it serves)")
        if adapter.volume is not None and len(adapter.volume) != 1:
            raise ResolveError(("spec", "adapters", index, "volume"), "volume is one Kubernetes volume source, e.g. "
                               "{persistentVolumeClaim: {claimName: adapters}}")
        if adapter.image_pull_secrets and len(adapter.name) > MAX_ADAPTER_NAME_WITH_SECRETS:
            # KAITO names the projected volume docker-config-<name>-inference-adapter, at most 63 characters
            # (`pkg/workspace/manifests/manifests.go` at v0.12.0).
            raise ResolveError(("spec", "adapters", index, "name"), f"adapter name {adapter.name!r} is longer than "
                               f"{MAX_ADAPTER_NAME_WITH_SECRETS} characters, which KAITO needs with imagePullSecrets")
        if adapter.strength is not None and request.runtime == "vllm":
            raise ResolveError(("spec", "adapters", index, "strength"),
                               "the vllm runtime does not support adapter strength: remove it or use transformers")


def _label_selector(request: ModelRequest) -> tuple[tuple[str, str], ...]:
    if not request.node_selector:
        return (("apps", request.name),)  # what KAITO's own examples use
    kept = tuple((k, v) for k, v in request.node_selector if k not in RESERVED_LABEL_KEYS)
    if not kept:
        raise ResolveError(("spec", "nodeSelector"), "nodeSelector has only KAITO-reserved keys "
                           f"({', '.join(k for k, _ in request.node_selector)}): KAITO rejects such a labelSelector")
    if len(kept) < len(request.node_selector):
        # KAITO drops reserved keys with a warning; dropping them here keeps the plan equal to what KAITO stores.
        log.warning("%s: KAITO-reserved nodeSelector keys dropped", request.path)
    return kept


def _sku_and_fit(request: ModelRequest, preset: Preset, catalog: Catalog,
                 config: RepoConfig) -> tuple[GpuSku | None, Fit | None]:
    clouds = tuple(config.clouds)
    if request.instance_type is None:
        if request.provisioning not in MODES_NEEDING_SKU:
            return None, None  # byo: the nodes exist already; the labelSelector is all KAITO needs
        try:
            fit = catalog.choose_sku(preset, clouds, request.max_model_len)
        except LookupError:
            raise ResolveError(("spec", "model"), f"no GPU SKU in the allowed clouds ({', '.join(clouds)}) fits "
                               f"{preset.name} ({_size(preset)}); see `gitops-kaito catalog fit {preset.name}`")
        return fit.sku, fit
    sku = catalog.sku(request.instance_type, clouds)
    if sku is None:
        raise ResolveError(("spec", "instanceType"), _unknown_sku_message(request.instance_type, catalog, clouds))
    fit = catalog.fit(preset, sku, request.max_model_len)
    if not fit.fits:
        raise ResolveError(("spec", "instanceType"), f"SKU too small: {fit.reason}")
    if request.runtime == "transformers" and fit.nodes > 1:
        raise ResolveError(("spec", "instanceType"), f"{preset.name} needs {fit.nodes} nodes of {sku.name}, and "
                           "KAITO's transformers runtime cannot serve a model across nodes: use a larger SKU or vllm")
    return sku, fit


def _uncataloged_sku(request: ModelRequest, preset: Preset, catalog: Catalog, config: RepoConfig) -> GpuSku | None:
    clouds = tuple(config.clouds)
    if request.instance_type is None:
        if request.provisioning not in MODES_NEEDING_SKU:
            return None  # byo: the nodes exist already, as for a catalog preset
        raise ResolveError(("spec", "model"), f"spec.instanceType is required for {preset.name}: it is not in "
                           f"KAITO {KAITO_VERSION}'s catalog, so gitops-kaito cannot size it or choose a GPU SKU; "
                           "set instanceType to a SKU whose GPUs hold it (`gitops-kaito catalog skus`)")
    sku = catalog.sku(request.instance_type, clouds)
    if sku is None:
        raise ResolveError(("spec", "instanceType"), _unknown_sku_message(request.instance_type, catalog, clouds))
    return sku


def _unknown_sku_message(name: str, catalog: Catalog, clouds: Sequence[str]) -> str:
    elsewhere = catalog.sku(name)
    if elsewhere is not None:
        return (f"{elsewhere.name} is a {elsewhere.cloud} SKU, and this repo allows {', '.join(clouds)} "
                "(set clouds in gitops-kaito.yaml)")
    # KAITO's webhook lets unknown Azure Standard_N*/Standard_D* names through, but its node estimator then fails
    # with "Unsupported SKU" and the Workspace never gets nodes: refuse them here, in the pull request.
    names = [s.name for s in catalog.skus(clouds)]
    hint = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    suggestion = f"; did you mean {', '.join(repr(h) for h in hint)}?" if hint else ""
    return (f"unknown GPU instance type {name!r} for {', '.join(clouds)}{suggestion} "
            "(list them with `gitops-kaito catalog skus`)")


def _nodes(request: ModelRequest, fit: Fit) -> int:
    if request.nodes is None:
        return fit.nodes
    if request.nodes < fit.nodes:
        raise ResolveError(("spec", "nodes"), f"nodes is {request.nodes}, but {fit.preset.name} "
                           f"({_size(fit.preset)}) needs {fit.nodes} nodes of {fit.sku.name} "
                           f"({fit.sku.gpu_count} x {fit.sku.gpu_memory_per_gpu_gib:g} GiB GPU memory each) "
                           "by KAITO's estimate")
    return request.nodes


def _size(preset: Preset) -> str:
    size = preset.model_size_gib
    return f"{size:g} GiB of weights" if size else "size unknown"
