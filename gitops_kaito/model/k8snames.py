"""Kubernetes' own naming rules (apimachinery validation), checked offline: names, label keys and values, annotations.

Every pattern is matched in full (fullmatch): Python's `$` would also accept a value followed by a newline.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

DNS_LABEL_MAX = 63
DNS_SUBDOMAIN_MAX = 253
QUALIFIED_NAME_MAX = 63
LABEL_VALUE_MAX = 63
ANNOTATIONS_MAX_BYTES = 256 * 1024  # TotalAnnotationSizeLimitB

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


def is_dns_label(value: object) -> bool:
    return isinstance(value, str) and len(value) <= DNS_LABEL_MAX and _DNS_LABEL.fullmatch(value) is not None


def is_dns_subdomain(value: object) -> bool:
    return isinstance(value, str) and len(value) <= DNS_SUBDOMAIN_MAX and _DNS_SUBDOMAIN.fullmatch(value) is not None


def qualified_name_problem(key: str) -> str | None:
    """Why `key` is not a valid label or annotation key ([prefix/]name), or None."""
    prefix, slash, name = key.rpartition("/")
    if slash:
        if not prefix:
            return f"key {key!r}: the prefix before '/' must not be empty"
        if not is_dns_subdomain(prefix):
            return (f"key {key!r}: the prefix {prefix!r} must be a DNS subdomain (lowercase letters, digits, '-' "
                    f"and '.', at most {DNS_SUBDOMAIN_MAX} characters)")
    if not name:
        return f"key {key!r}: the name part must not be empty"
    if len(name) > QUALIFIED_NAME_MAX:
        return f"key {key!r}: the name part is longer than {QUALIFIED_NAME_MAX} characters"
    if _QUALIFIED_NAME.fullmatch(name) is None:
        return (f"key {key!r}: the name part must be letters, digits, '-', '_' or '.', starting and ending with a "
                "letter or digit")
    return None


def label_value_problem(value: str) -> str | None:
    if len(value) > LABEL_VALUE_MAX:
        return f"label value {value!r} is longer than {LABEL_VALUE_MAX} characters"
    if _LABEL_VALUE.fullmatch(value) is None:
        return (f"label value {value!r} must be empty or letters, digits, '-', '_' or '.', starting and ending with "
                "a letter or digit")
    return None


def annotations_problem(annotations: Mapping[str, str]) -> str | None:
    for key in annotations:
        problem = qualified_name_problem(key)
        if problem:
            return f"annotation {problem}"
    size = sum(len(k.encode()) + len(v.encode()) for k, v in annotations.items())
    if size > ANNOTATIONS_MAX_BYTES:
        return f"annotations total {size} bytes, more than Kubernetes' limit of {ANNOTATIONS_MAX_BYTES}"
    return None
