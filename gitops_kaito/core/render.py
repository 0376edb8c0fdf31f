"""Renders a resolved model into the Kubernetes objects it needs (ConfigMap, NodeClaims/Machines, Workspace).

Pure: templates are YAML trees whose whole-scalar "{{ .slot }}" markers are replaced by typed values.

How values reach a manifest. A template is parsed once (safely: no aliases, one document) and every
scalar that is exactly ``{{ .slot }}`` is replaced, in the parsed tree, by the slot's value: a string
stays one string, a mapping stays one mapping. Nothing a request contains is ever parsed as YAML or
scanned for markers, so a value such as ``"x\\nfoo: bar"`` or ``"{{ .name }}"`` cannot create fields.
A slot whose value is None removes its key (or list item); a mapping emptied that way goes too.
After substitution the renderer enforces what the sync relies on, whatever a template says: the
apiVersion and kind, the object's name and namespace, the owner labels and the source annotations.

Per provisioning mode (README.md, "provisioning"):
- ``kaito``: Workspace v1beta1 with resource.instanceType; KAITO provisions the nodes.
- ``nodeclaim``: one karpenter.sh/v1 NodeClaim per node, then a bring-your-own Workspace v1beta1.
- ``machine``: one karpenter.sh/v1alpha5 Machine per node, then a Workspace v1alpha1 (legacy KAITO).
- ``aks``: a bring-your-own Workspace v1beta1; the agent pool is made by provision/aks.py and must put
  ``ResolvedModel.label_selector`` on its nodes.
- ``byo``: a bring-your-own Workspace v1beta1 that matches existing nodes by label.
A ConfigMap ``<name>-inference-config`` comes first whenever the request has inference config.

Decisions worth knowing:
- NodeClaims and Machines we own never carry KAITO's reserved labels (kaito.sh/workspace, ...,
  `api/v1beta1/workspace_validation.go` at v0.12.0, `api/v1beta1/labels.go`): KAITO and gpu-provisioner treat objects with those labels as their own (KAITO counts
  and deletes them, gpu-provisioner garbage-collects their agent pools). gpu-provisioner still
  launches ours, because it also accepts any NodeClaim whose nodeClassRef is kaito.sh/KaitoNodeClass.
  The price: its List() filters pools by those labels, so Karpenter's NodeClaim garbage collector may
  delete one of ours whose Node is not Ready; the next sync pass recreates it (same name).
- gpu-provisioner names the AKS agent pool after the NodeClaim/Machine and requires
  ``^[a-z][a-z0-9]{0,11}$``. So NodeClaims for a kaito.sh nodeClassRef, and all Machines, get compact
  names "gk" + hex digest of (model id, index); other NodeClaims get "<name>-<sha8 of model id>-<i>".
  Both are stable across passes and unique across namespaces (NodeClaims and Machines are cluster-scoped).
- gpu-provisioner copies every NodeClaim label into the AKS pool's nodeLabels (kubelet --node-labels),
  and kubelet refuses keys under *.kubernetes.io; that is why the owner labels (ownership.py) all live
  under gitops.kaito.sh/.
- ``suspend: true`` renders no objects (``RenderedModel.suspended``). The model is still desired, so
  its earlier objects are deleted like a removal, but the sync must treat that as intentional and not
  count it against the prune guard.
- resource.count is set only where KAITO reads it: the transformers runtime and legacy v1alpha1. With
  vLLM KAITO estimates the node count itself and count would only make needless immutable changes.
- v1alpha1 has no presetOptions.modelAccessSecret; in machine mode the secret cannot be passed.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import yaml

from gitops_kaito.model import k8snames, ownership
from gitops_kaito.model.kaito import RESERVED_LABEL_KEYS
from gitops_kaito.model.objects import DesiredObject, Manifest, Wave
from gitops_kaito.model.resources import data_path
from gitops_kaito.repo.kinds import Resolved
from gitops_kaito.repo.modelrequest import DEFAULT_SCALE_METRIC, SCALER_KEDA
from gitops_kaito.repo.resolve import ResolvedModel
from gitops_kaito.repo.yamlsource import (
    FAST_DUMPER,
    LocatedDoc,
    SourceError,
    display_path,
    escapes,
    load_yaml_file,
)

if TYPE_CHECKING:
    from gitops_kaito.repo.config import RepoConfig
    from gitops_kaito.repo.rag import ResolvedRag
    from gitops_kaito.repo.resolve import RepoLoad
    from gitops_kaito.repo.tuning import ResolvedTuning

# Template file names (a repository overrides one by putting a file of the same name in templates/).
TEMPLATE_WORKSPACE_NAP = "workspace-v1beta1.yaml"
TEMPLATE_WORKSPACE_BYO = "workspace-v1beta1-byo.yaml"
TEMPLATE_WORKSPACE_LEGACY = "workspace-v1alpha1.yaml"
TEMPLATE_NODECLAIM = "nodeclaim-v1.yaml"
TEMPLATE_MACHINE = "machine-v1alpha5.yaml"
TEMPLATE_INFERENCE_CONFIG = "inference-config.yaml"
TEMPLATE_WORKSPACE_TUNING = "workspace-tuning-v1beta1.yaml"
TEMPLATE_TUNING_CONFIG = "tuning-config.yaml"
TEMPLATE_RAGENGINE = "ragengine-v1beta1.yaml"
TEMPLATE_INFERENCESET = "inferenceset-v1beta1.yaml"

# What each template must produce: overrides may reshape the body but not change the kind.
_EXPECTED_KIND: dict[str, tuple[str, str, bool]] = {  # file -> (apiVersion, kind, namespaced)
    TEMPLATE_WORKSPACE_NAP: ("kaito.sh/v1beta1", "Workspace", True),
    TEMPLATE_WORKSPACE_BYO: ("kaito.sh/v1beta1", "Workspace", True),
    TEMPLATE_WORKSPACE_LEGACY: ("kaito.sh/v1alpha1", "Workspace", True),
    TEMPLATE_NODECLAIM: ("karpenter.sh/v1", "NodeClaim", False),
    TEMPLATE_MACHINE: ("karpenter.sh/v1alpha5", "Machine", False),
    TEMPLATE_INFERENCE_CONFIG: ("v1", "ConfigMap", True),
    TEMPLATE_WORKSPACE_TUNING: ("kaito.sh/v1beta1", "Workspace", True),
    TEMPLATE_TUNING_CONFIG: ("v1", "ConfigMap", True),
    TEMPLATE_RAGENGINE: ("kaito.sh/v1beta1", "RAGEngine", True),
    TEMPLATE_INFERENCESET: ("kaito.sh/v1beta1", "InferenceSet", True),
}
TEMPLATE_FILES = tuple(_EXPECTED_KIND)

CONFIG_KEY = "inference_config.yaml"  # the key KAITO reads in the inference ConfigMap
ANNOTATION_RUNTIME = "kaito.sh/runtime"
ANNOTATION_DO_NOT_DISRUPT = "karpenter.sh/do-not-disrupt"
LABEL_GPU_PRODUCT = "nvidia.com/gpu.product"
LABEL_GPU_COUNT = "nvidia.com/gpu.count"
LABEL_GPU_MEMORY = "nvidia.com/gpu.memory"  # MiB per GPU, as GPU Feature Discovery writes it
LEGACY_PROVISIONER_LABEL = "karpenter.sh/provisioner-name"

_PLACEHOLDER = re.compile(r"\{\{\s*\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_LABEL_VALUE_BAD = re.compile(r"[^A-Za-z0-9._-]+")

# Every slot a template may use; a template naming any other slot is an error (typos fail loudly).
SLOTS = frozenset({
    "name", "namespace", "labels", "annotations", "count", "instance_type", "match_labels", "preset_name",
    "model_access_secret", "config_map", "adapters", "node_class_ref", "requirements", "storage",
    "inference_config", "model", "model_id", "runtime", "nodes", "gpus", "disk_gib", "index",
    # TuningJob
    "method", "tuning_input", "tuning_output", "training_config",
    # private preset images
    "access_mode", "preset_image", "preset_pull_secrets", "partition", "inference_template",
    # RAGDeployment
    "rag_compute", "rag_embedding", "rag_storage", "rag_inference_service", "rag_guardrails",
    "replicas", "template_annotations",
    "expire_after", "termination_grace_period",
})

# keda-kaito-scaler reads these on an InferenceSet and makes its ScaledObject (kaito-project/keda-kaito-scaler;
# KAITO v0.12.0 `website/docs/keda-autoscaler-inference.md`).
KEDA_AUTO_PROVISION = "scaledobject.kaito.sh/auto-provision"
KEDA_MIN_REPLICAS = "scaledobject.kaito.sh/min-replicas"
KEDA_MAX_REPLICAS = "scaledobject.kaito.sh/max-replicas"
KEDA_THRESHOLD = "scaledobject.kaito.sh/threshold"
KEDA_METRIC = "scaledobject.kaito.sh/metricName"


class TemplateError(SourceError):
    """A built-in or repository template that cannot be used; str() names the file (and line)."""


class RenderError(ValueError):
    """A resolved model that cannot be rendered in its provisioning mode (e.g. no SKU where one is needed)."""


@dataclass(frozen=True)
class RenderedModel:
    """One request's desired objects (any kind), in apply order. Empty when it is suspended."""

    model: Resolved
    objects: tuple[DesiredObject, ...]

    @property
    def suspended(self) -> bool:
        """True when the request says suspend: its objects are intentionally absent, not lost."""
        return bool(self.model.request.suspend)


