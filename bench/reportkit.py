"""One document builder for every report layout: Markdown and self-contained HTML at once.

A layout adds headings, paragraphs, tables, figures and notes to a :class:`Report` once;
:meth:`Report.write` writes ``report.md`` (figures as PNG files under ``figures/``) and
``report.html`` (figures embedded), both atomically, and ends both with the references of
the sources the report names (:data:`bench.references.REFERENCES`: every key its text
contains, after internal paper numbers are replaced by keys with
:func:`bench.references.humanize`).
"""

from __future__ import annotations

import html
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import store
from bench.htmlkit import html_table, png_img
from bench.references import humanize

__all__ = ["CSS", "Report", "fmt", "md_table", "new_figure", "png_bytes"]

CSS = """body{font-family:system-ui,sans-serif;max-width:76rem;margin:2rem auto;padding:0 1rem}
table{border-collapse:collapse;margin:1rem 0;font-size:.9rem}
th,td{border:1px solid #bbb;padding:.25rem .5rem;text-align:right}
th{background:#eee}td:first-child,td:nth-child(2){text-align:left}
tr.base td{font-weight:bold}tr.median td{border-top:2px solid #444;font-style:italic}
td.better{background:#e6f4e6}td.worse{background:#fbe9e7}
img{max-width:100%}code{background:#f4f4f4;padding:0 .2rem}.warn{color:#a40}"""

def new_figure(width: float, height: float, rows: int = 1, cols: int = 1) -> tuple[Any, Any]:
    """A constrained-layout figure on its own Agg canvas (no pyplot state) and its axes.

    Parameters
    ----------
    width, height : float, inches
    rows, cols : int

    Returns
    -------
    fig : matplotlib.figure.Figure
    axes : ndarray of Axes, shape (rows, cols)
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # only when drawing
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(rows, cols, squeeze=False)


def png_bytes(fig: Any, dpi: int = 100) -> bytes:
    """``fig`` as PNG bytes (for :meth:`Report.figure`)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


_MD_INLINE = re.compile(r"\*\*(.+?)\*\*|`(.+?)`")


def fmt(x: float | None, nd: int = 3) -> str:
    """A number for a table: ``nd`` significant digits, one decimal from 10 up, "-" if None."""
    if x is None:
        return "-"
    x = float(x)
    if not math.isfinite(x):
        return "nan"
    return f"{x:.{nd}g}" if abs(x) < 10 else f"{x:.1f}"


