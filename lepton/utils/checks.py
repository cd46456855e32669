"""Parameter checks with one message template, scikit-learn's: "The 'n_components' parameter of PCA must be
an int in [1, inf). Got -3 instead." — and the one rule for names that travel in URLs, paths and files.

``bool`` is never accepted as a number (``True`` is an ``int`` to Python, never a count to a user); NaN is in
no interval.
"""

from __future__ import annotations

from typing import Any

from lepton.errors import ConfigError

#: A name that is safe as one URL or path segment: served models, run folders, rendezvous ids.
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
NAME_CHARS = "A-Z a-z 0-9 _ . -"
_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")


def interval(lo: float | None, hi: float | None, *, lo_open: bool = False, hi_open: bool = False) -> str:
    """``[1, inf)``-style text for ``lo <= x <= hi`` (``None`` is unbounded; open ends get round brackets)."""
    left = "(" if lo_open or lo is None else "["
    right = ")" if hi_open or hi is None else "]"
    return f"{left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"


def bad_parameter(
    name: str,
    expected: str,
    value: Any,
    *,
    owner: str | None = None,
    hint: str = "",
    error: type[Exception] = ConfigError,
) -> Exception:
    """The error for parameter ``name`` (of ``owner``) holding ``value`` where ``expected`` was due."""
    where = f" of {owner}" if owner else ""
    tail = f" {hint}" if hint else ""
    return error(f"The {name!r} parameter{where} must be {expected}. Got {value!r} instead.{tail}")


def _in(value: Any, lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> bool:
    above = lo is None or (value > lo if lo_open else value >= lo)
    below = hi is None or (value < hi if hi_open else value <= hi)
    return bool(above and below)


def check_int(
    value: Any,
    name: str,
    lo: int | None = None,
    hi: int | None = None,
    *,
    owner: str | None = None,
    allow_none: bool = False,
    hint: str = "",
    error: type[Exception] = ConfigError,
) -> Any:
    """``value`` if it is an int (not a bool) in ``[lo, hi]`` (or None where ``allow_none``); else ``error``."""
    if value is None and allow_none:
        return value
    if isinstance(value, bool) or not isinstance(value, int) or not _in(value, lo, hi, False, False):
        expected = f"an int in {interval(lo, hi)}" + (" or None" if allow_none else "")
        raise bad_parameter(name, expected, value, owner=owner, hint=hint, error=error)
    return value


def check_float(
    value: Any,
    name: str,
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
    owner: str | None = None,
    allow_none: bool = False,
    hint: str = "",
    error: type[Exception] = ConfigError,
) -> Any:
    """``value`` if it is an int or float (not a bool) in the interval (or None where ``allow_none``)."""
    if value is None and allow_none:
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not _in(value, lo, hi, lo_open, hi_open):
        expected = f"a float in {interval(lo, hi, lo_open=lo_open, hi_open=hi_open)}" + (
            " or None" if allow_none else ""
        )
        raise bad_parameter(name, expected, value, owner=owner, hint=hint, error=error)
    return value


def check_name(
    value: Any,
    what: str,
    *,
    max_len: int = 128,
    segment: bool = True,
    hint: str = "",
    error: type[Exception] = ConfigError,
) -> str:
    """``value`` if it is a name of 1 to ``max_len`` characters from A-Z a-z 0-9 ``_ . -``.

    With ``segment`` (the default) it must also start with a letter or digit, so it is never ``.``, ``..``
    or an option (``-x``) when it becomes a URL or path segment. Store field names do without: the store
    format has always allowed them (``_labels``), and files written so must stay readable.
    """
    ok = (
        isinstance(value, str)
        and 1 <= len(value) <= max_len
        and set(value) <= _NAME_CHARS
        and (not segment or value[0].isascii() and value[0].isalnum())
    )
    if not ok:
        first = ", starting with a letter or digit" if segment else ""
        raise error(
            f"{what} {value!r} is invalid: use 1-{max_len} characters from {NAME_CHARS}{first}."
            + (f" {hint}" if hint else "")
        )
    return value
