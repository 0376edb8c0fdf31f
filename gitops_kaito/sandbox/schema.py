"""Structural schemas of custom resources: pruning, defaulting and validation as the apiserver does them.

Validation uses jsonschema (draft 4, the closest to OpenAPI v3) after mapping `nullable` and int-or-string.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jsonschema

_ROOT_KEEP = ("apiVersion", "kind", "metadata")
ListKeys = Callable[[tuple[str, ...]], tuple[str, ...] | None]


def prune(obj: Any, schema: dict[str, Any] | None, root: bool = False) -> Any:
    """Drop fields the schema does not declare, unless x-kubernetes-preserve-unknown-fields says keep."""
    if schema is None:
        return obj
    if isinstance(obj, dict):
        props = schema.get("properties")
        additional = schema.get("additionalProperties")
        keep_unknown = bool(schema.get("x-kubernetes-preserve-unknown-fields")) or additional is True
        if props is None and not isinstance(additional, dict) and "type" not in schema:
            keep_unknown = True
        out: dict[str, Any] = {}
        for key, value in obj.items():
            if root and key in _ROOT_KEEP:
                out[key] = value
            elif props is not None and key in props:
                out[key] = prune(value, props[key])
            elif isinstance(additional, dict):
                out[key] = prune(value, additional)
            elif keep_unknown:
                out[key] = value
        return out
    if isinstance(obj, list):
        items = schema.get("items")
        if isinstance(items, dict):
            return [prune(v, items) for v in obj]
    return obj


def apply_defaults(obj: Any, schema: dict[str, Any] | None) -> Any:
    """Fill `default` values of absent properties, recursing into present objects and list items."""
    if schema is None:
        return obj
    if isinstance(obj, dict):
        props = schema.get("properties") or {}
        for key, sub in props.items():
            if key not in obj and isinstance(sub, dict) and "default" in sub:
                obj[key] = copy.deepcopy(sub["default"])
            if key in obj:
                obj[key] = apply_defaults(obj[key], sub)
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict):
            for key in list(obj):
                if key not in props:
                    obj[key] = apply_defaults(obj[key], additional)
    elif isinstance(obj, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for i, value in enumerate(obj):
                obj[i] = apply_defaults(value, items)
    return obj


def to_jsonschema(schema: Any) -> Any:
    """Map OpenAPI v3 structural-schema extensions onto plain JSON schema."""
    if isinstance(schema, list):
        return [to_jsonschema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("properties", "patternProperties", "definitions"):
            out[key] = {k: to_jsonschema(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "not", "allOf", "anyOf", "oneOf"):
            out[key] = to_jsonschema(value)
        elif key in ("description", "format", "example") or key.startswith("x-kubernetes-"):
            continue
        else:
            out[key] = value
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
        out.pop("nullable", None)
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    out.pop("nullable", None)
    return out


def list_map_keys(schema: dict[str, Any] | None) -> dict[tuple[str, ...], tuple[str, ...]]:
    """Every list-map in the schema by its field path ("[]" marks a list item), plus conditions by type."""
    found: dict[tuple[str, ...], tuple[str, ...]] = {}

    def walk(node: Any, path: tuple[str, ...]) -> None:
        if not isinstance(node, dict):
            return
        if node.get("type") == "array":
            keys = node.get("x-kubernetes-list-map-keys")
            items: dict[str, Any] = node["items"] if isinstance(node.get("items"), dict) else {}
            if node.get("x-kubernetes-list-type") == "map" and keys:
                found[path] = tuple(keys)
            elif path and path[-1] == "conditions" and "type" in (items.get("properties") or {}):
                found[path] = ("type",)
            walk(items, (*path, "[]"))
            return
        for key, sub in (node.get("properties") or {}).items():
            walk(sub, (*path, key))
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], (*path, "*"))

    walk(schema, ())
    return found


def _field_path(path: Any) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass
class CompiledSchema:
    """One CRD version's schema, ready to prune, default and validate objects."""

    raw: dict[str, Any] | None
    validator: jsonschema.protocols.Validator | None
    list_keys: dict[tuple[str, ...], tuple[str, ...]]

    @classmethod
    def compile(cls, raw: dict[str, Any] | None) -> CompiledSchema:
        if not raw:
            return cls(None, None, {})
        js = to_jsonschema(raw)
        if isinstance(js, dict) and isinstance(js.get("properties"), dict):
            # metadata is validated by the server's own rules, not the CRD schema.
            js["properties"] = {k: v for k, v in js["properties"].items() if k != "metadata"}
        validator = jsonschema.Draft4Validator(js)
        return cls(raw, validator, list_map_keys(raw))

    def normalize(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Prune then default (the apiserver's order); returns a new object."""
        if self.raw is None:
            return obj
        pruned = prune(obj, self.raw, root=True)
        return dict(apply_defaults(pruned, self.raw))

    def errors(self, obj: dict[str, Any]) -> list[tuple[str, str]]:
        if self.validator is None:
            return []
        out = []
        for err in sorted(self.validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path))):
            field = _field_path(err.absolute_path)
            if err.validator == "required":
                missing = err.message.split("'")[1] if "'" in err.message else ""
                field = f"{field}.{missing}" if field else missing
                out.append((field, "Required value"))
            else:
                out.append((field, f"Invalid value: {_short(err.instance)}: {err.message}"))
        return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
