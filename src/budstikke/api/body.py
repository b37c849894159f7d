"""Reading a JSON request body within the size limit, with clear errors for bad input."""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import Request
from starlette.requests import ClientDisconnect

from budstikke.domain.request_fields import RequestValidationError

# JSON escapes that decode to a lone UTF-16 surrogate or to NUL, which no
# database text column can store; checked only when the raw text has them.
SUSPICIOUS_ESCAPE = re.compile(rb"\\u(?:[dD][89a-fA-F]|0000)")
MAX_NESTING = 32


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is larger than {limit} bytes")
        self.limit = limit


class UnsupportedContentType(Exception):
    pass


class ClientGone(Exception):
    """The client closed the connection before its request body was complete."""


async def read_json_body(request: Request, max_bytes: int) -> Any:
    """Read and parse the body; raises BodyTooLarge, UnsupportedContentType or a 400 error."""
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise UnsupportedContentType(
            f"Content-Type must be application/json; got {content_type or 'none'!r}"
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise BodyTooLarge(max_bytes)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise BodyTooLarge(max_bytes)
            chunks.append(chunk)
    except ClientDisconnect:
        raise ClientGone from None
    raw = b"".join(chunks)
    return parse_json(raw)


def reject_constant(name: str) -> Any:
    """Reject NaN, Infinity and -Infinity, which Python's json accepts but JSON does not."""
    raise RequestValidationError(
        {"$": [f"The request body is not valid JSON: {name} is not a JSON number."]}
    )


def parse_json(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
        value = json.loads(text, parse_constant=reject_constant)
    except UnicodeDecodeError as error:
        raise RequestValidationError(
            {"$": [f"The request body is not valid UTF-8 (byte {error.start})."]}
        ) from None
    except json.JSONDecodeError as error:
        raise RequestValidationError(
            {
                "$": [
                    f"The request body is not valid JSON: {error.msg} at line {error.lineno} "
                    f"column {error.colno}."
                ]
            }
        ) from None
    except RecursionError:
        raise RequestValidationError({"$": ["The request body is nested too deeply."]}) from None
    except ValueError as error:
        # json.loads raises a plain ValueError for an integer literal over
        # Python's limit of 4300 digits for int conversion.
        raise RequestValidationError(
            {"$": [f"The request body has a number that is too long: {error}."]}
        ) from None
    if nesting_depth(value) > MAX_NESTING:
        raise RequestValidationError(
            {"$": [f"The request body is nested deeper than {MAX_NESTING} levels."]}
        )
    if SUSPICIOUS_ESCAPE.search(raw):
        reject_unstorable_strings(value)
    return value


def nesting_depth(value: Any) -> int:
    depth = 0
    level = [value]
    while level:
        containers = [item for item in level if isinstance(item, dict | list)]
        if not containers:
            break
        depth += 1
        if depth > MAX_NESTING:
            return depth
        level = [
            child
            for container in containers
            for child in (container.values() if isinstance(container, dict) else container)
        ]
    return depth


def reject_unstorable_strings(value: Any, path: str = "") -> None:
    """Reject NUL and lone surrogates, naming the field by its JSON path (`a.b[0]`)."""
    if isinstance(value, str):
        if "\x00" in value:
            raise RequestValidationError(
                {path or "$": ["Text must not contain the NUL character."]}
            )
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise RequestValidationError(
                {path or "$": ["Text contains a lone UTF-16 surrogate, which is not a character."]}
            ) from None
    elif isinstance(value, dict):
        for key, item in value.items():
            reject_unstorable_strings(key, path)
            reject_unstorable_strings(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            reject_unstorable_strings(item, f"{path or '$'}[{index}]")
