"""KAITO's validating webhook for Workspaces (`validation.workspace.kaito.sh`) as the emulator enforces it: the
create and update rules of `api/v1beta1/workspace_validation.go` and `inference_config_validation.go` at v0.12.0.

Messages are knative FieldErrors as KAITO builds them (`invalid value: <v>: <path>`, `missing field(s): <paths>`,
`<message>: <path>`), one per line, sorted. The cluster's shape is the sandbox's: NAP on (`nap`, `karpenter`) or
off (`byo`), CLOUD_PROVIDER `cloud`. Requests through kaito.sh/v1alpha1 get legacy KAITO's (<= v0.4.1) rules
as the simulated legacy controller knows them: a DNS-1123 name and exactly one of inference or tuning.

Approximations, stated openly:
- A Workspace without `inference.config` is admitted as if KAITO's `inference-params-template` ConfigMap were in
  its release namespace (every KAITO install has it); a named ConfigMap is checked as KAITO checks it.
- Preset names: a name with '/' is valid (any Hugging Face id), else a catalog preset that KAITO v0.12.0 still
  serves by that name; deprecated ones (phi-2) get KAITO's deprecation message as well.
- Memory: `model_size_gib` from the catalog stands for TotalSafeTensorFileSize; quantities print as GiB.
- Tuning: method, count, partition, the preset and exactly one input/output are checked; the training ConfigMap
  and URL rules are not. Feature gates are KAITO's defaults (no MIG, accelerator or model streaming).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml

from gitops_kaito.model.kaito import RESERVED_LABEL_KEYS
from gitops_kaito.repo.yamlsource import FAST_LOADER
from gitops_kaito.sandbox.admission import CREATE, ClusterView, Review, Webhook
from gitops_kaito.sandbox.controllers.gpus import find_preset, find_sku

NAME = "validation.workspace.kaito.sh"
GROUP = "kaito.sh"
LEGACY_API_VERSION = "kaito.sh/v1alpha1"
MAX_ADAPTERS = 10
GPU_LABELS = ("nvidia.com/gpu.product", "nvidia.com/gpu.count", "nvidia.com/gpu.memory")
IMAGE_FAMILIES = ("ubuntu", "azurelinux")
PERFORMANCE_MODES = ("balanced", "interactivity", "throughput")
ANNOTATION_RUNTIME = "kaito.sh/runtime"
ANNOTATION_BYPASS = "kaito.sh/bypass-resource-checks"
ANNOTATION_IMAGE_FAMILY = "kaito.sh/node-image-family"
ANNOTATION_PERFORMANCE = "kaito.sh/performance-mode"
ANNOTATION_LOCAL_WEIGHTS = "kaito.sh/use-local-weights"
CONFIG_KEY = "inference_config.yaml"
AZURE_UNLISTED_PREFIXES = ("standard_n", "standard_d")  # pass on Azure without a memory check (N_SERIES/D_SERIES)
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")  # fullmatch: '$' would let a trailing newline through
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")

Obj = Mapping[str, Any]


def generic(message: str, *paths: str) -> str:
    return f"{message}: {', '.join(paths)}" if paths else message


def invalid_value(value: Any, path: str) -> str:
    return f"invalid value: {value}: {path}"


def missing(*paths: str) -> str:
    return f"missing field(s): {', '.join(paths)}"


def workspace_webhook(node_provisioning: str = "nap", cloud: str = "azure") -> Webhook:
    """The webhook of a KAITO whose --node-provisioner turns NAP on ("nap": gpu-provisioner, "karpenter") or off
    ("byo"); `cmd/workspace/main.go` at v0.12.0."""
    nap = node_provisioning in ("nap", "karpenter")

    def validate(review: Review, view: ClusterView) -> list[str]:
        ws = review.obj
        errors = _name(ws)
        if review.api_version == LEGACY_API_VERSION:
            if bool(ws.get("inference")) == bool(ws.get("tuning")):
                errors.append(generic("Either Inference or Tuning must be specified, but not both", "spec"))
            return sorted(errors)
        if review.operation == CREATE or review.old is None:
            errors += _create(ws, view, nap, cloud)
        else:
            errors += _update(ws, review.old, nap)
        return sorted(dict.fromkeys(errors))

    return Webhook(NAME, GROUP, "Workspace", validate)


def _name(ws: Obj) -> list[str]:
    name = str((ws.get("metadata") or {}).get("name") or "")
    problems = []
    if len(name) > 63:
        problems.append("must be no more than 63 characters")
    if not _DNS_LABEL.fullmatch(name):
        problems.append("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
                        "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "
                        "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
    return [invalid_value(", ".join(problems), "name")] if problems else []


def _annotations(ws: Obj) -> dict[str, str]:
    return {str(k): str(v) for k, v in ((ws.get("metadata") or {}).get("annotations") or {}).items()}


def _runtime(ws: Obj) -> str:
    return _annotations(ws).get(ANNOTATION_RUNTIME, "vllm").lower() or "vllm"


# ---------------------------------------------------------------------------------------------------------- create

def _create(ws: Obj, view: ClusterView, nap: bool, cloud: str) -> list[str]:
    resource: Obj = ws.get("resource") or {}
    inference: Obj | None = ws.get("inference") or None
    tuning: Obj | None = ws.get("tuning") or None
    errors: list[str] = []
    if inference is None and tuning is None:
        errors.append(generic("Either Inference or Tuning must be specified, not neither", "spec"))
    if inference is not None and tuning is not None:
        errors.append(generic("Either Inference or Tuning must be specified, but not both", "spec"))
    instance_type = str(resource.get("instanceType") or "")
    if not nap and instance_type:
        errors.append(invalid_value("instanceType must be empty when node auto-provisioning is disabled "
                                    "(BYO scenario)", "spec.resource.instanceType"))
    if nap and not instance_type:
        errors.append(missing("spec.instanceType is required when node auto-provisioning is enabled",
                              "spec.resource.instanceType"))
    annotations = _annotations(ws)
    family = annotations.get(ANNOTATION_IMAGE_FAMILY)
    if family is not None and family.lower() not in IMAGE_FAMILIES:
        errors.append(invalid_value(f'unsupported node image family "{family}", supported values are azurelinux, '
                                    f"ubuntu", f'spec.metadata.annotations["{ANNOTATION_IMAGE_FAMILY}"]'))
    mode = annotations.get(ANNOTATION_PERFORMANCE)
    if mode is not None and mode not in PERFORMANCE_MODES:
        errors.append(invalid_value(f'"{mode}" is not a valid performance mode; choose one of: balanced, '
                                    f"interactivity, throughput", f"metadata.annotations[{ANNOTATION_PERFORMANCE}]"))
    local = annotations.get(ANNOTATION_LOCAL_WEIGHTS)
    if local is not None and local not in ("true", "false"):
        errors.append(invalid_value(f'"{local}" must be "true" or "false"',
                                    f"metadata.annotations[{ANNOTATION_LOCAL_WEIGHTS}]"))
    if inference is not None:
        errors += _resource_with_inference(ws, resource, inference, view, nap, cloud)
        errors += _inference_create(ws, inference)
        errors += _inference_config(ws, inference, view)
    if tuning is not None:
        errors += _tuning_create(resource, tuning)
    return errors


def preset_problem(name: str) -> tuple[bool, bool]:
    """(valid, deprecated) as KAITO's plugin.IsValidPreset and the deprecation check see a preset name."""
    if "/" in name:
        return True, False
    preset = find_preset(name)
    if preset is None or str(preset.name).lower() != name.lower():
        return False, False
    return preset.status == "supported", preset.status == "deprecated"


