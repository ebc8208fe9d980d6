"""The index of a ``reproduce``: ``index.md`` and a self-contained ``index.html``.

The HTML page has a head (charset, title, a little CSS), Table I as a real table (the
Markdown table's bold best values as ``<strong>``), each figure under a title with its
PNG shown at its natural size (CSS pixels = PNG pixels x 96 / the PNG's dpi, so the
type of every figure reads at the point size it was drawn at) beside a link to its PDF,
and links to the executed notebooks, the tables and the run folders.
"""
from __future__ import annotations

import html
import re
from pathlib import Path

from .io import atomic_write_text

#: figure file stem -> title (unknown stems are titled from the stem)
FIGURE_TITLES = {
    "fig3_logit_norm_histograms": "Fig. 3: logit-norm histograms, ID vs OOD",
    "fig4_logit_pca": "Fig. 4: PCA of logits, one common scale",
    "fig5_6_sample_logit_responses": "Figs. 5-6: sample-wise logit responses",
    "fig7_beta_distributions": "Fig. 7: Beta(alpha, alpha) and the lambdas drawn",
    "claims_primary": "Claims: the pre-registered primary tests",
    "claims_alpha": "Claims: AUROC and accuracy against alpha",
    "claims_controls": "Claims: each method minus the CE fine-tune",
    "claims_logit_norms": "Claims: logit norms ID / near-OOD / far-OOD",
}


def figure_title(stem: str) -> str:
    """The title of figure ``stem``: FIGURE_TITLES, else the stem with spaces for underscores."""
    return FIGURE_TITLES.get(stem, stem.replace("_", " "))


def markdown_table_html(md: str) -> str:
    """A pipe table (header, separator, rows) as an HTML table; ``**x**`` -> strong."""
    rows = [line.strip().strip("|").split("|") for line in md.splitlines()
            if line.strip().startswith("|")]
    if len(rows) < 2:
        return "<p>(no table)</p>"

    def cell(text: str, tag: str) -> str:
        text = html.escape(text.strip())
        text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
        return f"<{tag}>{text}</{tag}>"
    head = "".join(cell(c, "th") for c in rows[0])
    body = "\n".join("<tr>" + "".join(cell(c, "td") for c in r) + "</tr>" for r in rows[2:])
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def natural_width(png: Path) -> int | None:
    """CSS width of a PNG at its drawn size: pixels x 96 / dpi (None if unknown)."""
    from PIL import Image
    with Image.open(png) as img:
        dpi = img.info.get("dpi", (96, 96))[0] or 96
        return int(round(img.width * 96 / float(dpi)))


def _links(out: Path, folder: str, pattern: str) -> str:
    files = sorted((out / folder).glob(pattern)) if (out / folder).is_dir() else []
    return ", ".join(f"<a href='{folder}/{html.escape(f.name)}'>{html.escape(f.name)}</a>"
                     for f in files) or "none"


def write_index(out: Path, preset: str, timings: dict, up_to_date=()) -> Path:
    """Write ``out/index.md`` and ``out/index.html``; returns the HTML page's path."""
    order = list(FIGURE_TITLES)                 # the paper's figures first, then the claims
    figs = sorted((out / "figures").glob("*.png"),
                  key=lambda f: (order.index(f.stem) if f.stem in order else len(order), f.stem))
    table = out / "tables" / "table1.md"
    title = f"lmoe_viz reproduction: preset {preset}"
    runs = sorted(p.parent.name for p in (out / "runs").glob("*/metrics.json")) if (out / "runs").is_dir() else []
    nb_items = [f"[{n}](notebooks/{n}) ({'up to date' if n in up_to_date else f'{s:.0f} s'})"
                for n, s in timings.items()]
    md = [f"# {title}", "", "Executed notebooks: " + ", ".join(nb_items), ""]
    if table.is_file():
        md += ["## Table I (mean ± std over seeds; best per column in bold)", "", table.read_text(), ""]
    for f in figs:
        md += [f"## {figure_title(f.stem)}", "", f"![{f.stem}](figures/{f.name})",
               f"[PDF](figures/{f.stem}.pdf)", ""]
    atomic_write_text(out / "index.md", "\n".join(md))

    page = ["<!doctype html>", "<html lang='en'>", "<head>", "<meta charset='utf-8'>",
            f"<title>{html.escape(title)}</title>",
            "<style>body{font-family:sans-serif;max-width:70em;margin:2em auto;padding:0 1em}"
            "table{border-collapse:collapse}th,td{border:1px solid #bbb;padding:.2em .5em;"
            "text-align:right}th{background:#eee}img{max-width:100%;height:auto;display:block}"
            "figure{margin:1.5em 0}</style>", "</head>", "<body>", f"<h1>{html.escape(title)}</h1>",
            "<p>Executed notebooks: " + ", ".join(
                f"<a href='notebooks/{html.escape(n)}'>{html.escape(n)}</a>" for n in timings) + "</p>",
            "<p>Tables: " + _links(out, "tables", "*.*") + "</p>",
            f"<p>Runs ({len(runs)}): " + (", ".join(
                f"<a href='runs/{html.escape(r)}/metrics.json'>{html.escape(r)}</a>" for r in runs)
                or "none") + "</p>"]
    if table.is_file():
        page += ["<h2>Table I (mean ± std over seeds; best per column in bold)</h2>",
                 markdown_table_html(table.read_text())]
    for f in figs:
        width = natural_width(f)
        size = f" width='{width}'" if width else ""
        page += [f"<figure><h2>{html.escape(figure_title(f.stem))}</h2>",
                 f"<img src='figures/{html.escape(f.name)}' alt='{html.escape(f.stem)}'{size}>",
                 f"<figcaption><a href='figures/{html.escape(f.stem)}.pdf'>PDF</a></figcaption></figure>"]
    page += ["</body>", "</html>", ""]
    atomic_write_text(out / "index.html", "\n".join(page))
    return out / "index.html"