# A template compiled for filling: slots -> the filled tree (or _OMIT). Built once per parsed template.
Filler = Callable[[Mapping[str, Any]], Any]


@dataclass(frozen=True)
class Template:
    """A parsed template: the tree, where it came from (for errors) and the line of every node."""

    file_name: str
    shown_path: str
    doc: LocatedDoc
    filler: Filler | None = field(default=None, compare=False, repr=False)


# --------------------------------------------------------------------------------------------------
# Templates: finding, parsing, checking, filling.
# --------------------------------------------------------------------------------------------------

def builtin_templates_dir() -> Path:
    return data_path("templates")


def load_template(file_name: str, templates_dir: Path | None = None) -> Template:
    """The repository's override of file_name when templates_dir has one, else the built-in template."""
    if file_name not in _EXPECTED_KIND:
        raise KeyError(file_name)
    if templates_dir is not None:
        override = templates_dir / file_name
        # Anything of that name is the override, read or refused: a FIFO, a folder or a dangling symlink must not
        # quietly fall back to the built-in template (nor hang a pass), a symlink must stay inside the repository.
        if os.path.lexists(override):
            if escapes(override, templates_dir.parent):
                raise TemplateError(display_path(override, templates_dir.parent), None, None,
                                    "symlink points outside the repository: refused")
            return _parse_template_cached(str(override), str(templates_dir.parent), *_stamp(override))
    builtin = builtin_templates_dir() / file_name
    return _parse_template_cached(str(builtin), str(builtin.parent.parent), *_stamp(builtin))


