"""The JSON Schema validator for the shipped schemas, with the `pattern` keyword as JSON Schema defines it.

JSON Schema patterns are ECMA-262 regular expressions, where `$` matches only at the very end; Python's `re.search`
(which jsonschema uses) also lets `$` match before a final newline, so "phi\\n" would pass a name pattern.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError


def ecma_pattern(pattern: str) -> str:
    """`pattern` with every end anchor `$` (outside character classes and escapes) made `\\Z`, as ECMA-262 means it."""
    out: list[str] = []
    in_class = False
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            out.append(pattern[i:i + 2])
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
        elif ch == "$":
            ch = r"\Z"
        out.append(ch)
        i += 1
    return "".join(out)


@lru_cache(maxsize=256)
def compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(ecma_pattern(pattern))


def _pattern(validator: Any, pattern: str, instance: Any, schema: Mapping[str, Any]) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and compiled(pattern).search(instance) is None:
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def validator_for(schema: dict[str, Any]) -> Any:
    """A validator of `schema`'s draft whose `pattern` keyword follows ECMA-262 (the schema is checked first)."""
    base = jsonschema.validators.validator_for(schema)
    base.check_schema(schema)
    strict = jsonschema.validators.extend(base, {"pattern": _pattern})
    return strict(schema)
