"""JSON from users' files: the one parser, bounded in depth, and the type tests its readers share.

Weights headers and model cards, exported ONNX files' cards, STAC items, a class raster's
class names, prepared datasets' manifests and training checkpoints all hand aerialseg JSON
that anyone may have written. Python's parser recurses once per level of nesting, so
``[[[[...]]]]`` 100,000 deep raises :class:`RecursionError` (no ``ValueError``, so no reader's
``except`` caught it), and a document just shallow enough to parse would raise it later in
whatever walks it (validation, ``asdict``, ``json.dumps``). :func:`parse_json` turns every
failure into :class:`JsonProblem`, a ``ValueError`` whose text says why in words, and refuses
nesting deeper than :data:`MAX_DEPTH`, which no file aerialseg writes comes near; each reader
wraps the problem in its own one-line error naming the file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import MISSING, fields
from typing import Any, TypeGuard

__all__ = [
    "MAX_DEPTH",
    "Check",
    "JsonProblem",
    "parse_json",
    "fields_problem",
    "is_int",
    "is_number",
    "is_text",
    "list_of",
    "shown",
]

Check = Callable[[object], bool]
"""A test of one JSON value's type (see :func:`fields_problem`)."""

MAX_DEPTH = 64


class JsonProblem(ValueError):
    """Why a text is not JSON aerialseg can use, in words; the reader's error adds the file."""


def parse_json(data: str | bytes) -> Any:  # noqa: ANN401 (parsed JSON)
    """The JSON value of ``data`` (text, or UTF-8/16/32 bytes); :class:`JsonProblem` for anything unusable."""
    try:
        value = json.loads(data)
    except RecursionError as exc:
        raise JsonProblem(f"nested deeper than {MAX_DEPTH} levels") from exc
    except UnicodeDecodeError as exc:
        raise JsonProblem("not UTF-8 text") from exc
    except json.JSONDecodeError as exc:
        raise JsonProblem(f"{exc.msg} at line {exc.lineno}, column {exc.colno}") from exc
    except ValueError as exc:  # an integer of more digits than Python converts, and the like
        raise JsonProblem(str(exc).split(";")[0]) from exc
    if _deeper_than(value, MAX_DEPTH):
        raise JsonProblem(f"nested deeper than {MAX_DEPTH} levels")
    return value


def _deeper_than(value: object, limit: int) -> bool:
    """Whether lists and objects nest more than ``limit`` levels in ``value`` (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        for child in children:
            if isinstance(child, dict | list):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def is_int(value: object) -> TypeGuard[int]:
    """A JSON integer (``true`` and ``false`` are not numbers)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> TypeGuard[float]:
    """A finite JSON number."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def is_text(value: object) -> TypeGuard[str]:
    """A JSON string."""
    return isinstance(value, str)


def list_of(check: Callable[[object], bool]) -> Callable[[object], bool]:
    """A test of JSON lists whose every item passes ``check``."""
    return lambda value: isinstance(value, list) and all(check(item) for item in value)


def shown(value: object, limit: int = 60) -> str:
    """A value from a file as JSON, escaped and shortened, for an error message."""
    text = json.dumps(value, default=str)  # ensure_ascii: control characters come out as \u escapes
    return text if len(text) <= limit else text[: limit - 3] + "..."


def fields_problem(value: Mapping[str, object], types: Mapping[str, tuple[str, Check]], kind: type) -> str | None:
    """Why the JSON object ``value`` cannot give the fields of the dataclass ``kind``, else None.

    ``types`` holds each field's JSON type as errors say it and its test. The answer follows
    the object's name in the reader's message: ``has unknown fields ["x"]``, ``lacks the fields
    arch, bands`` (those without a default) or ``field "bands" must be a list of band codes, not 3``.
    """
    unknown = sorted(set(value) - set(types))
    if unknown:
        return f"has unknown fields {shown(unknown)}"
    required = [f.name for f in fields(kind) if f.default is MISSING and f.default_factory is MISSING]
    missing = [name for name in required if name not in value]
    if missing:
        return f"lacks the fields {', '.join(missing)}"
    for key, item in value.items():
        expected, check = types[key]
        if not check(item):
            return f"field {shown(key)} must be {expected}, not {shown(item)}"
    return None
