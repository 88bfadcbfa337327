"""Evaluation reports: one Markdown file and one self-contained HTML file per run.

A :class:`Report` collects headings, paragraphs, warnings, tables and plots, then writes
``DIR/report.md`` (plots linked as files beside it, fit to paste into a model card) and
``DIR/report.html`` (one file: plots embedded as base64 PNG, no scripts, no external
resources). Every piece of text in the HTML, model output and file names included, is
HTML-escaped; in Markdown, table cells have ``|`` and newlines escaped so a model's answer
cannot break the table.

Example::

    rep = Report("jprefs eval rm")
    rep.heading("Leaderboard")
    rep.table(["model", "accuracy"], [["rm-a", "0.71 [0.66, 0.76]"]])
    rep.image("leaderboard.png", "accuracy with 95% intervals")
    rep.write("out/eval")          # out/eval/report.md, out/eval/report.html
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence


def fmt_ci(est: float | None, ci: Sequence[float] | None = None, digits: int = 3) -> str:
    """``0.711 [0.664, 0.757]``; ``-`` for a missing or NaN estimate.

    >>> fmt_ci(0.7111, [0.66, 0.757])
    '0.711 [0.660, 0.757]'
    """
    if est is None or est != est:
        return "-"
    s = f"{est:.{digits}f}"
    if ci is not None and all(c is not None and c == c for c in ci):
        s += f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"
    return s


def _md_text(x: Any) -> str:
    """Text for the Markdown report as text: model and judge output carries HTML (``<script>``, ``<img
    src=http://...>``) and Markdown images and links (``![x](http://...)``) that a renderer of the .md (a Hub
    model card it is pasted into) would load or run. The HTML file escapes on its own."""
    return str(x).replace("<", "&lt;").replace(">", "&gt;").replace("![", "!\\[").replace("](", "]\\(")


def _md_cell(x: Any) -> str:
    return _md_text(str(x).replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ")).replace("\n", "<br>")


@dataclass
class Report:
    """Blocks of a report, written to Markdown and self-contained HTML by :meth:`write`."""

    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> "Report":
        self.blocks.append(("heading", (level, text)))
        return self

    def para(self, text: str) -> "Report":
        """A paragraph of plain text (not interpreted as Markdown or HTML in the HTML file)."""
        self.blocks.append(("para", text))
        return self

    def warning(self, text: str) -> "Report":
        self.blocks.append(("warning", text))
        return self

    def code(self, text: str) -> "Report":
        self.blocks.append(("code", text))
        return self

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> "Report":
        self.blocks.append(("table", ([str(h) for h in headers], [[("" if c is None else c) for c in r] for r in rows])))
        return self

    def image(self, path: str | Path, alt: str = "") -> "Report":
        """A PNG already written into the report folder (or given by path)."""
        self.blocks.append(("image", (Path(path), alt)))
        return self

    # ------------------------------------------------------------------ writers

    def markdown(self, out_dir: Path) -> str:
        lines = [f"# {self.title}", ""]
        for kind, val in self.blocks:
            if kind == "heading":
                lines += ["#" * val[0] + " " + val[1], ""]
            elif kind == "para":
                lines += [_md_text(val), ""]
            elif kind == "warning":
                lines += [f"> **WARNING:** {_md_text(val)}", ""]
            elif kind == "code":
                fence = "`" * max(3, 1 + max((len(r) for r in re.findall(r"`+", val)), default=0))
                lines += [fence, val, fence, ""]            # a ``` inside the text cannot close the block
            elif kind == "table":
                headers, rows = val
                lines.append("| " + " | ".join(_md_cell(h) for h in headers) + " |")
                lines.append("|" + "|".join("---" for _ in headers) + "|")
                lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows]
                lines.append("")
            elif kind == "image":
                path, alt = val
                rel = path.name if path.parent.resolve() == out_dir.resolve() else str(path)
                lines += [f"![{alt}]({rel})", ""]
        return "\n".join(lines)

    def html(self, out_dir: Path) -> str:
        e = html.escape
        body = [f"<h1>{e(self.title)}</h1>"]
        for kind, val in self.blocks:
            if kind == "heading":
                lv = min(max(int(val[0]), 1), 6)
                body.append(f"<h{lv}>{e(val[1])}</h{lv}>")
            elif kind == "para":
                body.append(f"<p>{e(val)}</p>")
            elif kind == "warning":
                body.append(f'<p class="warning"><strong>WARNING:</strong> {e(val)}</p>')
            elif kind == "code":
                body.append(f"<pre>{e(val)}</pre>")
            elif kind == "table":
                headers, rows = val
                head = "".join(f"<th>{e(str(h))}</th>" for h in headers)
                trs = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in rows)
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{trs}</tbody></table>")
            elif kind == "image":
                path, alt = val
                p = path if path.is_absolute() or path.exists() else out_dir / path
                data = base64.b64encode(p.read_bytes()).decode("ascii")
                body.append(f'<figure><img alt="{e(alt)}" src="data:image/png;base64,{data}">'
                            f"<figcaption>{e(alt)}</figcaption></figure>")
        style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.45}"
                 "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}"
                 "td,th{border:1px solid #bbb;padding:3px 7px;text-align:left;vertical-align:top;white-space:pre-wrap}"
                 "th{background:#eee}.warning{background:#fff3cd;border-left:4px solid #e0a800;padding:6px 10px}"
                 "img{max-width:100%}pre{background:#f6f6f6;padding:8px;overflow-x:auto}")
        return ("<!DOCTYPE html>\n<html lang=\"ja\"><head><meta charset=\"utf-8\">"
                "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
                "style-src 'unsafe-inline'\">"
                f"<title>{e(self.title)}</title><style>{style}</style></head><body>\n"
                + "\n".join(body) + "\n</body></html>\n")

    def write(self, out_dir: str | Path, stem: str = "report") -> tuple[Path, Path]:
        """Write ``STEM.md`` and ``STEM.html`` into ``out_dir`` atomically; returns both paths."""
        from jprefs.data.io import atomic_write_text

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        md, ht = out / f"{stem}.md", out / f"{stem}.html"
        atomic_write_text(md, self.markdown(out))
        atomic_write_text(ht, self.html(out))
        return md, ht
