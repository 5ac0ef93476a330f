"""HTML pieces of the landing page: its stylesheet, escaping, links, tables and number formats.
Used by landing.py and what_ran.py (04_analysis, the chain).
"""

from __future__ import annotations

import html
import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from tts_utils.models import MODELS

CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328;
       margin: 0; background: #f6f8fa; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 28px 48px; background: #fff; }
h1 { font-size: 1.7em; margin: 0 0 4px; } h2 { font-size: 1.25em; margin: 32px 0 8px;
     border-bottom: 1px solid #d0d7de; padding-bottom: 4px; }
.sub { color: #59636e; margin: 0 0 16px; }
.banner { border: 2px solid #cf222e; background: #ffebe9; padding: 10px 14px; margin: 12px 0;
          font-weight: 600; border-radius: 6px; }
.banner.note { border-color: #9a6700; background: #fff8c5; }
table { border-collapse: collapse; width: 100%; table-layout: auto; margin: 8px 0; font-size: 0.92em; }
th, td { border-bottom: 1px solid #d0d7de; padding: 5px 8px; text-align: left; vertical-align: top;
         overflow-wrap: anywhere; }
th { background: #f6f8fa; font-weight: 600; }
td:first-child, th:first-child { min-width: 9em; overflow-wrap: normal; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 8px 0; }
dl.facts dt { font-weight: 600; color: #59636e; } dl.facts dd { margin: 0; overflow-wrap: anywhere; }
dl.facts dd ul { margin: 0; padding-left: 18px; }
.verdict { display: inline-block; padding: 1px 8px; border-radius: 10px; font-weight: 600;
           white-space: nowrap; font-size: 0.9em; }
.verdict.holds { background: #dafbe1; color: #116329; } .verdict.fails { background: #ffebe9; color: #a40e26; }
.verdict.open { background: #fff8c5; color: #7d4e00; } .verdict.none { background: #eaeef2; color: #59636e; }
.evidence { color: #3d444d; font-size: 0.88em; }
.figures { display: grid; grid-template-columns: 1fr; gap: 18px; }
figure { margin: 0; border: 1px solid #d0d7de; border-radius: 6px; padding: 8px; }
figure img { max-width: 100%; height: auto; display: block; margin: 0 auto; }
figcaption { font-size: 0.88em; color: #3d444d; margin-top: 6px; }
.small { font-size: 0.88em; color: #59636e; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; background: #f6f8fa; padding: 8px; font-size: 0.85em; }
a { color: #0969da; }
"""


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value))


def link(target: Path, base: Path, text: str | None = None) -> str:
    """An ``<a>`` to ``target``, relative to the page's folder; plain text if the file is absent."""
    label = esc(text or target.name)
    if not target.exists():
        return f'{label} <span class="small">(absent)</span>'
    return f'<a href="{esc(os.path.relpath(target, base))}">{label}</a>'


def html_table(headers: list[str], rows: Iterable[list[str]], numeric: set[int] = frozenset()) -> str:
    """An HTML table from pre-escaped cells; columns in ``numeric`` align right."""
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_number(value: object) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return esc(value)


def html_fixed(value: object, spec: str) -> str:
    """A number in a fixed format; a dash when absent (a proxy's accuracy) or not a number."""
    if not isinstance(value, (int, float)) or pd.isna(value):
        return "–"
    return format(value, spec)


def read_csv_or_none(path: Path) -> pd.DataFrame | None:
    try:
        return pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return None


def by_model_size(keys: Iterable[str]) -> list[str]:
    return sorted(set(keys), key=lambda key: (MODELS[key].params_billion if key in MODELS else 1e9, key))
