"""The one JSON parser for every file or reply Lepton reads from outside: strict, bounded, never recursing deep.

:func:`loads` accepts exactly RFC 8259 JSON in UTF-8 and refuses, with one-line
:class:`lepton.errors.FormatError` messages naming ``what`` was being read:

- bytes that are not UTF-8, and text that is not JSON;
- arrays/objects nested deeper than ``max_depth`` (checked by a linear scan before parsing, so a forged
  100,000-deep document costs one pass and never reaches Python's recursion limit);
- the non-standard constants ``NaN``, ``Infinity`` and ``-Infinity``, and numbers such as ``1e999`` that
  overflow a 64-bit float to infinity;
- integers with more digits than Python converts (``sys.get_int_max_str_digits()``);
- an object that repeats a key (``json.loads`` would silently keep the last one).

On every valid document the result equals ``json.loads``'s. :func:`expect_dict` and :func:`expect_list`
check the type of a parsed value with the same kind of message.
"""

from __future__ import annotations

import json
import math
import re
import sys
from itertools import accumulate
from typing import Any

from lepton.errors import FormatError

__all__ = ["MAX_DEPTH", "expect_dict", "expect_list", "loads", "nesting_depth"]

MAX_DEPTH = 64  # arrays/objects inside one another; every Lepton format needs fewer than 10

# A JSON string (escapes included), or an unterminated one running to the end; brackets inside never count.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def loads(data: bytes | bytearray | memoryview | str, what: str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse ``data`` (UTF-8 bytes or text) as strict JSON; ``what`` names it in errors ("the .lds index")."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as e:
            raise FormatError(
                f"{what} is not valid UTF-8 (byte {e.start}: {e.reason}); expected UTF-8 JSON, the "
                "file is corrupted or forged."
            ) from None
    else:
        text = data
    _check_depth(text, what, max_depth)
    try:
        return json.loads(
            text,
            object_pairs_hook=lambda pairs: _object(pairs, what),
            parse_constant=lambda token: _constant(token, what),
            parse_float=lambda s: _float(s, what),
        )
    except FormatError:
        raise
    except json.JSONDecodeError as e:
        raise FormatError(
            f"{what} is not valid JSON ({e.msg.removesuffix(' at')} at line {e.lineno} column "
            f"{e.colno}); the file is corrupted or was not written by Lepton."
        ) from None
    except ValueError:  # the only other one: an integer longer than int() converts
        raise FormatError(
            f"{what} contains an integer with more than {sys.get_int_max_str_digits()} digits; "
            "the file is forged or corrupted."
        ) from None


def expect_dict(value: Any, what: str) -> dict[str, Any]:
    """``value`` if it is a JSON object, else a :class:`FormatError` naming ``what`` and the type found."""
    if not isinstance(value, dict):
        raise FormatError(f"{what} must be a JSON object, got {_kind(value)}; the file is corrupted or forged.")
    return value


def expect_list(value: Any, what: str) -> list[Any]:
    """``value`` if it is a JSON array, else a :class:`FormatError` naming ``what`` and the type found."""
    if not isinstance(value, list):
        raise FormatError(f"{what} must be a JSON array, got {_kind(value)}; the file is corrupted or forged.")
    return value


def _kind(value: Any) -> str:
    names = {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        type(None): "null",
    }
    text = repr(value)
    return f"{names.get(type(value), type(value).__name__)} {text[:40] + '…' if len(text) > 40 else text}"


def nesting_depth(text: str) -> int:
    """How deeply ``text``'s arrays/objects nest (0 for a scalar), in one linear pass without recursion;
    brackets inside strings do not count. Writers use it to refuse what :func:`loads` would refuse."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(accumulate(1 if c in "[{" else -1 for c in brackets), default=0)


def _check_depth(text: str, what: str, max_depth: int) -> None:
    if len(_NOT_BRACKET.sub("", text)) <= max_depth:  # cannot nest deeper than it has brackets
        return
    depth = nesting_depth(text)
    if depth > max_depth:
        raise FormatError(
            f"{what} nests JSON arrays/objects {depth} levels deep, over the limit of {max_depth}; "
            "the file is forged or corrupted."
        )


def _object(pairs: list[tuple[str, Any]], what: str) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        key = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise FormatError(
            f"{what} has the duplicate JSON key {key!r} in one object; keys must be unique, the file is "
            "forged or corrupted."
        )
    return obj


def _constant(token: str, what: str) -> Any:
    raise FormatError(
        f"{what} contains {token}, which is not valid JSON; only finite numbers are allowed, the file is "
        "forged or corrupted."
    )


def _float(text: str, what: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        shown = text if len(text) <= 24 else text[:24] + "…"
        raise FormatError(
            f"{what} contains the number {shown}, which overflows a 64-bit float; only finite "
            "numbers are allowed, the file is forged or corrupted."
        )
    return value
