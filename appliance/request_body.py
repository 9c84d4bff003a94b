"""Reading a request body without letting a client fill the memory, the stack or the error answer.

A job body is JSON, sent as JSON: a `text/plain` POST (which a browser sends cross-origin without a preflight) is
refused before anything is parsed. Nesting is bounded (a deep body would otherwise recurse in the parser and the
validator), and strings must be valid Unicode (a lone surrogate such as `"\\ud800"` parses, but cannot be written
back in an error answer).
"""

from __future__ import annotations

import json
from email.message import Message
from typing import Any

from starlette.requests import Request

MAX_DEPTH = 16  # the job body nests 3 levels (body -> options -> value); room for additions


class BodyError(ValueError):
    """The body is not a JSON document the API accepts; str(exc) says why, for `details.body`."""


async def read_capped(request: Request, limit: int) -> bytes | None:
    """The body, or None once it exceeds `limit` bytes (without reading the rest into memory)."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def declares_body(request: Request) -> bool:
    return "transfer-encoding" in request.headers or request.headers.get("content-length", "0") not in ("", "0")


def is_json_type(content_type: str | None) -> bool:
    """application/json or application/<anything>+json (parameters such as charset allowed)."""
    if not content_type:
        return False
    message = Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


def parse_json(raw: bytes, max_depth: int = MAX_DEPTH) -> Any:
    """The parsed body; BodyError when it is not UTF-8 JSON, nests deeper than `max_depth`, or holds a string (key
    or value) that is not valid Unicode."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise BodyError(f"nested deeper than {max_depth} levels") from None
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        raise BodyError("not valid JSON") from None
    _check(value, max_depth)
    return value


def _check(value: Any, max_depth: int) -> None:
    stack = [(value, 1)]  # iterative: the check itself must not recurse
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, (dict, list)):
            if depth > max_depth:
                raise BodyError(f"nested deeper than {max_depth} levels")
            if isinstance(item, dict):
                for key in item:
                    _check_text(key)
                stack.extend((v, depth + 1) for v in item.values())
            else:
                stack.extend((v, depth + 1) for v in item)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BodyError("a string is not valid Unicode (lone surrogate escape)") from None
