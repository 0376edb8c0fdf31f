"""A TuningJob request (a KAITO fine-tuning run, models/<ns>/<name>.yaml, kind TuningJob) and its resolution.

Pure: every rule KAITO v0.12.0's webhook applies to a tuning Workspace that can be checked offline is checked here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import json
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlsplit

from gitops_kaito.model.kaito import RESERVED_LABEL_KEYS
from gitops_kaito.model.ownership import model_id
from gitops_kaito.repo.catalog import Catalog, Fit, GpuSku, Preset, RemovedPreset, UnknownPreset, tuning_fit
from gitops_kaito.repo.config import RepoConfig
from gitops_kaito.repo.kinds import Identified, RequestKind
from gitops_kaito.repo.resolve import ResolveError

KIND = "TuningJob"
SCHEMA_FILE = "tuningjob.schema.json"
METHODS = ("lora", "qlora")
# The sections KAITO's training_config may have (`api/v1beta1/tuning_config_validation.go` at v0.12.0, TrainingConfig).
SECTIONS = ("ModelConfig", "QuantizationConfig", "LoraConfig", "TrainingArguments", "DatasetConfig", "DataCollator")
OUTPUT_BASE = "/mnt"  # output_dir must resolve strictly below it (validateTrainingArgsViaConfigMap)
# Hosts KAITO refuses as a data source URL (`api/v1beta1/workspace_validation.go:353-413` at v0.12.0): local and
# cloud metadata endpoints; addresses are checked by kind (loopback, private, link-local).
_LOCAL_HOSTS = frozenset({"localhost", "localhost.localdomain", "metadata", "metadata.google.internal",
                          "metadata.azure.com", "instance-data", "instance-data.ec2.internal"})
# An image reference as KAITO parses it (docker reference grammar, simplified: registry/path[:tag][@digest]).
_IMAGE = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*"
                    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?\Z")


@dataclass(frozen=True)
class TuningInput:
    """The training data: exactly one of URLs, an image, or a volume (a Kubernetes VolumeSource)."""

    urls: tuple[str, ...] = ()
    image: str | None = None
    image_pull_secrets: tuple[str, ...] = ()
    volume: Mapping[str, Any] | None = field(default=None, hash=False)


@dataclass(frozen=True)
class TuningOutput:
    """Where the adapter goes: an image (pushed with push_secret) or a volume."""

    image: str | None = None
    push_secret: str | None = None
    volume: Mapping[str, Any] | None = field(default=None, hash=False)

    @property
    def shown(self) -> str:
        """The output as status and the plan show it."""
        if self.image:
            return self.image
        claim = ((self.volume or {}).get("persistentVolumeClaim") or {}).get("claimName")
        return f"volume {claim}" if claim else "volume"


@dataclass(frozen=True)
class TuningRequest(Identified):
    """One fine-tuning run the repository asks for."""

    kind: ClassVar[str] = KIND
    namespace: str
    name: str
    path: str
    model: str
    method: str
    instance_type: str | None
    provisioning: str
    node_selector: tuple[tuple[str, str], ...]
    config: Mapping[str, Any] | None = field(hash=False)  # training_config sections; None: KAITO's default template
    input: TuningInput
    output: TuningOutput
    suspend: bool
    annotations: tuple[tuple[str, str], ...]

    @property
    def digest(self) -> str:
        """What makes a run: a change of it is a new run. The request's spec as written (suspend aside)."""
        spec = {"model": self.model, "method": self.method, "instanceType": self.instance_type,
                "provisioning": self.provisioning, "nodeSelector": dict(self.node_selector), "config": self.config,
                "input": {"urls": list(self.input.urls), "image": self.input.image,
                          "imagePullSecrets": list(self.input.image_pull_secrets), "volume": self.input.volume},
                "output": {"image": self.output.image, "pushSecret": self.output.push_secret,
                           "volume": self.output.volume}}
        text = json.dumps(spec, sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ResolvedTuning:
    """A tuning request with its preset, SKU and price decided (one node: KAITO tunes on one node only)."""

    request: TuningRequest
    preset: Preset
    sku: GpuSku | None
    fit: Fit | None
    label_selector: tuple[tuple[str, str], ...]
    nodes: int = 1
    provisioning: str = "kaito"
    note: str = ""
    uncataloged: bool = False

    @property
    def gpus(self) -> int:
        return self.sku.gpu_count if self.sku is not None else 0

    @property
    def price_per_hour(self) -> float | None:
        return self.fit.price_per_hour if self.fit is not None else None

    @property
    def disk_gib(self) -> int:
        return self.preset.tuning_disk_gib or self.preset.disk_gib

    @property
    def summary(self) -> str:
        return f"{self.preset.name} ({self.request.method} tuning)"


def _pairs(mapping: Any) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((str(k), str(v)) for k, v in (mapping or {}).items())) if isinstance(mapping, dict) else ()


