"""HTML pieces shared by every report writer (scenario, comparison, studies, sessions)."""

from __future__ import annotations

import base64
import html
from collections.abc import Callable, Mapping

__all__ = ["html_table", "png_img"]


def html_table(
    head: list[str],
    rows: list[list[str]],
    *,
    row_class: Mapping[int, str] | None = None,
    cell_class: Callable[[str], str | None] | None = None,
) -> str:
    """An escaped HTML table.

    Parameters
    ----------
    head : list of str
        Column titles.
    rows : list of list of str
        Cell texts (escaped here).
    row_class : mapping of int to str, optional
        CSS class per row index.
    cell_class : callable, optional
        CSS class for a cell from its text (None for none).
    """
    out = ["<table><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head)
           + "</tr></thead><tbody>"]
    for i, row in enumerate(rows):
        rc = (row_class or {}).get(i)
        cells = []
        for c in row:
            cc = cell_class(c) if cell_class else None
            cells.append(f"<td{f' class={chr(34)}{cc}{chr(34)}' if cc else ''}>"
                         f"{html.escape(c)}</td>")
        out.append(f"<tr{f' class={chr(34)}{rc}{chr(34)}' if rc else ''}>{''.join(cells)}</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def png_img(png: bytes, alt: str) -> str:
    """An <img> embedding a PNG as base64, so the HTML stays self-contained."""
    return (f"<img alt='{html.escape(alt)}' "
            f"src='data:image/png;base64,{base64.b64encode(png).decode()}'>")
