"""Pure: a live KAITO Workspace or InferenceSet that gitops-kaito does not manage -> the model request file that
adopts it. An InferenceSet's own replicas (child Workspaces) are KAITO's: never imported.

Also checks the request renders back to the same object in every immutable field, so adoption never replaces.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jsonpatch
import yaml

from gitops_kaito.core.plan import immutable_changes
from gitops_kaito.core.render import ANNOTATION_RUNTIME, CONFIG_KEY, RenderedModel
from gitops_kaito.model.objects import ObjectRef, comparable, project
from gitops_kaito.model.ownership import ANNOTATION_ADOPT, is_owned, kaito_owned
from gitops_kaito.repo.catalog import Catalog
from gitops_kaito.repo.config import RepoConfig
from gitops_kaito.repo.modelrequest import API_VERSION, KIND
from gitops_kaito.repo.resolve import ResolveError, model_preset
from gitops_kaito.repo.yamlsource import SourceError, load_yaml_data

DEFAULT_SELECTOR_KEY = "apps"  # what the resolver puts in labelSelector when nodeSelector is absent
_CONFIG_SCALARS = (str, int, float, bool)


@dataclass(frozen=True)
class Adoption:
    """One Workspace's import: the request text to write, or why it cannot be expressed (skipped)."""

    namespace: str
    name: str
    text: str = ""
    skipped: str = ""  # the reason, when no file is written
    notes: tuple[str, ...] = ()  # what the first pass will change besides our labels and annotations

    @property
    def path(self) -> str:
        return f"models/{self.namespace}/{self.name}.yaml"

    @property
    def model_id(self) -> str:
        return f"{self.namespace}.{self.name}"


def configmap_name(workspace: Mapping[str, Any]) -> str | None:
    """The inference ConfigMap a Workspace (or an InferenceSet's template) points at (inference.config), if any."""
    value = (_as_workspace(workspace).get("inference") or {}).get("config")
    return str(value) if value else None