def request_from_document(data: dict[str, Any], namespace: str, path: str, config: RepoConfig) -> TuningRequest:
    """A TuningRequest from a schema-valid document (the loader settled the namespace)."""
    meta = data.get("metadata") or {}
    spec = data.get("spec") or {}
    raw_in = spec.get("input") or {}
    raw_out = spec.get("output") or {}
    return TuningRequest(
        namespace=namespace, name=str(meta["name"]), path=path, model=str(spec["model"]),
        method=str(spec["method"]), instance_type=spec.get("instanceType") or None,
        provisioning=str(spec.get("provisioning") or config.provisioning),
        node_selector=_pairs(spec.get("nodeSelector")),
        config=spec.get("config") if isinstance(spec.get("config"), dict) else None,
        input=TuningInput(urls=tuple(str(u) for u in raw_in.get("urls") or ()), image=raw_in.get("image") or None,
                          image_pull_secrets=tuple(str(s) for s in raw_in.get("imagePullSecrets") or ()),
                          volume=raw_in.get("volume") if isinstance(raw_in.get("volume"), dict) else None),
        output=TuningOutput(image=raw_out.get("image") or None, push_secret=raw_out.get("pushSecret") or None,
                            volume=raw_out.get("volume") if isinstance(raw_out.get("volume"), dict) else None),
        suspend=bool(spec.get("suspend", False)),
        annotations=_pairs(meta.get("annotations")),
    )


def resolve_tuning(request: TuningRequest, catalog: Catalog, config: RepoConfig) -> ResolvedTuning:
    """Check the request against KAITO's tuning rules and choose its SKU; ResolveError names the field."""
    preset = _preset(request, catalog)
    if request.provisioning != "kaito":
        # KAITO builds the tuning Job from the SKU of resource.instanceType (pkg/workspace/tuning/preset_tuning.go
        # at v0.12.0: "Unsupported SKU" otherwise), which BYO Workspaces must leave empty.
        raise ResolveError(("spec", "provisioning"), f"a TuningJob needs provisioning kaito (KAITO's node "
                           f"auto-provisioning), not {request.provisioning}: KAITO v0.12.0 builds the tuning Job from "
                           "the SKU of resource.instanceType, which bring-your-own-node Workspaces must leave empty")
    check_training_config(request.config, request.method)
    check_input(request.input)
    check_output(request.output)
    selector = _label_selector(request)
    clouds = tuple(config.clouds)
    if request.instance_type is None:
        try:
            fit = catalog.choose_tuning_sku(preset, clouds)
        except LookupError as err:
            raise ResolveError(("spec", "model"), f"{err}; see `gitops-kaito catalog fit {preset.name} --tuning`")
    else:
        sku = catalog.sku(request.instance_type, clouds)
        if sku is None:
            raise ResolveError(("spec", "instanceType"), f"unknown GPU instance type {request.instance_type!r} for "
                               f"{', '.join(clouds)}: KAITO builds the tuning Job only for a SKU in its table "
                               "(`gitops-kaito catalog skus`)")
        fit = tuning_fit(preset, sku)
        if not fit.fits:
            raise ResolveError(("spec", "instanceType"), f"SKU too small for tuning: {fit.reason}")
    return ResolvedTuning(request=request, preset=preset, sku=fit.sku, fit=fit, label_selector=selector)


def _preset(request: TuningRequest, catalog: Catalog) -> Preset:
    try:
        preset = catalog.preset(request.model)
    except (UnknownPreset, RemovedPreset) as err:
        raise ResolveError(("spec", "model"), f"Unsupported tuning preset name {request.model}: {err}")
    if preset.tuning_problem:
        tunable = ", ".join(p.name for p in catalog.presets() if not p.tuning_problem)
        raise ResolveError(("spec", "model"), f"{preset.tuning_problem} (tunable: {tunable})")
    return preset


