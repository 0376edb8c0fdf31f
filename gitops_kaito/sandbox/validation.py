"""Server-side checks of object metadata that every kind gets: names, labels, annotations.

Custom resources are additionally validated against their CRD schema (schema.py).
"""

from __future__ import annotations

import re
from typing import Any

_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


def _qualified_name(key: str) -> str | None:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(prefix)):
        return "prefix part must be a DNS-1123 subdomain"
    if not name or len(name) > 63 or not _LABEL_NAME.fullmatch(name):
        return "name part must consist of alphanumeric characters, '-', '_' or '.', 63 characters at most"
    return None


def metadata_errors(meta: dict[str, Any], dns_label_name: bool = False) -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    name = meta.get("name")
    if not name:
        errors.append(("metadata.name", "Required value: name or generateName is required"))
    elif dns_label_name and (len(name) > 63 or not _DNS1123_LABEL.fullmatch(name)):
        errors.append(("metadata.name", f'Invalid value: "{name}": a lowercase RFC 1123 label must consist of '
                       "lower case alphanumeric characters or '-'"))
    elif len(name) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(name):
        errors.append(("metadata.name", f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of '
                       "lower case alphanumeric characters, '-' or '.'"))
    labels = meta.get("labels") or {}
    if not isinstance(labels, dict):
        errors.append(("metadata.labels", "Invalid value: must be a map of strings"))
        labels = {}
    for key, value in labels.items():
        why = _qualified_name(str(key))
        if why:
            errors.append(("metadata.labels", f'Invalid value: "{key}": {why}'))
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
            errors.append(("metadata.labels", f'Invalid value: "{value}": a valid label must be an empty string '
                           "or consist of alphanumeric characters, '-', '_' or '.', 63 characters at most"))
    annotations = meta.get("annotations") or {}
    if not isinstance(annotations, dict):
        errors.append(("metadata.annotations", "Invalid value: must be a map of strings"))
        annotations = {}
    for key, value in annotations.items():
        why = _qualified_name(str(key))
        if why:
            errors.append(("metadata.annotations", f'Invalid value: "{key}": {why}'))
        if not isinstance(value, str):
            errors.append(("metadata.annotations", f"Invalid value: {value!r}: must be a string"))
    if sum(len(k) + len(str(v)) for k, v in annotations.items()) > 256 * 1024:
        errors.append(("metadata.annotations", "Too long: must have at most 262144 bytes"))
    return errors


def string_map_errors(obj: dict[str, Any], field: str) -> list[tuple[str, str]]:
    value = obj.get(field)
    if value is None:
        return []
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        return [(field, "Invalid value: must be a map of strings")]
    return []