def _preset_name(inference: Obj) -> str:
    return str(((inference.get("preset") or {}).get("name")) or "")


def _match_labels(resource: Obj) -> tuple[dict[str, str] | None, str]:
    """metav1.LabelSelectorAsMap: matchLabels plus single-value In expressions; (None, why) otherwise."""
    selector = resource.get("labelSelector") or {}
    out = {str(k): str(v) for k, v in (selector.get("matchLabels") or {}).items()}
    for expr in selector.get("matchExpressions") or []:
        op, values = expr.get("operator"), expr.get("values") or []
        if op != "In":
            return None, f'operator "{op}" without a single value cannot be converted into the old label selector ' \
                         f"format"
        if len(values) != 1:
            return None, f'operator "{op}" without a single value cannot be converted into the old label selector ' \
                         f"format"
        out[str(expr.get("key"))] = str(values[0])
    return out, ""


def _resource_with_inference(ws: Obj, resource: Obj, inference: Obj, view: ClusterView, nap: bool,
                             cloud: str) -> list[str]:
    errors: list[str] = []
    preset_name = _preset_name(inference).lower()
    if inference.get("preset"):
        valid, deprecated = preset_problem(preset_name)
        if not valid:
            if deprecated:
                errors.append(generic(f"Model {preset_name} is deprecated and no longer supported",
                                      "resource.presetName"))
            return errors
    labels, why = _match_labels(resource)
    if labels is None:
        return [invalid_value(why, "resource.labelSelector")]
    match_labels = (resource.get("labelSelector") or {}).get("matchLabels") or {}
    sanitized = {k: v for k, v in labels.items() if k not in RESERVED_LABEL_KEYS}
    if match_labels and not {k for k in match_labels if k not in RESERVED_LABEL_KEYS}:
        return [invalid_value("matchLabels must contain at least one non-reserved label",
                              "resource.labelSelector.matchLabels")]
    instance_type = str(resource.get("instanceType") or "")
    count = int(resource.get("count") or 1)
    node_mem_gib: float | None = None
    if not nap:
        if resource.get("partition"):
            return [generic("MIG support is not enabled, set feature gate enableMIG=true", "resource.partition")]
        if not preset_name:
            return errors
        nodes = [n for n in view.list("", "nodes")
                 if all(((n.get("metadata") or {}).get("labels") or {}).get(k) == v for k, v in sanitized.items())]
        if not nodes:
            return [generic("No nodes found matching the specified label selector", "resource")]
        shapes = []
        for node in nodes:
            node_labels = (node.get("metadata") or {}).get("labels") or {}
            absent = [lbl for lbl in GPU_LABELS if lbl not in node_labels]
            name = (node.get("metadata") or {}).get("name")
            if absent:
                return [generic(f"Failed to get GPU config from nvidia labels on node {name}: missing required GPU "
                                f"labels: {', '.join(absent)}", "resource")]
            shapes.append((node_labels[GPU_LABELS[0]], node_labels[GPU_LABELS[1]], node_labels[GPU_LABELS[2]]))
        if len(set(shapes)) > 1:
            return [generic("Non-uniform GPU product, count or memory: all nodes must have the same GPU product "
                            "for homogeneous placement", "resource")]
        product, gpus, mib = shapes[0]
        count = len(nodes)
        try:
            node_mem_gib = int(gpus) * int(mib) / 1024
        except ValueError:
            return [generic(f"Failed to get GPU config from nvidia labels: {gpus} x {mib} MiB ({product})",
                            "resource")]
    else:
        if resource.get("partition"):
            return [generic("GPU partitioning is only supported with BYO nodes (disableNodeAutoProvisioning=true)",
                            "resource.partition")]
        sku = find_sku(instance_type, cloud)
        if sku is None:
            if cloud != "azure" or not instance_type.lower().startswith(AZURE_UNLISTED_PREFIXES):
                errors.append(invalid_value(f"Unsupported instance type {instance_type}. Supported SKUs: see KAITO's "
                                            f"{cloud} SKU table", "resource.instanceType"))
        else:
            node_mem_gib = float(sku.gpu_memory_gib)
    preset = find_preset(preset_name) if preset_name else None
    runtime = _runtime(ws)
    size = float(preset.model_size_gib or 0) if preset is not None else 0.0
    if preset_name and node_mem_gib is not None and size and (not nap or runtime != "vllm"):
        bypass = ANNOTATION_BYPASS in _annotations(ws)
        total = count * node_mem_gib
        if total < size and not bypass:
            errors.append(invalid_value(f"Insufficient total GPU memory: Instance type {instance_type} has a total of "
                                        f"{total:g}Gi, but preset {preset_name} requires at least {size:g}Gi",
                                        "resource.instanceType"))
        if size > node_mem_gib and runtime == "transformers":
            errors.append(generic("Multi-node distributed inference is not supported with Huggingface Transformers "
                                  "runtime", "resource"))
    return errors