def _label_selector(request: TuningRequest) -> tuple[tuple[str, str], ...]:
    if not request.node_selector:
        return (("apps", request.name),)
    kept = tuple((k, v) for k, v in request.node_selector if k not in RESERVED_LABEL_KEYS)
    if not kept:
        raise ResolveError(("spec", "nodeSelector"), "nodeSelector has only KAITO-reserved keys: KAITO rejects such "
                           "a labelSelector")
    return kept


def check_training_config(config: Mapping[str, Any] | None, method: str) -> None:
    """KAITO's ConfigMap rules (`api/v1beta1/tuning_config_validation.go` at v0.12.0) on the request's config."""
    if config is None:
        return  # KAITO copies its lora/qlora-params-template, which satisfies them
    for section in config:
        if section not in SECTIONS:
            raise ResolveError(("spec", "config", section), f"Unrecognized section: {section} (KAITO's "
                               f"training_config has {', '.join(SECTIONS)})")
        if not isinstance(config[section], Mapping):
            raise ResolveError(("spec", "config", section), f"{section} must be a mapping")
    quant = config.get("QuantizationConfig")
    bits: dict[str, bool] = {}
    for key in ("load_in_4bit", "load_in_8bit"):
        value = quant.get(key) if isinstance(quant, Mapping) else None
        if value is not None and not isinstance(value, bool):
            raise ResolveError(("spec", "config", "QuantizationConfig", key),
                               f"{key} must be true or false, got {value!r}")
        bits[key] = bool(value)
    where = ("spec", "config", "QuantizationConfig")
    if bits["load_in_4bit"] and bits["load_in_8bit"]:
        raise ResolveError(where, "Cannot set both 'load_in_4bit' and 'load_in_8bit' to true")
    if method == "lora" and (bits["load_in_4bit"] or bits["load_in_8bit"]):
        raise ResolveError(where, "For method 'lora', 'load_in_4bit' or 'load_in_8bit' must not be true "
                           "(that is qlora)")
    if method == "qlora" and not (bits["load_in_4bit"] or bits["load_in_8bit"]):
        raise ResolveError(where if quant is not None else ("spec", "config"),
                           "For method 'qlora', either 'load_in_4bit' or 'load_in_8bit' must be true in "
                           "QuantizationConfig")
    args = config.get("TrainingArguments")
    out = args.get("output_dir") if isinstance(args, Mapping) else None
    if out is not None:
        path = ("spec", "config", "TrainingArguments", "output_dir")
        if not isinstance(out, str):
            raise ResolveError(path, f"output_dir must be a string, got {out!r}")
        clean = posixpath.normpath(posixpath.join(OUTPUT_BASE, out))
        if clean == OUTPUT_BASE or not clean.startswith(OUTPUT_BASE + "/"):
            raise ResolveError(path, f"Invalid output_dir specified: {out!r}, must be a directory under "
                               f"{OUTPUT_BASE}")


def check_input(data: TuningInput) -> None:
    """Exactly one of URLs, image or volume; URLs http(s) and not local; a valid image reference."""
    given = [k for k, v in (("urls", data.urls), ("image", data.image), ("volume", data.volume)) if v]
    if len(given) != 1:
        raise ResolveError(("spec", "input"), "Exactly one of URLs, Volume, or Image must be specified in spec.input"
                           + (f" (got {', '.join(given)})" if given else ""))
    for i, url in enumerate(data.urls):
        problem = url_problem(url)
        if problem:
            raise ResolveError(("spec", "input", "urls", i), problem)
    if data.image and not _IMAGE.match(data.image):
        raise ResolveError(("spec", "input", "image"), f"Unable to parse input image reference: {data.image!r}")
    if data.volume is not None:
        _check_volume(data.volume, ("spec", "input", "volume"))


