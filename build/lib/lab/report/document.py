"""The document model (Block, Table) and its three renderings: Markdown, HTML, text.

Every format renders the same values, so they cannot disagree. Figures are
named in blocks and resolved by the caller: a link for Markdown, a PNG file
embedded as a data URI for HTML (the page needs nothing from outside).
"""

from __future__ import annotations

import base64
import html
import re
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Block:
    """A titled chunk: paragraphs, bullets, tables, figures, preformatted text,
    then nested blocks. `collapsed` folds it away (HTML/Markdown <details>);
    `tone` ("good", "bad", "warn") marks a verdict."""

    title: str
    level: int = 2
    paragraphs: tuple[str, ...] = ()
    bullets: tuple[str, ...] = ()
    tables: tuple[Table, ...] = ()
    figures: tuple[str, ...] = ()
    pre: tuple[str, ...] = ()
    children: tuple[Block, ...] = ()
    collapsed: bool = False
    tone: str = ""


def walk(blocks: Sequence[Block]) -> list[Block]:
    """Every block, depth first."""
    out: list[Block] = []
    for b in blocks:
        out += [b, *walk(b.children)]
    return out


# Console excerpts carry ANSI colour codes, CRs and the odd NUL byte.
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Za-z0-9]")
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f]")


def printable(text: str) -> str:
    text = ANSI.sub("", text).replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL.sub("\ufffd", text)


def esc(text: str) -> str:
    """Text for HTML: cleaned of control characters, then escaped."""
    return html.escape(printable(text))


# --------------------------------------------------------------------------
# Markdown


def _md(text: str) -> str:
    # Keep table cells on one line and stop stray HTML from rendering.
    text = printable(text).replace("\\", "\\\\").replace("|", "\\|")
    return text.replace("<", "&lt;").replace("\n", " ")


def _md_table(t: Table) -> list[str]:
    lines = ["| " + " | ".join(_md(h) for h in t.headers) + " |"]
    lines.append("|" + "|".join("---" for _ in t.headers) + "|")
    lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in t.rows]
    return lines


def _fence(text: str) -> str:
    longest = max((len(m) for m in re.findall(r"`{3,}", text)), default=2)
    mark = "`" * (longest + 1)
    return f"{mark}\n{text}\n{mark}"


def _md_block(block: Block, links: Mapping[str, str]) -> list[str]:
    if block.collapsed:
        out = [f"<details><summary>{html.escape(printable(block.title))}</summary>", ""]
    else:
        out = ["#" * block.level + " " + _md(block.title), ""]
    for p in block.paragraphs:
        out += [_md(p), ""]
    if block.bullets:
        out += [f"- {_md(b)}" for b in block.bullets] + [""]
    for t in block.tables:
        out += _md_table(t) + [""]
    out += [f"![{_md(name)}]({links[name]})" for name in block.figures if name in links]
    if any(name in links for name in block.figures):
        out.append("")
    for text in block.pre:
        out += [_fence(printable(text)), ""]
    for child in block.children:
        out += _md_block(child, links)
    if block.collapsed:
        out += ["</details>", ""]
    return out


def markdown(title: str, blocks: Sequence[Block], links: Mapping[str, str] | None = None) -> str:
    """GitHub-flavoured Markdown; `links` maps a figure name to its image path.
    Figures no block names are listed at the end under "Plots"."""
    links = links or {}
    out = [f"# {_md(title)}", ""]
    for block in blocks:
        out += _md_block(block, links)
    placed = {name for b in walk(blocks) for name in b.figures}
    rest = [name for name in links if name not in placed]
    if rest:
        out += ["## Plots", ""]
        out += [f"![{_md(name)}]({links[name]})" for name in rest] + [""]
    return "\n".join(out)


# --------------------------------------------------------------------------
# HTML

_CSS = """
:root { --ink: #1f2328; --muted: #59636e; --line: #d1d9e0; --soft: #f6f8fa;
        --good: #1a7f37; --bad: #cf222e; --warn: #9a6700; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: var(--ink); margin: 0; background: #fff; }
header { background: #24292f; color: #fff; padding: 1rem 2rem; }
header h1 { margin: 0; font-size: 1.35rem; font-weight: 600; }
main { max-width: 100rem; margin: 0 auto; padding: 1rem 2rem 3rem; }
h2 { font-size: 1.2rem; border-bottom: 1px solid var(--line); padding-bottom: .3rem;
     margin-top: 2rem; }
h3 { font-size: 1.05rem; margin: .2rem 0 .4rem; }
h4 { font-size: .95rem; margin: .6rem 0 .3rem; }
p, li { max-width: 60rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: .8rem; }
th, td { border: 1px solid var(--line); padding: .3rem .6rem; text-align: left;
         vertical-align: top; }
th { background: var(--soft); font-weight: 600; }
tr:nth-child(even) td { background: #fbfcfd; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.good, section.good > h3 { color: var(--good); font-weight: 600; }
td.bad, section.bad > h3 { color: var(--bad); font-weight: 600; }
section.warn > h3 { color: var(--warn); }
pre { background: var(--soft); border: 1px solid var(--line); border-radius: 6px;
      padding: .75rem; overflow-x: auto; font-size: .8rem; max-height: 32rem; }
.cards { display: flex; flex-wrap: wrap; gap: .8rem; margin: .5rem 0; }
.cards > section { flex: 1 1 22rem; border: 1px solid var(--line); border-radius: 8px;
                   padding: .6rem 1rem; border-left-width: 6px; }
section.good { border-left-color: var(--good); }
section.bad { border-left-color: var(--bad); }
section.warn { border-left-color: var(--warn); }
.pair { display: grid; grid-template-columns: minmax(0, 1fr) 24rem; gap: 1rem;
        align-items: start; }
@media (max-width: 70rem) { .pair { grid-template-columns: minmax(0, 1fr); } }
.pair > .tables { overflow-x: auto; }
.figs { display: flex; flex-direction: column; gap: .5rem; }
figure { margin: 0; }
figure img { width: 100%; max-width: 40rem; border: 1px solid var(--line); border-radius: 6px; }
figcaption { font-size: .8rem; color: var(--muted); }
details { border: 1px solid var(--line); border-radius: 6px; padding: .4rem .8rem;
          margin: .8rem 0; }
summary { cursor: pointer; font-weight: 600; }
"""