def _inference_create(ws: Obj, inference: Obj) -> list[str]:
    errors: list[str] = []
    preset, template = inference.get("preset"), inference.get("template")
    if not preset and not template:
        errors.append(missing("inference.Preset or Template must be specified"))
    if preset and template:
        errors.append(generic("Preset and Template cannot be set at the same time", "inference"))
    adapters = list(inference.get("adapters") or [])
    if preset:
        name = _preset_name(inference)
        valid, _ = preset_problem(name)
        if not valid:
            return [*errors, invalid_value(f"Unsupported inference preset name {name}", "inference.presetName")]
        found = find_preset(name)
        runtime = _runtime(ws)
        if runtime == "transformers" and found is not None and "transformers" not in found.runtimes:
            errors.append(generic(f"Runtime validation: model {found.served_name} does not support inference with "
                                  f"Huggingface Transformers runtime", "inference"))
        if runtime == "vllm" and any(a.get("strength") is not None for a in adapters):
            errors.append(generic("Runtime validation: vLLM does not support adapter strength", "inference"))
    if len(adapters) > MAX_ADAPTERS:
        errors.append(generic(f"Number of Adapters exceeds the maximum limit, maximum of {MAX_ADAPTERS} allowed",
                              "inference"))
    errors += _duplicate_adapters(adapters)
    return errors