def check_output(data: TuningOutput) -> None:
    """Exactly one of image or volume; an image needs pushSecret."""
    if bool(data.image) == bool(data.volume):
        raise ResolveError(("spec", "output"), "Exactly one of Volume or Image must be specified in spec.output")
    if data.image:
        if not _IMAGE.match(data.image):
            raise ResolveError(("spec", "output", "image"), f"Unable to parse output image reference: {data.image!r}")
        if not data.push_secret:
            raise ResolveError(("spec", "output"), "Must specify pushSecret with destination image (a "
                               ".dockerconfigjson Secret KAITO pushes the adapter with)")
    if data.volume is not None:
        _check_volume(data.volume, ("spec", "output", "volume"))


def _check_volume(volume: Mapping[str, Any], path: tuple[str, ...]) -> None:
    if len(volume) != 1:
        raise ResolveError(path, "a volume is one Kubernetes volume source, e.g. {persistentVolumeClaim: "
                           "{claimName: data}}")
    pvc = volume.get("persistentVolumeClaim")
    if pvc is not None and not (isinstance(pvc, Mapping) and isinstance(pvc.get("claimName"), str)
                                and pvc.get("claimName")):
        raise ResolveError((*path, "persistentVolumeClaim"), "persistentVolumeClaim needs a claimName")


def url_problem(url: str) -> str:
    """Why KAITO refuses url as a tuning data source, or "" (literal hosts only: nothing is resolved offline)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return f"invalid data source URL {url!r}"
    if parts.scheme not in ("http", "https"):
        return f"data source URL must use HTTP or HTTPS: {url!r}"
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        return f"invalid data source URL {url!r}: no host"
    if host in _LOCAL_HOSTS or host.endswith(".localhost") or host.endswith(".internal"):
        return f"data source URL must not target a local or metadata endpoint: {url!r}"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return ""
    if address.is_loopback or address.is_private or address.is_link_local or address.is_unspecified:
        return f"data source URL must not target a loopback, private, or link-local address: {url!r}"
    return ""


TUNING_JOB = RequestKind(kind=KIND, schema_file=SCHEMA_FILE, parse=request_from_document, resolve=resolve_tuning)


def link_adapters(resolved: Mapping[str, Any]) -> list[tuple[str, tuple[str | int, ...], str]]:
    """A model's adapter that names a TuningJob: that run is in the repository (same namespace) and tunes the same
    base preset (KAITO loads an adapter only onto the model it was trained from)."""
    problems: list[tuple[str, tuple[str | int, ...], str]] = []
    for rid, item in resolved.items():
        for index, adapter in enumerate(getattr(item.request, "adapters", ()) or ()):
            name = getattr(adapter, "tuning", None)
            if not name:
                continue
            where: tuple[str | int, ...] = ("spec", "adapters", index, "tuning")
            run = resolved.get(model_id(item.request.namespace, name))
            if not isinstance(run, ResolvedTuning):
                problems.append((rid, where, f"adapter {adapter.name!r} names TuningJob {name!r}, which is not a "
                                 f"TuningJob of namespace {item.request.namespace} in this repository (or its file "
                                 "is invalid)"))
                continue
            preset = getattr(item, "preset", None)
            if preset is not None and preset.name != run.preset.name:
                problems.append((rid, where, f"adapter {adapter.name!r} comes from TuningJob {name!r}, which tunes "
                                 f"{run.preset.name}, not this model's {preset.name}"))
    return problems


def fill_adapters(item: Any, resolved: Mapping[str, Any]) -> Any:
    """`item` with every adapter that names a TuningJob given that run's output: its image (pulled with the push
    Secret unless the adapter names pull secrets) or its volume. Pure: a new resolved request, or `item` itself."""
    adapters = getattr(item.request, "adapters", None)
    if not adapters or not any(getattr(a, "tuning", None) for a in adapters):
        return item
    filled = []
    for adapter in adapters:
        run = resolved.get(model_id(item.request.namespace, adapter.tuning)) if adapter.tuning else None
        if isinstance(run, ResolvedTuning):
            out = run.request.output
            secrets = adapter.image_pull_secrets or ((out.push_secret,) if out.image and out.push_secret else ())
            adapter = dataclasses.replace(adapter, image=out.image, volume=out.volume,
                                          image_pull_secrets=secrets if out.image else ())
        filled.append(adapter)
    return dataclasses.replace(item, request=dataclasses.replace(item.request, adapters=tuple(filled)))