def _as_workspace(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """An InferenceSet seen as the Workspace each of its replicas is (`pkg/utils/inferenceset/inferenceset.go` at
    v0.12.0: selector, template resource, inference and template annotations); a Workspace as it is."""
    if obj.get("kind") != "InferenceSet":
        return obj
    spec = obj.get("spec") or {}
    template = spec.get("template") or {}
    meta = dict(obj.get("metadata") or {})
    annotations = (template.get("metadata") or {}).get("annotations")
    if annotations:
        meta["annotations"] = {**(meta.get("annotations") or {}), **annotations}
    resource = {"labelSelector": spec.get("labelSelector") or {}, **(template.get("resource") or {})}
    return {"apiVersion": obj.get("apiVersion"), "kind": "Workspace", "metadata": meta, "resource": resource,
            "inference": template.get("inference") or {}}


# keda-kaito-scaler's annotations on an InferenceSet (see core/render.py)
_KEDA = "scaledobject.kaito.sh/"


def _replica_spec(iset: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """spec.replicas / spec.autoscale for an InferenceSet, or a reason it cannot be expressed."""
    annotations = (iset.get("metadata") or {}).get("annotations") or {}
    replicas = (iset.get("spec") or {}).get("replicas")
    replicas = replicas if isinstance(replicas, int) else 1
    if annotations.get(_KEDA + "auto-provision") != "true":
        return {"replicas": replicas}, ""
    try:
        top = int(annotations[_KEDA + "max-replicas"])
        low = int(annotations.get(_KEDA + "min-replicas", min(replicas, top)))
        threshold = int(annotations[_KEDA + "threshold"])
    except (KeyError, ValueError):
        return {}, ("keda-kaito-scaler annotations without numeric scaledobject.kaito.sh/max-replicas and "
                    "threshold cannot be expressed as autoscale bounds")
    scale: dict[str, Any] = {"minReplicas": low, "maxReplicas": top, "threshold": threshold}
    if annotations.get(_KEDA + "metricName") and annotations[_KEDA + "metricName"] != "vllm:num_requests_waiting":
        scale["metric"] = annotations[_KEDA + "metricName"]
    return {"autoscale": scale}, ""


def is_managed(workspace: Mapping[str, Any]) -> bool:
    return is_owned((workspace.get("metadata") or {}).get("labels"))


def request_for(workspace: Mapping[str, Any], configmap: Mapping[str, Any] | None, catalog: Catalog,
                config: RepoConfig) -> Adoption:
    """Map a live Workspace (and the data of its inference ConfigMap) to a ModelDeployment document."""
    meta = workspace.get("metadata") or {}
    ns, name = str(meta.get("namespace") or "default"), str(meta.get("name") or "")
    api_version = str(workspace.get("apiVersion") or "")
    source_kind = str(workspace.get("kind") or "Workspace")

    def skip(reason: str) -> Adoption:
        return Adoption(ns, name, skipped=reason)

    if is_managed(workspace):
        return skip("already managed by gitops-kaito")
    if why := kaito_owned(workspace):
        return skip(f"{why}: KAITO's own, never imported (import the InferenceSet instead)")
    replica_spec: dict[str, Any] = {}
    if source_kind == "InferenceSet":
        replica_spec, problem = _replica_spec(workspace)
        if problem:
            return skip(problem)
        workspace = _as_workspace(workspace)
        meta = workspace.get("metadata") or {}
    if workspace.get("tuning"):
        return skip("a tuning Workspace: model requests describe inference only")
    inference = workspace.get("inference") or {}
    if not inference:
        return skip("no inference section")
    if inference.get("template"):
        return skip("a custom pod template (inference.template) cannot be expressed as a model request")
    if api_version != "kaito.sh/v1beta1":
        return skip(f"{api_version} Workspaces (legacy KAITO) are not imported: upgrade KAITO first")
    preset = inference.get("preset") or {}
    preset_name = str(preset.get("name") or "")
    if not preset_name:
        return skip("no inference.preset.name")
    try:  # a Hugging Face id outside the catalog is imported as such (KAITO generated it; we do not size it)
        known = model_preset(preset_name, catalog, allow_uncataloged=True)
    except ResolveError as err:
        return skip(f"preset {preset_name!r}: {err.message}")
    if known.name != preset_name:
        return skip(f"preset {preset_name!r} is known to KAITO as {known.name!r}: the rendered Workspace would "
                    "change the immutable preset name")
    options = dict(preset.get("presetOptions") or {})
    secret = options.pop("modelAccessSecret", None)
    if options:
        return skip(f"presetOptions {', '.join(sorted(options))} cannot be expressed as a model request")

    resource = workspace.get("resource") or {}
    selector = resource.get("labelSelector") or {}
    if selector.get("matchExpressions"):
        return skip("resource.labelSelector.matchExpressions cannot be expressed (nodeSelector is matchLabels)")
    labels = {str(k): str(v) for k, v in (selector.get("matchLabels") or {}).items()}
    instance_type = resource.get("instanceType")
    annotations = meta.get("annotations") or {}
    runtime = "transformers" if annotations.get(ANNOTATION_RUNTIME) == "transformers" else "vllm"
    spec: dict[str, Any] = {"model": preset_name}
    notes: list[str] = []
    if not known.cataloged:
        if runtime != "vllm":
            return skip(f"{preset_name} is not in the catalog and runs the {runtime} runtime: a model request "
                        "outside the catalog is served with vllm only")
        if catalog.close_hf_ids(preset_name):  # else validate would take it for a typo of a catalog id
            spec["allowUncataloged"] = True
    if instance_type:
        provisioning = "kaito"
        spec["instanceType"] = str(instance_type)
    else:
        provisioning = "byo"
    if provisioning != config.provisioning:
        spec["provisioning"] = provisioning
    if runtime != config.runtime:
        spec["runtime"] = runtime
    count = resource.get("count")
    if isinstance(count, int) and (count > 1 or runtime == "transformers"):
        spec["nodes"] = count
    if resource.get("preferredNodes"):
        notes.append("resource.preferredNodes is kept in the cluster but not in the request")
    if labels != {DEFAULT_SELECTOR_KEY: name}:
        spec["nodeSelector"] = dict(sorted(labels.items()))
    cm = configmap_name(workspace)
    if cm:
        params, problem = _inference_params(cm, configmap)
        if problem:
            return skip(problem)
        if params:
            spec["config"] = params
    adapters = []
    for i, adapter in enumerate(inference.get("adapters") or []):
        source = adapter.get("source") or {}
        extra = sorted(set(source) - {"name", "image"})
        if extra or not source.get("image") or not source.get("name"):
            return skip(f"inference.adapters[{i}]: only name and image sources can be expressed "
                        f"(found {', '.join(extra) or 'no image'})")
        entry: dict[str, Any] = {"name": str(source["name"]), "image": str(source["image"])}
        if adapter.get("strength") is not None:
            entry["strength"] = str(adapter["strength"])
        adapters.append(entry)
    if adapters:
        spec["adapters"] = adapters
    if secret:
        spec["modelAccessSecret"] = str(secret)
    spec.update(replica_spec)
    # The model's consent to take the live objects over: without it a pass leaves them alone and blocks the model.
    document = {"apiVersion": API_VERSION, "kind": KIND,
                "metadata": {"name": name, "namespace": ns, "annotations": {ANNOTATION_ADOPT: "allowed"}},
                "spec": spec}
    head = (f"# Imported by `gitops-kaito import` from the live {source_kind} {ns}/{name}.\n"
            f"# The next sync pass adopts it in place (same {source_kind}, our labels added); edit it like any "
            "request.\n"
            f"# {ANNOTATION_ADOPT}: allowed is what lets it take over objects gitops-kaito did not create.\n")
    return Adoption(ns, name, head + yaml.safe_dump(document, sort_keys=False), notes=tuple(notes))


def _inference_params(cm_name: str, configmap: Mapping[str, Any] | None) -> tuple[dict[str, Any], str]:
    """The vllm section of the ConfigMap as request config, or a reason it cannot be expressed."""
    if configmap is None:
        return {}, f"inference.config points at ConfigMap {cm_name!r}, which does not exist"
    data = configmap.get("data") or {}
    text = data.get(CONFIG_KEY)
    if text is None:
        return {}, f"ConfigMap {cm_name!r} has no {CONFIG_KEY} key"
    try:  # cluster data nobody vetted: read under the model files' limits (no alias bombs, bounded depth)
        parsed = load_yaml_data(str(text), f"ConfigMap {cm_name} {CONFIG_KEY}") if str(text).strip() else {}
    except SourceError as err:
        return {}, f"ConfigMap {cm_name!r}: {CONFIG_KEY} cannot be read ({err})"
    if not isinstance(parsed, dict) or set(parsed) - {"vllm"}:
        others = sorted(set(parsed) - {"vllm"}) if isinstance(parsed, dict) else ["(not a mapping)"]
        return {}, f"ConfigMap {cm_name!r}: only the vllm section can be expressed (found {', '.join(others)})"
    params = parsed.get("vllm") or {}
    if not isinstance(params, dict):
        return {}, f"ConfigMap {cm_name!r}: the vllm section is not a mapping"
    nested = sorted(k for k, v in params.items() if not isinstance(v, _CONFIG_SCALARS))
    if nested:
        return {}, f"ConfigMap {cm_name!r}: vllm parameters {', '.join(nested)} are not plain values"
    return {str(k): v for k, v in sorted(params.items())}, ""


def differences(rendered: RenderedModel, live: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(immutable fields that differ, other spec paths the first pass changes) between a render and the live Workspace.

    Metadata is left out: adding our labels and annotations is what adoption means.
    """
    kind = str(live.get("kind") or "Workspace")
    workspace = next((o for o in rendered.objects if o.ref.kind == kind), None)
    if workspace is None:
        return (f"the request renders no {kind}",), ()
    if ObjectRef.of(workspace.manifest).api_version != str(live.get("apiVersion")):
        return (f"apiVersion {live.get('apiVersion')} -> {workspace.ref.api_version}",), ()
    want = comparable(workspace.manifest)
    have = comparable(project(dict(live), workspace.manifest, None))
    immutable = immutable_changes(workspace.ref, dict(live), have, want)
    for doc in (want, have):
        if isinstance(doc, dict):
            doc.pop("metadata", None)
    other = tuple(sorted({op["path"] for op in jsonpatch.make_patch(have, want).patch}))
    return immutable, other
