"""The one-file HTML report: inline CSS, images as base64 data URIs, no script and no external
URL (a Content-Security-Policy forbids any), so it opens offline, from MLflow's artifact view or
from an e-mail attachment, exactly as it was written."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
CSS = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2330;
margin:0;background:#f6f7f9}
main{max-width:1120px;margin:0 auto;padding:24px 32px 64px;background:#fff;min-height:100vh}
h1{font-size:26px;margin:8px 0 4px}h2{font-size:20px;margin:36px 0 8px;padding-top:8px;
border-top:1px solid #e3e6eb}h3{font-size:16px;margin:20px 0 6px}
.sub{color:#5b6473;margin:0 0 12px}nav{font-size:14px;margin:12px 0 4px}
nav a{margin-right:14px;color:#2357b5;text-decoration:none}
table{border-collapse:collapse;margin:8px 0 6px;font-size:13.5px}
th,td{padding:4px 10px;border-bottom:1px solid #e6e8ec;text-align:left;white-space:nowrap}
th{background:#f0f2f5;font-weight:600}tr.ref td{background:#eef5ff;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.note{color:#5b6473;font-size:13.5px;max-width:900px}.facts td{white-space:normal}
img{max-width:100%;height:auto;display:block;margin:8px 0}
.wrap{overflow-x:auto}code{background:#f0f2f5;padding:1px 4px;border-radius:3px}
.tok{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12.5px}
"""


@dataclass
class Section:
    id: str
    title: str
    body: str


def page(title: str, subtitle: str, sections: Sequence[Section]) -> str:
    nav = "".join(f'<a href="#{s.id}">{html.escape(s.title)}</a>' for s in sections)
    body = "".join(
        f'<section id="{s.id}"><h2>{html.escape(s.title)}</h2>{s.body}</section>' for s in sections
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body><main>"
        f'<h1>{html.escape(title)}</h1><p class="sub">{html.escape(subtitle)}</p>'
        f"<nav>{nav}</nav>{body}</main></body></html>\n"
    )


def table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    numeric_from: int = 99,
    highlight_first: bool = False,
    css: str = "",
) -> str:
    """Cells from column `numeric_from` on are right-aligned numbers."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    lines = []
    for i, row in enumerate(rows):
        cells = "".join(
            f'<td class="num">{html.escape(c)}</td>'
            if j >= numeric_from
            else f"<td>{html.escape(c)}</td>"
            for j, c in enumerate(row)
        )
        attr = ' class="ref"' if highlight_first and i == 0 else ""
        lines.append(f"<tr{attr}>{cells}</tr>")
    return (
        f'<div class="wrap"><table class="{css}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(lines)}</tbody></table></div>"
    )


def image(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def heading(text: str) -> str:
    return f"<h3>{html.escape(text)}</h3>"


def facts(pairs: Sequence[tuple[str, str]]) -> str:
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in pairs)
    return f'<div class="wrap"><table class="facts"><tbody>{rows}</tbody></table></div>'