def _duplicate_adapters(adapters: list[Any]) -> list[str]:
    seen: set[str] = set()
    errors = []
    for adapter in adapters:
        name = str(((adapter or {}).get("source") or {}).get("name") or "")
        if name in seen:
            errors.append(generic(f"Duplicate adapter source name found: {name}", "inference"))
        seen.add(name)
    return errors


def _inference_config(ws: Obj, inference: Obj, view: ClusterView) -> list[str]:
    """validateInferenceConfig: vLLM only; the ConfigMap must already exist in the Workspace's namespace."""
    if _runtime(ws) != "vllm" or not inference.get("config"):
        return []
    name, namespace = str(inference["config"]), str((ws.get("metadata") or {}).get("namespace") or "")
    cm = view.get("", "configmaps", namespace, name)
    if cm is None:
        return [generic(f"ConfigMap '{name}' specified in 'config' not found in namespace '{namespace}'", "config")]
    text = (cm.get("data") or {}).get(CONFIG_KEY)
    if text is None:
        return [missing(f"{CONFIG_KEY} in ConfigMap")]
    try:
        doc = yaml.load(text, Loader=FAST_LOADER) or {}
        vllm = doc.get("vllm") if isinstance(doc, dict) else None
        if vllm is not None and (not isinstance(vllm, dict) or any(isinstance(v, (dict, list)) for v in vllm.values())):
            raise yaml.YAMLError("vllm must be a map of strings")
    except yaml.YAMLError as err:
        return [generic(f"Failed to parse {CONFIG_KEY}: {err}", CONFIG_KEY)]
    raw = (vllm or {}).get("max-model-len")
    preset = find_preset(_preset_name(inference)) if inference.get("preset") else None
    if raw is None or str(raw).strip() == "" or preset is None or not preset.token_limit:
        return []
    try:
        value = int(str(raw).strip())
    except ValueError as err:
        return [invalid_value(f"max-model-len must be an integer: {err}", "max-model-len")]
    if value > int(preset.token_limit):
        return [invalid_value(f"max-model-len {value} exceeds model's maximum supported context window "
                              f"{preset.token_limit} (ModelTokenLimit)", "max-model-len")]
    return []


def _tuning_create(resource: Obj, tuning: Obj) -> list[str]:
    errors: list[str] = []
    if int(resource.get("count") or 1) > 1:
        errors.append(invalid_value("Tuning does not currently support multinode configurations. Please set the node "
                                    "count to 1. Future support with DeepSpeed will allow this.", "resource.count"))
    if resource.get("partition"):
        errors.append(invalid_value("GPU partitioning is not supported for tuning workloads", "resource.partition"))
    method = str(tuning.get("method") or "")
    if method.lower() not in ("lora", "qlora"):
        errors.append(invalid_value(method, "tuning.Method"))
    preset = tuning.get("preset")
    if not preset:
        errors.append(missing("tuning.Preset"))
    elif not preset_problem(str(preset.get("name") or ""))[0]:
        errors.append(invalid_value(f"Unsupported tuning preset name {preset.get('name')}", "tuning.presetName"))
    source = tuning.get("input") or {}
    if sum(1 for k in ("urls", "volumeSource", "image") if source.get(k)) != 1:
        errors.append(generic("Exactly one of URLs, Volume, or Image must be specified", "tuning.Input.Image",
                              "tuning.Input.URLs", "tuning.Input.Volume"))
    output = tuning.get("output") or {}
    if output.get("image") and not output.get("imagePushSecret"):
        errors.append(missing("tuning.Output.Must specify imagePushSecret with destination image"))
    if sum(1 for k in ("volumeSource", "image") if output.get(k)) != 1:
        errors.append(missing("tuning.Output.Exactly one of Volume or Image must be specified"))
    return errors


