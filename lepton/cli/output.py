"""Printing for the CLI: rich tables for people, ``--format json`` for machines."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from lepton.utils.text import fmt

console = Console()


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def print_table(rows: Sequence[dict[str, Any]], title: str | None = None) -> None:
    if not rows:
        return
    t = Table(title=title, title_justify="left")
    for col in rows[0]:
        t.add_column(col, justify="left" if isinstance(rows[0][col], str) else "right")
    for r in rows:
        t.add_row(*(fmt(r.get(c, "")) for c in rows[0]))
    console.print(t)