def load_templates(templates_dir: Path | None) -> dict[str, Template]:
    """Every template (overrides included), by file name; raises TemplateError for a broken one.

    Hand the result to render_model so a pass resolves each template once, not once per object.
    """
    return {name: load_template(name, templates_dir) for name in TEMPLATE_FILES}


def check_templates(templates_dir: Path | None) -> None:
    """Parse every template (overrides included) so a broken one is reported before any rendering."""
    load_templates(templates_dir)


def _stamp(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except OSError:
        return (0, 0)
    return (st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=64)
def _parse_template_cached(path: str, root: str, _mtime_ns: int, _size: int) -> Template:
    # mtime and size are part of the cache key so an edited override is read again.
    file_path = Path(path)
    try:
        doc = load_yaml_file(file_path, Path(root))
    except SourceError as err:
        raise TemplateError(err.path, err.line, err.column, f"template cannot be read: {err.message}")
    template = Template(file_path.name, doc.path or file_path.name, doc)
    _check_template(template)
    return replace(template, filler=_compile(template, doc.data, ()))


def _fail(template: Template, json_path: Sequence[str | int], message: str) -> TemplateError:
    pos = template.doc.position_of(json_path)
    return TemplateError(template.shown_path, pos[0] if pos else None, pos[1] if pos else None, message)


def _check_template(template: Template) -> None:
    data = template.doc.data
    if not isinstance(data, dict):
        raise _fail(template, (), "a template must be a YAML mapping (one Kubernetes object)")
    api_version, kind, _ = _EXPECTED_KIND[template.file_name]
    if data.get("apiVersion") != api_version or data.get("kind") != kind:
        raise _fail(template, ("kind",),
                    f"template must produce apiVersion {api_version} kind {kind}, "
                    f"not {data.get('apiVersion')!r} {data.get('kind')!r}")
    _check_node(template, data, ())


def _check_node(template: Template, node: Any, path: tuple[str | int, ...]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if not isinstance(key, str):
                raise _fail(template, path, f"mapping keys must be strings, not {key!r}")
            if "{{" in key or "}}" in key:
                raise _fail(template, (*path, key), "placeholders are only allowed as whole values, not in keys")
            _check_node(template, value, (*path, key))
    elif isinstance(node, list):
        for i, item in enumerate(node):
            _check_node(template, item, (*path, i))
    elif isinstance(node, str) and ("{{" in node or "}}" in node):
        match = _PLACEHOLDER.fullmatch(node.strip())
        if not match:
            raise _fail(template, path, f"{node!r}: a placeholder must be the whole value, like \"{{{{ .name }}}}\"")
        slot = match.group(1)
        if slot not in SLOTS:
            close = difflib.get_close_matches(slot, sorted(SLOTS), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; known slots: {', '.join(sorted(SLOTS))}"
            raise _fail(template, path, f"unknown placeholder .{slot}{hint}")


_OMIT = object()


def fill(template: Template, slots: Mapping[str, Any]) -> Manifest:
    """The template's tree with every placeholder replaced by a deep copy of its slot value."""
    filler = template.filler or _compile(template, template.doc.data, ())
    result = filler(slots)
    if not isinstance(result, dict):
        raise _fail(template, (), "the template rendered to nothing")
    return result


def _compile(template: Template, node: Any, path: tuple[str | int, ...]) -> Filler:
    """A function filling `node` from slots. Done once per template: filling is then one call per slot and a
    plain copy of everything static, instead of a walk that matched every string against the placeholder form."""
    if isinstance(node, str):
        match = _PLACEHOLDER.fullmatch(node.strip()) if "{{" in node else None
        if match:
            return _slot_filler(template, match.group(1), path)
    elif isinstance(node, dict) and _has_placeholder(node):
        entries = [(key, _compile(template, value, (*path, key))) for key, value in node.items()]

        def fill_mapping(slots: Mapping[str, Any]) -> Any:
            out: dict[str, Any] = {}
            for key, filler in entries:
                filled = filler(slots)
                if filled is not _OMIT:
                    out[key] = filled
            # A mapping that only held omitted slots (presetOptions without a secret) disappears too.
            return out if out else _OMIT
        return fill_mapping
    elif isinstance(node, list) and _has_placeholder(node):
        items = [_compile(template, item, (*path, i)) for i, item in enumerate(node)]

        def fill_list(slots: Mapping[str, Any]) -> Any:
            return [filled for filled in (filler(slots) for filler in items) if filled is not _OMIT]
        return fill_list
    return lambda _slots: _copy(node)


def _slot_filler(template: Template, slot: str, path: tuple[str | int, ...]) -> Filler:
    def fill_slot(slots: Mapping[str, Any]) -> Any:
        if slot not in slots:
            raise _fail(template, path, f"placeholder .{slot} has no value for this kind of object")
        value = slots[slot]
        return _OMIT if value is None else _copy(value)
    return fill_slot


def _has_placeholder(node: Any) -> bool:
    if isinstance(node, str):
        return "{{" in node and bool(_PLACEHOLDER.fullmatch(node.strip()))
    if isinstance(node, dict):
        return any(_has_placeholder(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_placeholder(v) for v in node)
    return False


def _copy(value: Any) -> Any:
    """A deep copy of plain YAML/JSON data (much cheaper than copy.deepcopy); anything else is deep-copied."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return copy.deepcopy(value)


# --------------------------------------------------------------------------------------------------
# Names and labels.
# --------------------------------------------------------------------------------------------------

def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def config_map_name(name: str) -> str:
    return f"{name}-inference-config"


def node_object_names(model: ResolvedModel, config: RepoConfig, kind: str) -> list[str]:
    """Stable names for a model's NodeClaims ("NodeClaim") or Machines ("Machine"), one per node."""
    request = model.request
    count = max(1, int(model.nodes))
    names: list[str] = []
    for i in range(count):
        if kind == "Machine" or _uses_gpu_provisioner(config):
            # gpu-provisioner names the AKS agent pool after the object: ^[a-z][a-z0-9]{0,11}$ (Machines: <= 11).
            length = 9 if kind == "Machine" else 10
            name = "gk" + _digest(f"{request.id}/{i}")[:length]
        else:
            suffix = f"-{_digest(request.id)[:8]}-{i}"
            name = request.name[: 63 - len(suffix)].rstrip("-") + suffix
        names.append(name)
    return names


def _uses_gpu_provisioner(config: RepoConfig) -> bool:
    ref = dict(config.node_class_ref or {})
    return ref.get("group", "kaito.sh") == "kaito.sh"


def _label_value(text: str) -> str:
    """text made into a valid label value (alphanumerics, '-', '_', '.'; at most 63; alnum at both ends)."""
    value = _LABEL_VALUE_BAD.sub("-", text)[:63]
    return value.strip("-_.")


def _match_labels(model: ResolvedModel) -> dict[str, str]:
    labels = dict(model.label_selector)
    if not labels:
        # KAITO requires a labelSelector; the resolver normally supplies one, this is the same default.
        labels = {"apps": model.request.name}
    return dict(sorted(labels.items()))


def _owner_labels(model: ResolvedModel, instance: str) -> dict[str, str]:
    return ownership.owner_labels(model.request.namespace, model.request.name, instance)


def _source_annotations(model: ResolvedModel, revision: str) -> dict[str, str]:
    return {
        ownership.ANNOTATION_REVISION: revision,
        ownership.ANNOTATION_SOURCE_PATH: model.request.path,
    }


# --------------------------------------------------------------------------------------------------
# Slots per object kind.
# --------------------------------------------------------------------------------------------------

def _common_slots(model: ResolvedModel, revision: str, instance: str) -> dict[str, Any]:
    request = model.request
    return {
        "name": request.name,
        "namespace": request.namespace,
        "labels": _owner_labels(model, instance),
        "annotations": _source_annotations(model, revision),
        "model": model.preset.hf_id,
        "model_id": request.id,
        "runtime": request.runtime,
        "nodes": int(model.nodes),
        "gpus": int(model.gpus),
        "disk_gib": int(model.disk_gib),
        "preset_name": model.preset.name,
        "instance_type": model.sku.name if model.sku is not None else None,
        "match_labels": _match_labels(model),
        "storage": f"{int(model.disk_gib)}Gi",
        "index": None,
        "count": None,
        "model_access_secret": None,
        "config_map": None,
        "adapters": None,
        "node_class_ref": None,
        "requirements": None,
        "inference_config": None,
        "access_mode": None,
        "partition": None,
        "inference_template": None,
        "preset_image": None,
        "preset_pull_secrets": None,
        "expire_after": None,
        "termination_grace_period": None,
    }


def _inference_config_text(model: ResolvedModel) -> str:
    params = {str(k): _plain(v) for k, v in model.request.config}
    # The keys KAITO's inference_api.py reads beside vllm (presets/workspace/inference/vllm/inference_api.py at
    # v0.12.0): max_probe_steps, kv_cache_cpu_memory_utilization.
    top = {str(k): _plain(v) for k, v in model.request.inference_config}
    document = {"vllm": params, **top} if params else top
    # libyaml's emitter: the pure-Python one was ~9 % of rendering 5,000 models; the text is the same.
    return yaml.dump(document, Dumper=FAST_DUMPER, sort_keys=True, default_flow_style=False, allow_unicode=True)


def _plain(value: Any) -> Any:
    """Frozen request values (tuples, mappings) back to plain YAML/JSON types."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def _workspace_slots(model: ResolvedModel, revision: str, legacy: bool, instance: str) -> dict[str, Any]:
    request = model.request
    slots = _common_slots(model, revision, instance)
    annotations = dict(request.annotations)
    if request.runtime == "transformers":
        annotations[ANNOTATION_RUNTIME] = "transformers"
    annotations.update(_source_annotations(model, revision))
    slots["annotations"] = dict(sorted(annotations.items()))
    if legacy or request.runtime == "transformers":
        slots["count"] = max(1, int(model.nodes))
    if not legacy:
        slots["model_access_secret"] = request.model_access_secret
    if request.has_config:
        slots["config_map"] = config_map_name(request.name)
    if request.partition:
        slots["partition"] = {str(k): _plain(v) for k, v in request.partition}
    if request.template is not None:  # KAITO: preset XOR template
        slots["preset_name"] = None
        slots["inference_template"] = _plain(request.template)
    if request.preset_image:
        slots["access_mode"] = "private"
        slots["preset_image"] = request.preset_image
        slots["preset_pull_secrets"] = list(request.preset_pull_secrets) or None
    if request.adapters:
        adapters = []
        for adapter in request.adapters:
            source: dict[str, Any] = {"name": adapter.name}
            if adapter.image:
                source["image"] = adapter.image
            if adapter.image_pull_secrets:
                source["imagePullSecrets"] = list(adapter.image_pull_secrets)
            if adapter.volume is not None:
                source["volumeSource"] = _plain(adapter.volume)
            entry: dict[str, Any] = {"source": source}
            if adapter.strength is not None:
                entry["strength"] = str(adapter.strength)
            adapters.append(entry)
        slots["adapters"] = adapters
    return slots


def _inferenceset_slots(model: ResolvedModel, revision: str, config: RepoConfig) -> dict[str, Any]:
    """An InferenceSet's slots: the Workspace's (its template's inference and resource are a Workspace's), the
    replica count unless an autoscaler owns it, and the keda-kaito-scaler annotations."""
    request = model.request
    slots = _workspace_slots(model, revision, legacy=False, instance=config.instance)
    slots["count"] = None  # not part of an InferenceSet template (children get their count from KAITO)
    if model.provisioning == "byo":
        slots["instance_type"] = None  # KAITO's webhook: must be empty when nodeProvisioner is byo
    scale = request.autoscale
    slots["replicas"] = model.replicas if scale is None else None  # an autoscaler's: set only at creation
    # Children get their annotations only from spec.template.metadata: the runtime must be there too.
    runtime = dict(request.annotations).get(ANNOTATION_RUNTIME) or (
        "transformers" if request.runtime == "transformers" else None)
    slots["template_annotations"] = {ANNOTATION_RUNTIME: runtime} if runtime else None
    if scale is not None and scale.scaler == SCALER_KEDA:
        keda = {KEDA_AUTO_PROVISION: "true", KEDA_MIN_REPLICAS: str(scale.min_replicas),
                KEDA_MAX_REPLICAS: str(scale.max_replicas), KEDA_METRIC: scale.metric or DEFAULT_SCALE_METRIC}
        if scale.threshold is not None:
            keda[KEDA_THRESHOLD] = str(scale.threshold)
        slots["annotations"] = dict(sorted({**slots["annotations"], **keda}.items()))
    return slots


def _node_labels(model: ResolvedModel, instance: str) -> dict[str, str]:
    """Labels a GPU node of this model carries: the Workspace selector plus what KAITO reads on BYO nodes."""
    sku = model.sku
    assert sku is not None
    labels = {k: v for k, v in _match_labels(model).items() if k not in RESERVED_LABEL_KEYS}
    labels[LABEL_GPU_PRODUCT] = _label_value(sku.gpu_model) or "unknown"
    labels[LABEL_GPU_COUNT] = str(int(sku.gpu_count))
    labels[LABEL_GPU_MEMORY] = str(round(float(sku.gpu_memory_per_gpu_gib) * 1024))
    labels.update(_owner_labels(model, instance))
    return dict(sorted(labels.items()))


def _nodeclaim_slots(model: ResolvedModel, config: RepoConfig, revision: str, name: str, index: int
                     ) -> dict[str, Any]:
    sku = model.sku
    assert sku is not None
    slots = _common_slots(model, revision, config.instance)
    annotations = {ANNOTATION_DO_NOT_DISRUPT: "true", **_source_annotations(model, revision)}
    requirements: list[dict[str, Any]] = [
        {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": [sku.name]},
        {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
    ]
    if sku.cloud == "azure":
        requirements.append({"key": "karpenter.azure.com/sku-name", "operator": "In", "values": [sku.name]})
    elif sku.cloud == "aws":
        requirements.append({"key": "karpenter.k8s.aws/instance-gpu-count", "operator": "Gt", "values": ["0"]})
    ref = dict(config.node_class_ref or {})
    slots.update({
        "name": name,
        "namespace": None,
        "index": index,
        "labels": _node_labels(model, config.instance),
        "annotations": dict(sorted(annotations.items())),
        "requirements": requirements,
        "node_class_ref": {k: str(ref[k]) for k in ("group", "kind", "name") if k in ref},
        "expire_after": config.node_claims.expire_after,
        "termination_grace_period": config.node_claims.termination_grace_period,
    })
    return slots


def _machine_slots(model: ResolvedModel, revision: str, name: str, index: int, instance: str) -> dict[str, Any]:
    sku = model.sku
    assert sku is not None
    slots = _common_slots(model, revision, instance)
    labels = _node_labels(model, instance)
    labels[LEGACY_PROVISIONER_LABEL] = "default"
    slots.update({
        "name": name,
        "namespace": None,
        "index": index,
        "labels": dict(sorted(labels.items())),
        "requirements": [
            {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": [sku.name]},
            {"key": LEGACY_PROVISIONER_LABEL, "operator": "In", "values": ["default"]},
            {"key": "kaito.sh/machine-type", "operator": "In", "values": ["gpu"]},
            {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
            {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
        ],
    })
    return slots


# --------------------------------------------------------------------------------------------------
# Rendering.
# --------------------------------------------------------------------------------------------------

def _finish(template: Template, manifest: Manifest, slots: Mapping[str, Any], model: ResolvedModel,
            revision: str, instance: str) -> Manifest:
    """Enforce identity, ownership and provenance whatever the template (or an override) wrote."""
    api_version, kind, namespaced = _EXPECTED_KIND[template.file_name]
    if manifest.get("apiVersion") != api_version or manifest.get("kind") != kind:
        raise _fail(template, ("kind",), f"template must produce apiVersion {api_version} kind {kind}")
    meta = manifest.get("metadata")
    if not isinstance(meta, dict):
        meta = {}
    labels = {**_string_map(meta.get("labels")), **_owner_labels(model, instance)}
    annotations = {**_string_map(meta.get("annotations")), **_source_annotations(model, revision)}
    if kind == "InferenceSet":
        _check_child_template(template, manifest)
    if kind in ("NodeClaim", "Machine"):
        reserved = sorted(RESERVED_LABEL_KEYS & labels.keys())
        if reserved:
            raise _fail(template, ("metadata", "labels"),
                        f"{kind}s owned by gitops-kaito must not carry KAITO's reserved label(s) "
                        f"{', '.join(reserved)}: KAITO and gpu-provisioner would treat them as their own")
    _check_metadata(template, labels, annotations)
    new_meta: dict[str, Any] = {"name": slots["name"]}
    if namespaced:
        new_meta["namespace"] = model.request.namespace
    new_meta["labels"] = dict(sorted(labels.items()))
    new_meta["annotations"] = dict(sorted(annotations.items()))
    for key, value in meta.items():
        if key not in new_meta and key != "namespace":  # cluster-scoped kinds have none
            new_meta[key] = value
    out: Manifest = {"apiVersion": api_version, "kind": kind, "metadata": new_meta}
    for key, value in manifest.items():
        if key not in out:
            out[key] = value
    return out


def _check_child_template(template: Template, manifest: Manifest) -> None:
    """KAITO copies spec.template.metadata onto every child Workspace it makes: our owner labels or provenance
    there would make KAITO's children look like ours (listed, diffed and pruned as ours)."""
    child_meta = ((manifest.get("spec") or {}).get("template") or {}).get("metadata") or {}
    if not isinstance(child_meta, dict):
        return
    for section in ("labels", "annotations"):
        ours = sorted(k for k in _string_map(child_meta.get(section)) if k.startswith("gitops.kaito.sh/"))
        if ours:
            raise _fail(template, ("spec", "template", "metadata", section),
                        f"spec.template.metadata.{section} must not carry gitops-kaito's own keys "
                        f"({', '.join(ours)}): KAITO copies them onto the InferenceSet's child Workspaces, which "
                        "are KAITO's, not gitops-kaito's")


def _check_metadata(template: Template, labels: Mapping[str, str], annotations: Mapping[str, str]) -> None:
    """Kubernetes' own rules for what a template (a repository's override above all) puts in metadata, checked
    here with the template's line instead of by the API server at apply time."""
    for key, value in labels.items():
        problem = k8snames.qualified_name_problem(key) or k8snames.label_value_problem(value)
        if problem:
            raise _fail(template, ("metadata", "labels"), f"label {problem}")
    problem = k8snames.annotations_problem(annotations)
    if problem:
        raise _fail(template, ("metadata", "annotations"), problem)


def _string_map(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _render_one(file_name: str, templates_dir: Path | None, slots: Mapping[str, Any], model: ResolvedModel,
                revision: str, templates: Mapping[str, Template] | None, instance: str) -> Manifest:
    template = templates[file_name] if templates is not None else load_template(file_name, templates_dir)
    return _finish(template, fill(template, slots), slots, model, revision, instance)


def render_model(model: ResolvedModel, config: RepoConfig, revision: str,
                 templates_dir: Path | None = None, *, templates: Mapping[str, Template] | None = None
                 ) -> RenderedModel:
    """The objects one model needs, in apply order; none when it is suspended.

    templates: load_templates(templates_dir), when rendering many models (otherwise each object looks its
    template up again).
    """
    request = model.request
    if request.suspend:
        return RenderedModel(model, ())
    mode = model.provisioning
    mid = request.id
    objects: list[DesiredObject] = []

    if request.has_config:
        slots = _common_slots(model, revision, config.instance)
        slots["name"] = config_map_name(request.name)
        slots["inference_config"] = _inference_config_text(model)
        manifest = _render_one(TEMPLATE_INFERENCE_CONFIG, templates_dir, slots, model, revision, templates,
                               config.instance)
        objects.append(DesiredObject(manifest, mid, Wave.CONFIG))

    if mode in ("kaito", "nodeclaim", "machine") and model.sku is None:
        raise RenderError(f"{request.path}: provisioning {mode!r} needs a GPU instance type, and none was chosen")

    if mode == "nodeclaim":
        for i, name in enumerate(node_object_names(model, config, "NodeClaim")):
            slots = _nodeclaim_slots(model, config, revision, name, i)
            manifest = _render_one(TEMPLATE_NODECLAIM, templates_dir, slots, model, revision, templates,
                                   config.instance)
            objects.append(DesiredObject(manifest, mid, Wave.NODES))
    elif mode == "machine":
        for i, name in enumerate(node_object_names(model, config, "Machine")):
            slots = _machine_slots(model, revision, name, i, config.instance)
            manifest = _render_one(TEMPLATE_MACHINE, templates_dir, slots, model, revision, templates,
                                   config.instance)
            objects.append(DesiredObject(manifest, mid, Wave.NODES))

    if model.replicas is not None:
        manifest = _render_one(TEMPLATE_INFERENCESET, templates_dir, _inferenceset_slots(model, revision, config),
                               model, revision, templates, config.instance)
        create_only = {"spec": {"replicas": model.replicas}} if request.autoscale is not None else None
        objects.append(DesiredObject(manifest, mid, Wave.WORKLOAD, create_only))
        return RenderedModel(model, tuple(objects))
    if mode == "kaito":
        file_name = TEMPLATE_WORKSPACE_NAP
    elif mode == "machine":
        file_name = TEMPLATE_WORKSPACE_LEGACY
    elif mode in ("nodeclaim", "aks", "byo"):
        file_name = TEMPLATE_WORKSPACE_BYO
    else:
        raise RenderError(f"{request.path}: unknown provisioning mode {mode!r}")
    slots = _workspace_slots(model, revision, legacy=(mode == "machine"), instance=config.instance)
    manifest = _render_one(file_name, templates_dir, slots, model, revision, templates, config.instance)
    objects.append(DesiredObject(manifest, mid, Wave.WORKLOAD))
    return RenderedModel(model, tuple(objects))


# --------------------------------------------------------------------------------------------------
# TuningJob: a tuning Workspace (+ its training ConfigMap).
# --------------------------------------------------------------------------------------------------

def tuning_config_map_name(name: str) -> str:
    return f"{name}-tuning-config"


def training_config_text(sections: Mapping[str, Any]) -> str:
    """training_config.yaml as KAITO parses it: one top-level key training_config holding the sections."""
    return yaml.dump({"training_config": _plain(sections)}, Dumper=FAST_DUMPER, sort_keys=True,
                     default_flow_style=False, allow_unicode=True)


def tuning_input(resolved: ResolvedTuning) -> dict[str, Any]:
    data = resolved.request.input
    out: dict[str, Any] = {}
    if data.urls:
        out["urls"] = list(data.urls)
    if data.image:
        out["image"] = data.image
    if data.image_pull_secrets:
        out["imagePullSecrets"] = list(data.image_pull_secrets)
    if data.volume is not None:
        out["volumeSource"] = _plain(data.volume)
    return out


def tuning_output(resolved: ResolvedTuning) -> dict[str, Any]:
    data = resolved.request.output
    if data.image:
        return {"image": data.image, "imagePushSecret": data.push_secret}
    return {"volumeSource": _plain(data.volume or {})}


def render_tuning(resolved: ResolvedTuning, config: RepoConfig, revision: str, templates_dir: Path | None = None,
                  *, templates: Mapping[str, Template] | None = None) -> RenderedModel:
    """A TuningJob's objects: its training ConfigMap (when it has config), then the tuning Workspace, which carries
    the request's digest so planning can tell a new run (the request changed) from a re-rendering of the same one."""
    request = resolved.request
    model = cast(Any, resolved)  # _finish reads only request.namespace/name/path, which every kind has
    if request.suspend:
        return RenderedModel(model, ())
    if resolved.sku is None:
        raise RenderError(f"{request.path}: a tuning job needs a GPU instance type, and none was chosen")
    mid = request.id
    owner = ownership.owner_labels(request.namespace, request.name, config.instance)
    source = {ownership.ANNOTATION_REVISION: revision, ownership.ANNOTATION_SOURCE_PATH: request.path}
    common: dict[str, Any] = {
        "namespace": request.namespace, "labels": owner, "annotations": source,
        "model": resolved.preset.hf_id, "model_id": mid, "nodes": 1, "gpus": resolved.gpus,
        "disk_gib": resolved.disk_gib, "preset_name": resolved.preset.name, "instance_type": resolved.sku.name,
        "match_labels": dict(sorted(resolved.label_selector)), "method": request.method,
    }
    objects: list[DesiredObject] = []
    if request.config is not None:
        slots = {**common, "name": tuning_config_map_name(request.name),
                 "training_config": training_config_text(request.config)}
        manifest = _render_one(TEMPLATE_TUNING_CONFIG, templates_dir, slots, model, revision, templates,
                               config.instance)
        objects.append(DesiredObject(manifest, mid, Wave.CONFIG))
    annotations = {**dict(request.annotations), **source, ownership.ANNOTATION_REQUEST_DIGEST: request.digest}
    slots = {**common, "name": request.name, "annotations": dict(sorted(annotations.items())),
             "config_map": tuning_config_map_name(request.name) if request.config is not None else None,
             "tuning_input": tuning_input(resolved), "tuning_output": tuning_output(resolved)}
    manifest = _render_one(TEMPLATE_WORKSPACE_TUNING, templates_dir, slots, model, revision, templates,
                           config.instance)
    objects.append(DesiredObject(manifest, mid, Wave.WORKLOAD))
    return RenderedModel(model, tuple(objects))


# --------------------------------------------------------------------------------------------------
# RAGDeployment: a RAGEngine.
# --------------------------------------------------------------------------------------------------

def _drop_none(mapping: Mapping[str, Any]) -> dict[str, Any] | None:
    out = {k: v for k, v in mapping.items() if v is not None and v != {}}
    return out or None


def rag_slots(resolved: ResolvedRag) -> dict[str, Any]:
    """The RAGEngine spec sections (`api/v1beta1/ragengine_types.go` at v0.12.0) from the request."""
    r = resolved.request
    compute = None
    if r.instance_type:
        compute = {"instanceType": r.instance_type,
                   "labelSelector": {"matchLabels": dict(sorted(resolved.label_selector))}}
    if r.embedding_url:
        embedding: dict[str, Any] = {"remote": _drop_none({"url": r.embedding_url,
                                                           "accessSecret": r.embedding_access_secret})}
    else:
        embedding = {"local": _drop_none({"modelID": r.embedding_local_model, "image": r.embedding_local_image,
                                          "imagePullSecret": r.embedding_pull_secret,
                                          "modelAccessSecret": r.embedding_access_secret})}
    storage = _drop_none({
        "persistentVolume": _drop_none({"persistentVolumeClaim": r.storage_claim, "mountPath": r.storage_mount_path})
        if r.storage_claim else None,
        "vectorDB": _drop_none({"engine": r.vector_db_engine, "url": r.vector_db_url,
                                "accessSecret": r.vector_db_secret}) if r.vector_db_engine else None})
    service = None
    if r.context_window is not None:
        service = _drop_none({"url": resolved.llm_endpoint, "accessSecret": r.llm_secret,
                              "contextWindowSize": r.context_window})
    guardrails = None
    if r.guardrails_enabled is not None or r.guardrails_config_map:
        guardrails = _drop_none({"enabled": r.guardrails_enabled if r.guardrails_enabled is not None else True,
                                 "configMapRef": {"name": r.guardrails_config_map} if r.guardrails_config_map
                                 else None})
    return {"rag_compute": compute, "rag_embedding": embedding, "rag_storage": storage,
            "rag_inference_service": service, "rag_guardrails": guardrails}


def render_rag(resolved: ResolvedRag, config: RepoConfig, revision: str, templates_dir: Path | None = None,
               *, templates: Mapping[str, Template] | None = None) -> RenderedModel:
    """A RAGDeployment's RAGEngine (none when suspended)."""
    request = resolved.request
    model = cast(Any, resolved)  # _finish reads only request.namespace/name/path, which every kind has
    if request.suspend:
        return RenderedModel(model, ())
    annotations = {**dict(request.annotations), ownership.ANNOTATION_REVISION: revision,
                   ownership.ANNOTATION_SOURCE_PATH: request.path}
    slots: dict[str, Any] = {
        "name": request.name, "namespace": request.namespace,
        "labels": ownership.owner_labels(request.namespace, request.name, config.instance),
        "annotations": dict(sorted(annotations.items())), "model_id": request.id, "nodes": resolved.nodes,
        "gpus": resolved.gpus, "instance_type": request.instance_type,
        "match_labels": dict(sorted(resolved.label_selector)) or None, **rag_slots(resolved),
    }
    manifest = _render_one(TEMPLATE_RAGENGINE, templates_dir, slots, model, revision, templates, config.instance)
    return RenderedModel(model, (DesiredObject(manifest, request.id, Wave.WORKLOAD),))


# The renderer of each request kind (repo.loader.KINDS), by the request's kind; each takes (resolved, config, revision,
# templates_dir, *, templates).
RENDERERS: dict[str, Callable[..., RenderedModel]] = {
    "ModelDeployment": render_model, "TuningJob": render_tuning, "RAGDeployment": render_rag}


def render_request(resolved: Resolved, config: RepoConfig, revision: str, templates_dir: Path | None = None, *,
                   templates: Mapping[str, Template] | None = None) -> RenderedModel:
    """The objects one request of any kind needs, in apply order (render_model for a ModelDeployment)."""
    renderer = RENDERERS.get(resolved.request.kind)
    if renderer is None:
        raise RenderError(f"{resolved.request.path}: no renderer for kind {resolved.request.kind!r}")
    return renderer(resolved, config, revision, templates_dir, templates=templates)


def repo_templates_dir(root: Path) -> Path | None:
    candidate = root / "templates"
    return candidate if candidate.is_dir() else None


def render_repository(load: RepoLoad, revision: str) -> tuple[RenderedModel, ...]:
    """Every loaded model rendered with the repository's template overrides, ordered by model id.

    Raises TemplateError for a broken override (it would break every model) and RenderError for a model
    that cannot be rendered; callers that want per-model isolation call render_model themselves.
    """
    templates_dir = repo_templates_dir(load.root)
    templates = load_templates(templates_dir)
    models = sorted(load.models, key=lambda m: m.request.id)
    return tuple(render_request(m, load.config, revision, templates_dir, templates=templates) for m in models)


def desired_objects(rendered: Sequence[RenderedModel]) -> list[DesiredObject]:
    """All objects in apply order: every ConfigMap, then every GPU node object, then every Workspace."""
    flat = [obj for r in rendered for obj in r.objects]
    return sorted(flat, key=lambda o: int(o.wave))  # stable: model order kept within a wave


@dataclass(frozen=True)
class Desired:
    """What the repository wants: per-model renders, the flat object list, and what planning must obey."""

    load: RepoLoad
    rendered: tuple[RenderedModel, ...]
    objects: tuple[DesiredObject, ...]
    invalid: tuple[tuple[str, str], ...]  # (model id, message) for models that failed to load or render
    errors: tuple[str, ...]  # every load/render error as "path:line: message"
    templates_ok: bool = True
