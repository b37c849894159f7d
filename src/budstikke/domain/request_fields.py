"""Reading fields of a JSON request body the way Altinn's API reads them.

Property names match case-insensitively, a number sent as a numeric string is
accepted, unknown properties are ignored, and `null` on an optional field
means absent. Every problem is collected under the JSON path of its field, so
one response lists them all.
"""

from __future__ import annotations

from typing import Any

from budstikke.errors import BudstikkeError

JsonObject = dict[str, Any]
# The largest value of a signed 64-bit database column, such as the feed's seq.
INT64_MAX = 2**63 - 1


class RequestValidationError(BudstikkeError):
    """A request body or query broke one or more rules; `errors` maps JSON paths to messages."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{path}: {' '.join(msgs)}" for path, msgs in errors.items()))
        self.errors = errors


class FieldErrors:
    """Collects messages per JSON path while a request is read."""

    def __init__(self) -> None:
        self.errors: dict[str, list[str]] = {}

    def add(self, path: str, message: str) -> None:
        self.errors.setdefault(path, []).append(message)

    def raise_if_any(self) -> None:
        if self.errors:
            raise RequestValidationError(self.errors)


def fold_keys(value: JsonObject) -> JsonObject:
    """Return the object with lower-cased property names (the last of equal names wins)."""
    return {key.lower(): item for key, item in value.items()}


def join_path(parent: str, name: str) -> str:
    return f"{parent}.{name}" if parent else name


def read_object(
    source: JsonObject, name: str, parent: str, errors: FieldErrors, *, required: bool
) -> JsonObject | None:
    """Read a nested object; a missing or null required object is reported at its own path."""
    path = join_path(parent, name)
    value = source.get(name.lower())
    if value is None:
        if required:
            errors.add(path, f"{name} is required.")
        return None
    if not isinstance(value, dict):
        errors.add(path, f"{name} must be a JSON object; got {json_type(value)}.")
        return None
    return fold_keys(value)


def read_string(
    source: JsonObject,
    name: str,
    parent: str,
    errors: FieldErrors,
    *,
    required: bool,
    max_length: int | None = None,
    allow_blank: bool = False,
) -> str | None:
    """Read a string; blank (only whitespace) counts as missing unless `allow_blank`."""
    path = join_path(parent, name)
    value = source.get(name.lower())
    if value is None:
        if required:
            errors.add(path, f"{name} is required.")
        return None
    if not isinstance(value, str):
        errors.add(path, f"{name} must be a string; got {json_type(value)}.")
        return None
    if not allow_blank and not value.strip():
        if required:
            errors.add(path, f"{name} is required and must not be blank.")
            return None
        return value
    if max_length is not None and len(value) > max_length:
        errors.add(path, f"{name} must be at most {max_length} characters; got {len(value)}.")
        return None
    return value


def read_integer(
    source: JsonObject,
    name: str,
    parent: str,
    errors: FieldErrors,
    *,
    required: bool,
    minimum: int,
    maximum: int,
) -> int | None:
    """Read an integer in [minimum, maximum]; a JSON string of digits is accepted."""
    path = join_path(parent, name)
    value = source.get(name.lower())
    rule = f"{name} must be an integer between {minimum} and {maximum}"
    if value is None:
        if required:
            errors.add(path, f"{name} is required; {rule[len(name) + 1 :]}.")
        return None
    number = to_integer(value)
    if number is None:
        errors.add(path, f"{rule}; got {describe(value)}.")
        return None
    if not minimum <= number <= maximum:
        errors.add(path, f"{rule}; got {number}.")
        return None
    return number


def to_integer(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        digits = text[1:] if text[:1] in "+-" else text
        # A bound on the length keeps int() away from huge digit strings, and
        # the result must fit a signed 64-bit database column.
        if digits.isascii() and digits.isdigit() and len(digits) <= 19:
            number = int(text)
            if -(2**63) <= number < 2**63:
                return number
    return None


def json_type(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "null"


def describe(value: object) -> str:
    """Show a value in an error message, shortened so a huge input stays a short message."""
    text = repr(value) if isinstance(value, str) else str(value).lower()
    if isinstance(value, list | dict):
        text = json_type(value)
    return text if len(text) <= 60 else text[:57] + "..."
