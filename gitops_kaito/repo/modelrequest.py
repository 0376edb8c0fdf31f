"""A ModelDeployment request as read from models/<namespace>/<name>.yaml, and the error type for bad files.

Parsing here trusts that the document already passed the JSON Schema; it fills defaults from the repo config.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, ClassVar

from jsonschema.exceptions import ValidationError

from gitops_kaito.model.resources import data_path
from gitops_kaito.repo import schemas
from gitops_kaito.repo.kinds import Identified
from gitops_kaito.repo.yamlsource import LocatedDoc, SourceError

API_VERSION = "gitops.kaito.sh/v1alpha1"
KIND = "ModelDeployment"
RUNTIMES = ("vllm", "transformers")
PROVISIONING_MODES = ("kaito", "nodeclaim", "machine", "aks", "byo")
MAX_ADAPTERS = 10  # KAITO webhook rule (`api/v1beta1/workspace_validation.go` at v0.12.0)

# A model's own drift policy, overriding gitops-kaito.yaml's `drift:` for that model's objects: "correct" reverts a
# hand edit of a field gitops-kaito manages on the next pass, "report" leaves it in place and reports it.


@dataclass(frozen=True)
class Adapter:
    """A LoRA adapter served next to the base model: an image, or the output of a TuningJob of this repository
    (`tuning`, filled in with that run's output image or volume once the repository is loaded)."""

    name: str
    image: str | None
    strength: str | None = None
    tuning: str | None = None  # a TuningJob of the same namespace whose output this adapter is
    image_pull_secrets: tuple[str, ...] = ()
    volume: Mapping[str, Any] | None = field(default=None, hash=False, compare=False)


SCALER_KEDA = "keda-kaito-scaler"  # KAITO's keda-kaito-scaler makes the ScaledObject from the set's annotations
SCALER_EXTERNAL = "external"  # the user's own HPA / ScaledObject on the scale subresource
DEFAULT_SCALE_METRIC = "vllm:num_requests_waiting"


@dataclass(frozen=True)
class Autoscale:
    """spec.autoscale: after creation the replica count belongs to an autoscaler, within these bounds."""

    min_replicas: int
    max_replicas: int
    scaler: str = SCALER_KEDA
    threshold: int | None = None
    metric: str | None = None


@dataclass(frozen=True)
class ModelRequest(Identified):
    """One model the repository asks for, with the repo defaults already applied."""

    kind: ClassVar[str] = KIND
    namespace: str
    name: str
    model: str
    instance_type: str | None
    nodes: int | None
    runtime: str
    provisioning: str
    node_selector: tuple[tuple[str, str], ...]
    config: tuple[tuple[str, Any], ...]  # inference parameters (the vllm section), sorted pairs
    adapters: tuple[Adapter, ...]
    model_access_secret: str | None
    suspend: bool
    annotations: tuple[tuple[str, str], ...]
    path: str  # repo-relative, e.g. models/ml/phi.yaml
    # spec.allowUncataloged: deploy a Hugging Face id outside the catalog even when it is a near miss of a catalog id
    allow_uncataloged: bool = False
    # spec.replicas / spec.autoscale: either one makes the model a KAITO InferenceSet of that many Workspaces
    replicas: int | None = None
    autoscale: Autoscale | None = None
    # spec.inferenceConfig: inference_config.yaml's top-level keys beside vllm: (max_probe_steps, ...), sorted pairs
    inference_config: tuple[tuple[str, Any], ...] = ()
    # spec.image: a private (mirrored) preset image: accessMode private, presetOptions.image and imagePullSecrets
    preset_image: str | None = None
    preset_pull_secrets: tuple[str, ...] = ()
    # spec.partition: GPU partitioning on bring-your-own nodes, {mode: mig, profile} or {mode: accelerator, count}
    partition: tuple[tuple[str, Any], ...] = ()
    # spec.template: a pod template KAITO runs instead of a preset (a custom image such as AIKit's)
    template: Mapping[str, Any] | None = field(default=None, hash=False, compare=False)

    @property
    def has_config(self) -> bool:
        """Whether an inference ConfigMap is rendered (vllm parameters or top-level keys)."""
        return bool(self.config or self.inference_config)

    @property
    def inference_set(self) -> bool:
        """Served by a KAITO InferenceSet (replicas or autoscale asked for) rather than one Workspace."""
        return self.replicas is not None or self.autoscale is not None

    @property
    def max_model_len(self) -> int | None:
        value = dict(self.config).get("max-model-len")
        return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class LoadError:
    """Why one file (or the repo config) could not become a model. model_id is None when unknown."""

    path: str
    line: int | None
    message: str
    model_id: str | None = None

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        return f"{where}: {self.message}"


def _pairs(mapping: Any) -> tuple[tuple[str, Any], ...]:
    if not isinstance(mapping, dict):
        return ()
    return tuple(sorted((str(k), v) for k, v in mapping.items()))


def request_from_document(data: dict[str, Any], *, namespace: str, path: str, default_runtime: str,
                          default_provisioning: str) -> ModelRequest:
    """Build a ModelRequest from a schema-valid document; namespace is the one already settled by the loader."""
    meta = data.get("metadata") or {}
    spec = data.get("spec") or {}
    adapters = tuple(
        Adapter(name=str(a["name"]), image=str(a["image"]) if a.get("image") else None,
                strength=None if a.get("strength") is None else str(a["strength"]),
                tuning=str(a["tuning"]) if a.get("tuning") else None,
                image_pull_secrets=tuple(str(x) for x in a.get("imagePullSecrets") or ()),
                volume=a.get("volume") if isinstance(a.get("volume"), dict) else None)
        for a in spec.get("adapters") or ()
    )
    nodes = spec.get("nodes")
    scale = spec.get("autoscale")
    autoscale = Autoscale(
        min_replicas=int(scale["minReplicas"]), max_replicas=int(scale["maxReplicas"]),
        scaler=str(scale.get("scaler") or SCALER_KEDA),
        threshold=int(scale["threshold"]) if scale.get("threshold") is not None else None,
        metric=str(scale["metric"]) if scale.get("metric") else None,
    ) if isinstance(scale, dict) else None
    replicas = spec.get("replicas")
    return ModelRequest(
        namespace=namespace,
        name=str(meta["name"]),
        model=str(spec.get("model") or ""),
        instance_type=spec.get("instanceType") or None,
        nodes=int(nodes) if nodes is not None else None,
        runtime=str(spec.get("runtime") or default_runtime),
        provisioning=str(spec.get("provisioning") or default_provisioning),
        node_selector=tuple(sorted((str(k), str(v)) for k, v in (spec.get("nodeSelector") or {}).items())),
        config=_pairs(spec.get("config")),
        adapters=adapters,
        model_access_secret=spec.get("modelAccessSecret") or None,
        suspend=bool(spec.get("suspend", False)),
        annotations=tuple(sorted((str(k), str(v)) for k, v in (meta.get("annotations") or {}).items())),
        path=path,
        allow_uncataloged=bool(spec.get("allowUncataloged", False)),
        replicas=int(replicas) if replicas is not None else None,
        autoscale=autoscale,
        inference_config=_pairs(spec.get("inferenceConfig")),
        preset_image=(spec.get("image") or {}).get("name") or None,
        preset_pull_secrets=tuple(str(x) for x in (spec.get("image") or {}).get("pullSecrets") or ()),
        partition=_pairs(spec.get("partition")),
        template=spec.get("template") if isinstance(spec.get("template"), dict) else None,
    )


SCHEMA_FILE = "modeldeployment.schema.json"


@lru_cache(maxsize=8)
def schema(file_name: str = SCHEMA_FILE) -> dict[str, Any]:
    """A shipped JSON Schema (schemas/<file_name>; each request kind has its own)."""
    path = data_path("schemas") / file_name
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


@lru_cache(maxsize=8)
def _validator(file_name: str = SCHEMA_FILE) -> Any:
    return schemas.validator_for(schema(file_name))


def dotted(json_path: Sequence[str | int]) -> str:
    """spec.adapters[2].name style, the way people read a path in a YAML file."""
    out = ""
    for part in json_path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "the document"


def validate_document(doc: LocatedDoc, schema_file: str = SCHEMA_FILE) -> list[SourceError]:
    """Every violation of doc against its kind's schema, one per offending field, located at its line."""
    quick = _fast_check(schema_file)
    if quick is not None and quick(doc.data):
        return []  # certainly valid; jsonschema (the authority, and the one that explains) runs otherwise
    found: dict[tuple[str | int, ...], SourceError] = {}
    errors = sorted(_validator(schema_file).iter_errors(doc.data), key=lambda e: (len(e.absolute_path), str(e.absolute_path)))
    for error in errors:
        for json_path, message in _describe(error):
            # One problem per field is easier to act on than jsonschema's several views of it.
            found.setdefault(json_path, doc.error(json_path, message))
    return list(found.values())


# -- fast path ------------------------------------------------------------------------------------------
# jsonschema's generic descent was ~40 % of loading a 5,000-model repository. Nearly every file is valid, so the
# schema is also compiled into plain Python predicates that answer "certainly valid?" in a few microseconds.
# They are never more lenient than jsonschema: every check is at least as strict (exact Python types, no
# 1 == 1.0 == True), so a False only means "ask jsonschema", which finds and explains the errors. A schema
# keyword the compiler does not know turns the fast path off altogether.

Check = Callable[[Any], bool]
_ANNOTATIONS = frozenset({"$schema", "$id", "$defs", "$comment", "title", "description", "default", "examples",
                          "x-error"})
_TYPE_TESTS: dict[str, Check] = {
    "string": lambda v: type(v) is str,
    "integer": lambda v: type(v) is int,
    "number": lambda v: type(v) in (int, float),
    "boolean": lambda v: type(v) is bool,
    "object": lambda v: type(v) is dict,
    "array": lambda v: type(v) is list,
    "null": lambda v: v is None,
}


class _Unsupported(Exception):
    """The schema uses something the fast path does not compile."""


@lru_cache(maxsize=8)
def _fast_check(file_name: str = SCHEMA_FILE) -> Check | None:
    try:
        return _compile(schema(file_name), schema(file_name), ())
    except _Unsupported:
        return None


def _same(value: Any, expected: Any) -> bool:
    return type(value) is type(expected) and value == expected and not isinstance(expected, dict | list)


def _compile(node: Any, root: Mapping[str, Any], refs: tuple[str, ...]) -> Check:
    if node is True:
        return lambda _v: True
    if not isinstance(node, Mapping):
        raise _Unsupported(repr(node))
    checks: list[Check] = []
    for key, rule in node.items():
        if key in _ANNOTATIONS or key in ("properties", "additionalProperties", "propertyNames"):
            continue  # the last three: compiled together in _object_check
        checks.extend(_keyword(key, rule, node, root, refs))
    if "properties" in node:
        checks.append(_object_check(node, root, refs))
    elif "additionalProperties" in node or "propertyNames" in node:
        checks.append(_object_check({**node, "properties": {}}, root, refs))
    if len(checks) == 1:
        return checks[0]
    return lambda v: all(check(v) for check in checks)


def _keyword(key: str, rule: Any, node: Mapping[str, Any], root: Mapping[str, Any], refs: tuple[str, ...]
             ) -> list[Check]:
    if key == "$ref":
        if not isinstance(rule, str) or not rule.startswith("#/$defs/") or rule in refs:
            raise _Unsupported(str(rule))
        target = root.get("$defs", {}).get(rule[len("#/$defs/"):])
        if target is None:
            raise _Unsupported(rule)
        return [_compile(target, root, (*refs, rule))]
    if key == "type":
        tests = [_TYPE_TESTS[t] for t in (rule if isinstance(rule, list) else [rule])]
        return [lambda v: any(t(v) for t in tests)]
    if key == "const":
        return [lambda v: _same(v, rule)]
    if key == "enum":
        return [lambda v: any(_same(v, choice) for choice in rule)]
    if key == "pattern":
        search = schemas.compiled(rule).search
        return [lambda v: type(v) is not str or search(v) is not None]
    if key == "minLength":
        return [lambda v: type(v) is not str or len(v) >= rule]
    if key == "maxLength":
        return [lambda v: type(v) is not str or len(v) <= rule]
    if key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        if type(rule) not in (int, float):
            raise _Unsupported(key)
        within = {"minimum": lambda v: v >= rule, "maximum": lambda v: v <= rule,
                  "exclusiveMinimum": lambda v: v > rule, "exclusiveMaximum": lambda v: v < rule}[key]
        return [lambda v: type(v) not in (int, float) or within(v)]
    if key == "maxItems":
        return [lambda v: type(v) is not list or len(v) <= rule]
    if key == "items":
        item = _compile(rule, root, refs)
        return [lambda v: type(v) is not list or all(item(x) for x in v)]
    if key == "required":
        names = tuple(rule)
        return [lambda v: type(v) is not dict or all(n in v for n in names)]
    raise _Unsupported(key)


def _object_check(node: Mapping[str, Any], root: Mapping[str, Any], refs: tuple[str, ...]) -> Check:
    known = {name: _compile(sub, root, refs) for name, sub in node["properties"].items()}
    extra_rule = node.get("additionalProperties", True)
    extra: Check | None = None if extra_rule is False else _compile(extra_rule, root, refs)
    names: Check | None = _compile(node["propertyNames"], root, refs) if "propertyNames" in node else None

    def check(value: Any) -> bool:
        if type(value) is not dict:
            return True  # "type" (checked separately) decides about non-mappings
        for key, item in value.items():
            if names is not None and not names(key):
                return False
            rule = known.get(key) if type(key) is str else None
            if rule is None:
                if extra is None or not extra(item):
                    return False
            elif not rule(item):
                return False
        return True
    return check


_JSON_TYPES = {dict: "a mapping", list: "a list", str: "a string", bool: "true/false", int: "an integer",
               float: "a number", type(None): "null"}


def _type_name(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _known_properties(schema_part: Mapping[str, Any]) -> list[str]:
    return sorted(schema_part.get("properties", {}))


def _describe(error: ValidationError) -> Iterator[tuple[tuple[str | int, ...], str]]:
    here = tuple(error.absolute_path)
    field = dotted(here)
    rule: Mapping[str, Any] = error.schema if isinstance(error.schema, Mapping) else {}
    instance: Any = error.instance
    value: Any = error.validator_value
    if error.validator == "additionalProperties" and isinstance(instance, dict):
        known = _known_properties(rule)
        for extra in sorted(set(instance) - set(known)):
            hint = difflib.get_close_matches(str(extra), known, n=1, cutoff=0.6)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            where = f" in {field}" if here else ""
            yield (*here, extra), f"unknown field {extra!r}{where}{suggestion}; known fields: {', '.join(known)}"
        return
    if "propertyNames" in error.schema_path:
        key = str(instance)
        message = rule.get("x-error") or error.message
        yield (*here, key), f"{field}: key {key!r} {message}"
        return
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        yield here, f"missing required field {dotted((*here, missing))!r}"
        return
    if error.validator == "type":
        wanted = value if isinstance(value, list) else [value]
        names = {"string": "a string", "integer": "an integer", "number": "a number", "boolean": "true or false",
                 "object": "a mapping", "array": "a list"}
        yield here, f"{field} must be {' or '.join(names.get(str(w), str(w)) for w in wanted)}, got {_type_name(instance)} {instance!r}"
        return
    if error.validator == "enum":
        choices = [str(c) for c in value]
        hint = difflib.get_close_matches(str(instance), choices, n=1, cutoff=0.5)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        yield here, f"{field} {instance!r} is not one of {', '.join(choices)}{suggestion}"
        return
    if error.validator == "const":
        yield here, f"{field} must be {value!r}, got {instance!r}"
        return
    if error.validator == "maxItems":
        extra = rule.get("x-error", f"at most {value} items")
        yield here, f"{field} has {len(instance)} items: {extra}"
        return
    if error.validator == "maxLength":
        yield here, f"{field} is {len(instance)} characters long: the limit is {value}"
        return
    if error.validator == "minLength":
        yield here, f"{field} must not be empty"
        return
    if error.validator in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        yield here, f"{field} {error.message}"
        return
    if error.validator == "pattern":
        yield here, f"{field} {instance!r} {rule.get('x-error') or 'has the wrong form'}"
        return
    yield here, f"{field}: {error.message}"