_NUMERIC = re.compile(r"^[+\-−]?(\d|inf)")


def _td(cell: str) -> str:
    word = cell.split(":", 1)[0].split(" ", 1)[0]
    tone = {"PASS": "good", "held": "good", "FAIL": "bad", "contradicted": "bad"}.get(word, "")
    if cell.startswith("yes (better"):
        tone = "good"
    elif cell.startswith("yes (worse"):
        tone = "bad"
    classes = " ".join(c for c in (tone, "num" if _NUMERIC.match(cell) else "") if c)
    return f'<td class="{classes}">{esc(cell)}</td>' if classes else f"<td>{esc(cell)}</td>"


def _html_table(t: Table) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in t.headers)
    body = "".join("<tr>" + "".join(_td(c) for c in row) + "</tr>" for row in t.rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure(name: str, png: Path) -> str:
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{esc(name)}">'
            f"<figcaption>{esc(name)}</figcaption></figure>")  # fmt: skip


def _html_block(block: Block, images: Mapping[str, Path]) -> list[str]:
    tag = f"h{min(block.level, 6)}"
    parts = [f'<section class="{block.tone}">' if block.tone else "<section>"]
    if block.collapsed:
        parts.append(f"<details><summary>{esc(block.title)}</summary>")
    else:
        parts.append(f"<{tag}>{esc(block.title)}</{tag}>")
    parts += [f"<p>{esc(p)}</p>" for p in block.paragraphs]
    if block.bullets:
        parts.append("<ul>" + "".join(f"<li>{esc(b)}</li>" for b in block.bullets) + "</ul>")
    tables = "".join(_html_table(t) for t in block.tables)
    figs = "".join(_figure(n, images[n]) for n in block.figures if n in images)
    if figs:
        parts.append(f'<div class="pair"><div class="tables">{tables}</div>'
                     f'<div class="figs">{figs}</div></div>')  # fmt: skip
    elif tables:
        parts.append(tables)
    parts += [f"<pre>{esc(text)}</pre>" for text in block.pre]
    run: list[Block] = []  # consecutive verdict-toned children sit side by side as cards
    for child in (*block.children, None):
        if child is not None and child.tone:
            run.append(child)
            continue
        if run:
            parts.append('<div class="cards">')
            for card in run:
                parts += _html_block(card, images)
            parts.append("</div>")
            run = []
        if child is not None:
            parts += _html_block(child, images)
    if block.collapsed:
        parts.append("</details>")
    parts.append("</section>")
    return parts


def html_page(title: str, blocks: Sequence[Block], images: Mapping[str, Path] | None = None) -> str:
    """A self-contained page: inline CSS, PNG figures as data URIs, no scripts.
    Images no block names are shown at the end under "Plots"."""
    images = images or {}
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<header><h1>{esc(title)}</h1></header><main>",
    ]
    for block in blocks:
        parts += _html_block(block, images)
    placed = {name for b in walk(blocks) for name in b.figures}
    rest = [name for name in images if name not in placed]
    if rest:
        parts.append('<section><h2>Plots</h2><div class="cards">')
        parts += [_figure(name, images[name]) for name in rest]
        parts.append("</div></section>")
    parts.append("</main></body></html>")
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------
# Plain text (terminals)


def _text_table(t: Table) -> list[str]:
    cells = [list(t.headers), *[list(r) for r in t.rows]]
    widths = [max(len(printable(row[i])) for row in cells) for i in range(len(t.headers))]
    lines = ["  ".join(printable(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in cells]  # fmt: skip
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def text(title: str, blocks: Sequence[Block], *, width: int = 100) -> str:
    """Aligned plain text; figures are left out."""
    out = [title, "=" * len(title), ""]
    for block in walk(blocks):
        out += [printable(block.title), "-" * len(printable(block.title))]
        out += [textwrap.fill(printable(p), width) for p in block.paragraphs]
        out += [textwrap.fill(printable(b), width, initial_indent="- ", subsequent_indent="  ")
                for b in block.bullets]  # fmt: skip
        for t in block.tables:
            out += _text_table(t)
        out += [printable(p) for p in block.pre]
        out.append("")
    return "\n".join(out)