# ---------------------------------------------------------------------------------------------------------- update

def _update(ws: Obj, old: Obj, nap: bool) -> list[str]:
    errors: list[str] = []
    for section in ("inference", "tuning"):
        if bool(ws.get(section)) != bool(old.get(section)):
            errors.append(generic(f"{section.capitalize()} field cannot be toggled once set", f"spec.{section}"))
    new_res: Obj = ws.get("resource") or {}
    old_res: Obj = old.get("resource") or {}
    if new_res.get("count") is not None and old_res.get("count") is not None \
            and new_res.get("count") != old_res.get("count"):
        errors.append(generic("field is immutable", "resource.count"))
    if new_res.get("partition") != old_res.get("partition"):
        errors.append(generic("field is immutable", "resource.partition"))
    new_type, old_type = str(new_res.get("instanceType") or ""), str(old_res.get("instanceType") or "")
    if not nap:
        if not old_type and new_type:
            errors.append(invalid_value("instanceType must be empty when node auto-provisioning is disabled "
                                        "(BYO scenario)", "resource.instanceType"))
        elif old_type and new_type and new_type != old_type:
            errors.append(invalid_value("instanceType cannot be changed once set", "resource.instanceType"))
    elif not new_type:
        errors.append(missing("resource.instanceType is required when node auto-provisioning is enabled",
                              "resource.instanceType"))
    elif old_type and old_type != new_type:
        errors.append(generic("instanceType cannot be changed once set when node auto-provisioning is enabled",
                              "resource.instanceType"))
    new_labels, _ = _match_labels(new_res)
    old_labels, _ = _match_labels(old_res)
    if new_labels is None or old_labels is None:
        errors.append(generic("Only allow matchLabels or 'IN' matchExpression", "resource.labelSelector"))
    elif new_labels != old_labels:
        errors.append(generic("field is immutable", "resource.labelSelector"))
    inference, old_inference = ws.get("inference"), old.get("inference")
    if inference and old_inference:
        if inference.get("preset") != old_inference.get("preset"):
            errors.append(generic("field is immutable", "inference.preset"))
        if bool(inference.get("template")) != bool(old_inference.get("template")):
            errors.append(generic("field cannot be unset/set if it was set/unset", "inference.template"))
        adapters = list(inference.get("adapters") or [])
        for adapter in adapters:
            errors += _adapter(adapter or {})
        errors += _duplicate_adapters(adapters)
    tuning, old_tuning = ws.get("tuning"), old.get("tuning")
    if tuning and old_tuning:
        if tuning.get("preset") != old_tuning.get("preset"):
            errors.append(generic("Preset cannot be changed", "tuning.Preset"))
        if str(tuning.get("method") or "").lower() != str(old_tuning.get("method") or "").lower():
            errors.append(generic("Method cannot be changed", "tuning.Method"))
    return errors


def _adapter(adapter: Obj) -> list[str]:
    source = adapter.get("source")
    if not source:
        return [missing("Source")]
    errors = []
    name = str(source.get("name") or "")
    if not name:
        errors.append(missing("Name of Adapter field must be specified"))
    elif len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name):
        errors.append(invalid_value("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                                    "characters, '-' or '.'", "adapters.source.name"))
    if not source.get("image") and not source.get("volumeSource"):
        errors.append(generic("Either Image or Volume must be specified for adapter source", "adapters.source"))
    if source.get("urls"):
        errors.append(generic("URLs are not supported as adapter source", "adapters.source.urls"))
    strength = adapter.get("strength")
    if strength is not None:
        try:
            value = float(str(strength))
        except ValueError:
            return [*errors, generic(f"Invalid strength value for Adapter '{name}': {strength}", "adapter")]
        if not 0 <= value <= 1:
            errors.append(generic(f"Strength value for Adapter '{name}' must be between 0 and 1", "adapter"))
    return errors
