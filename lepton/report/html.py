"""Building blocks of the self-contained HTML report: escaped tables and figures embedded as PNG."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from lepton.utils.text import fmt  # noqa: E402

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;
     padding:0 1em;color:#1d232b;line-height:1.45}
h1{margin-bottom:.2em} h2{border-bottom:2px solid #e2e6ea;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.8em 0;font-size:.92em}
th,td{border:1px solid #d6dbe0;padding:.3em .7em;text-align:right} th{background:#f3f5f7}
td:first-child,th:first-child{text-align:left}
.kpis{display:flex;gap:1em;flex-wrap:wrap}
.kpi{background:#f3f5f7;border-radius:8px;padding:.6em 1em;min-width:9em}
.kpi b{display:block;font-size:1.4em}
figure{margin:1em 0} img{max-width:100%} pre{background:#f6f8fa;padding:1em;overflow:auto;font-size:.85em}
.muted{color:#66707a;font-size:.9em}
"""


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    if not rows:
        return "<p class='muted'>(no rows)</p>"
    columns = list(columns or rows[0].keys())
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(fmt(r.get(c, '')))}</td>" for c in columns) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def kpis(items: dict[str, Any]) -> str:
    return (
        "<div class='kpis'>"
        + "".join(f"<div class='kpi'>{html.escape(k)}<b>{html.escape(fmt(v))}</b></div>" for k, v in items.items())
        + "</div>"
    )


def figure(fig: Figure, caption: str = "") -> str:
    """Embed ``fig`` as a base64 PNG (the report is one self-contained file) and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode()
    cap = f"<figcaption class='muted'>{html.escape(caption)}</figcaption>" if caption else ""
    return f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>{cap}</figure>"


def page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>{body}</body></html>"
    )
