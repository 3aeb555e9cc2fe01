"""The API's JSON parser: a body PostgreSQL and every later step can hold, or a 400 problem.

Python's ``json`` accepts things that break later steps with a 500: a lone UTF-16 surrogate
(``"\\ud800"``: no UTF-8 encoding, so hashing or storing fails), ``\\u0000`` in a string (jsonb
refuses it), nesting deep enough to hit the interpreter's recursion limit, and numbers outside a
double (``1e999`` parses as infinity; ``NaN``/``Infinity`` are not JSON at all). This parser
refuses each with a ``ParseError`` (400 ``malformed-request``) naming where the problem is.
Strings and keys are checked by one iterative walk (no recursion), bounded by the body size.
"""

from __future__ import annotations

import json
import math

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

MAX_DEPTH = 64  # far beyond any real input; far below the recursion limit


def _parse_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"the number {text[:32]} is outside the range of a double")
    return number


def _parse_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _depth_check(text: str) -> None:
    """Refuse nesting deeper than MAX_DEPTH before the (recursive) decoder sees it."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return
    depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise ParseError(f"JSON parse error - nesting deeper than {MAX_DEPTH} levels")
        elif char in "]}":
            depth -= 1


def _bad_string(value: str) -> str | None:
    if "\x00" in value:
        return "contains \\u0000"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone UTF-16 surrogate"
    return None


MAX_PATH = 200  # characters of a value's path kept (and named in an error)


def _strings_check(text: str, data) -> None:
    """Refuse a NUL or a lone surrogate in any string or key. Only a ``\\u`` escape can produce
    either (strict UTF-8 decoding cannot, and the decoder refuses raw control characters), so a
    body without one is not walked. Each path is cut to MAX_PATH as it is built: a long key
    over many list items must not be copied once per item."""
    if "\\u" not in text:
        return
    stack = [("$", data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            problem = _bad_string(value)
            if problem:
                raise ParseError(f"JSON parse error - the string at {path} {problem}")
        elif isinstance(value, dict):
            for key, item in value.items():
                problem = _bad_string(key)
                if problem:
                    raise ParseError(f"JSON parse error - a key in {path} {problem}")
                stack.append(((path + "." + key[:MAX_PATH])[:MAX_PATH], item))
        elif isinstance(value, list):
            stack.extend(((path + f"[{index}]")[:MAX_PATH], item) for index, item in enumerate(value))


def json_loads_strict(text: str):
    """``text`` decoded, or ParseError for anything a later step could not hold."""
    _depth_check(text)
    try:
        data = json.loads(text, parse_float=_parse_float, parse_constant=_parse_constant)
    except RecursionError:  # unreachable after _depth_check; kept as a last guard
        raise ParseError("JSON parse error - nesting too deep") from None
    except ValueError as error:  # JSONDecodeError, our refusals, and int('9' * 5000)'s digit limit
        raise ParseError(f"JSON parse error - {error}"[:300]) from None
    _strings_check(text, data)
    return data


class StrictJSONParser(JSONParser):
    """DRF's JSON parser with the refusals above; the body is UTF-8 (RFC 8259), checked strictly."""

    def parse(self, stream, media_type=None, parser_context=None):
        raw = stream.read()  # bounded: BodySizeLimitMiddleware and DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ParseError("JSON parse error - the body is not valid UTF-8") from None
        return json_loads_strict(text)