def md_table(head: list[str], rows: list[list[str]]) -> str:
    """A Markdown table (pipes in cells escaped)."""
    esc = lambda c: c.replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(esc(h) for h in head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(esc(str(c)) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _inline_html(text: str) -> str:
    """Escape ``text`` and render its ``**bold**`` and ```code``` spans."""
    out, pos = [], 0
    for m in _MD_INLINE.finditer(text):
        out.append(html.escape(text[pos:m.start()]))
        if m.group(1) is not None:
            out.append(f"<b>{html.escape(m.group(1))}</b>")
        else:
            out.append(f"<code>{html.escape(m.group(2))}</code>")
        pos = m.end()
    out.append(html.escape(text[pos:]))
    return "".join(out)


@dataclass
class Report:
    """A report under construction (see the module docstring).

    Parameters
    ----------
    title : str
    warning : str, optional
        Shown first, before everything else (e.g. "partial run: 3 of 40 records missing").
    """

    title: str
    warning: str = ""
    _md: list = field(default_factory=list)
    _html: list = field(default_factory=list)
    _figures: dict = field(default_factory=dict)
    _cited: list = field(default_factory=list)

    def cite(self, *keys: str) -> None:
        """Add sources (keys of :data:`bench.references.REFERENCES`) to the reference list."""
        for k in keys:
            if k and k not in self._cited:
                self._cited.append(k)

    def heading(self, text: str, level: int = 2) -> None:
        text = humanize(text)
        self._md += [f"{'#' * level} {text}", ""]
        self._html.append(f"<h{level}>{_inline_html(text)}</h{level}>")

    def para(self, text: str, *, css: str | None = None) -> None:
        """A paragraph; ``**bold**`` and ```code``` render in both formats."""
        if not text:
            return
        text = humanize(text)
        self._md += [text, ""]
        cls = f" class='{css}'" if css else ""
        self._html.append(f"<p{cls}>{_inline_html(text)}</p>")

    def bullets(self, items: list[str], *, ordered: bool = False) -> None:
        if not items:
            return
        items = [humanize(t) for t in items]
        self._md += [f"{i + 1}. {t}" if ordered else f"- {t}" for i, t in enumerate(items)]
        self._md.append("")
        tag = "ol" if ordered else "ul"
        self._html.append(f"<{tag}>" + "".join(f"<li>{_inline_html(t)}</li>" for t in items)
                          + f"</{tag}>")

    def table(self, head: list[str], rows: list[list[str]], *, bold_rows: set[int] = frozenset(),
              bold_col: int = 1, row_class: dict[int, str] | None = None,
              collapsed: str | None = None) -> None:
        """A table; in ``bold_rows`` the ``bold_col`` cell is bold in Markdown (the whole row
        in HTML); ``collapsed`` puts it in a closed ``<details>`` with that summary (HTML)."""
        head = [humanize(h) for h in head]
        md_rows = [[f"**{c}**" if i in bold_rows and j == bold_col and c else c
                    for j, c in enumerate(row)] for i, row in enumerate(rows)]
        self._md += [md_table(head, md_rows), ""]
        classes = {i: "base" for i in bold_rows}
        classes.update(row_class or {})
        tab = html_table(head, [[str(c) for c in r] for r in rows], row_class=classes)
        if collapsed:
            tab = f"<details><summary>{html.escape(collapsed)}</summary>{tab}</details>"
        self._html.append(tab)

    def figure(self, name: str, png: bytes, alt: str) -> None:
        """A PNG figure: ``figures/<name>.png`` beside the Markdown, embedded in the HTML."""
        self._figures[name] = png
        self._md += [f"![{alt}](figures/{name}.png)", ""]
        self._html.append(png_img(png, alt))

    def write(self, out: Path) -> dict[str, Path]:
        """Write ``report.md``, ``report.html`` and the figures into ``out``."""
        from bench.references import keys_in, reference_lines

        out = Path(out)
        paths: dict[str, Path] = {}
        for name, png in self._figures.items():
            paths[f"figure_{name}"] = out / "figures" / f"{name}.png"
            store.atomic_write_bytes(paths[f"figure_{name}"], png)
        for key in keys_in("\n".join(self._md)):  # every paper the text names is cited
            self.cite(key)
        refs = reference_lines(self._cited)
        md = [f"# {self.title}", ""]
        if self.warning:
            md += [f"**{self.warning}**", ""]
        md += self._md
        if refs:
            md += ["## References", ""] + [f"- {r}" for r in refs] + [""]
        paths["md"] = out / "report.md"
        store.atomic_write_bytes(paths["md"], "\n".join(md).encode())
        h = [f"<!DOCTYPE html><html><head><meta charset='utf-8'>"
             f"<title>{html.escape(self.title)}</title><style>{CSS}</style></head><body>",
             f"<h1>{html.escape(self.title)}</h1>"]
        if self.warning:
            h.append(f"<p class='warn'><b>{html.escape(self.warning)}</b></p>")
        h += self._html
        if refs:
            h.append("<h2>References</h2><ul>" + "".join(
                f"<li>{_inline_html(r)}</li>" for r in refs) + "</ul>")
        h.append("</body></html>")
        paths["html"] = out / "report.html"
        store.atomic_write_bytes(paths["html"], "".join(h).encode())
        return paths
