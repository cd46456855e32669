"""Plain-text formatting shared by the CLI tables and the HTML report (no heavy imports: the CLI starts fast)."""

from __future__ import annotations

from typing import Any


def fmt(value: Any) -> str:
    """A table cell: floats to 4 decimals (thousands separated, none past 1,000), ints with separators."""
    if isinstance(value, float):
        return f"{value:,.4f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)
