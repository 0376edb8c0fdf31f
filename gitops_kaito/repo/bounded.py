"""JSON from senders nobody vetted (webhook deliveries, a model server's answer), parsed under size and depth limits.

Python's json module recurses once per nesting level: a small body of nested brackets would otherwise end in a
RecursionError (a dropped connection and a traceback) instead of a clear refusal.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

MAX_JSON_DEPTH = 64  # webhook payloads nest about 5 levels deep, /v1/models answers 3
# A JSON string (escapes included) in one match: the unrolled form stays linear on long strings.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


class JsonRefused(ValueError):
    """The body is not JSON within the limits; str() says why in a line."""


def nesting(data: bytes) -> int:
    """How deep the arrays and objects of a JSON text nest (brackets inside strings do not count)."""
    brackets = _NOT_BRACKET.sub(b"", _STRING.sub(b"", data))
    return max(accumulate(_STEP[b] for b in brackets), default=0)


def loads_json(data: bytes | str, max_bytes: int, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """json.loads, refusing (JsonRefused) a text over max_bytes or nesting deeper than max_depth before parsing."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if len(raw) > max_bytes:
        raise JsonRefused(f"over {max_bytes} bytes")
    depth = nesting(raw)
    if depth > max_depth:
        raise JsonRefused(f"nests {depth} levels deep, more than {max_depth}")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as err:
        raise JsonRefused(f"not JSON: {err}") from None
