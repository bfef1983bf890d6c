"""Error bodies that always render: what a client sent, echoed back as JSON can carry it.

A validation error quotes the offending input. Python's json module reads ``NaN``, ``Infinity``
and ``1e999`` as floats JSON cannot write, and ``"\\ud800"`` as a string UTF-8 cannot encode, so
the stock handler, echoing them, failed with a 500 instead of answering 422. Here every value in an
error body is made representable first: non-finite numbers by their JSON-ish names, lone
surrogates escaped, anything else (an exception in ``ctx``, bytes) as text, and nesting cut short.
"""

from __future__ import annotations

import json
import math
from typing import Any

from starlette.responses import JSONResponse

# Deeper than any body of ours nests; an input nested further is echoed only this far.
ECHO_DEPTH = 16
TRUNCATED = "…"


def json_safe(value: Any, depth: int = 0) -> Any:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, str):
        return _utf8(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if depth >= ECHO_DEPTH:
        return TRUNCATED
    if isinstance(value, dict):
        return {_utf8(str(key)): json_safe(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(item, depth + 1) for item in value]
    return _utf8(str(value))


def _utf8(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


class ProblemResponse(JSONResponse):
    """A JSONResponse whose content may hold anything a client sent."""

    def render(self, content: Any) -> bytes:
        # The json module, not orjson: it writes integers of any size, as it read them.
        return json.dumps(json_safe(content), ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
