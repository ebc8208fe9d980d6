"""reproduce's index.html as Chromium renders it (file:// URL): a declared charset, Table I
as a real table (header cells, one cell per column in every row, bold best values, no
Markdown left), and every figure as an image that loads, at its drawn size."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

_PAGE_JS = """
const table = document.querySelector('table');
const heads = table ? [...table.querySelectorAll('thead th')].map(e => e.textContent.trim()) : [];
const rows = table ? [...table.querySelectorAll('tbody tr')].map(
    r => [...r.children].map(e => [e.tagName, e.textContent.trim()])) : [];
return {
  charset: document.characterSet,
  metaCharset: [...document.querySelectorAll('meta[charset]')].map(e => e.getAttribute('charset')),
  tables: document.querySelectorAll('table').length,
  display: table ? getComputedStyle(table).display : null,
  heads: heads, rows: rows,
  strong: table ? table.querySelectorAll('td strong').length : 0,
  text: document.body.innerText,
  imgs: [...document.querySelectorAll('figure img')].map(i => ({
      src: i.getAttribute('src'), complete: i.complete, natural: i.naturalWidth,
      width: i.getAttribute('width'), shown: i.getBoundingClientRect().width,
      room: i.parentElement.clientWidth})),
  titles: [...document.querySelectorAll('figure h2')].map(e => e.textContent),
};
"""


def test_index_page_shows_table_one_as_a_table_and_every_figure(browser, lab_tree):
    out = lab_tree / "out" / "digits"
    browser.get((out / "index.html").as_uri())
    page = browser.execute_script(_PAGE_JS)
    assert page["metaCharset"] == ["utf-8"] and page["charset"] == "UTF-8"
    assert page["tables"] == 1 and page["display"] == "table"
    assert page["heads"][:3] == ["alpha", "model", "BatchNorm"], page["heads"]
    assert {"Acc. (%)", "AUROC (%)", "FPR95 (%)"} <= set(page["heads"])
    table_md = (out / "tables" / "table1.md").read_text().splitlines()
    assert len(page["rows"]) == len([r for r in table_md if r.startswith("|")]) - 2 >= 3
    for row in page["rows"]:                       # a grid: one td per column
        assert [tag for tag, _ in row] == ["TD"] * len(page["heads"]), row
    models = [row[1][1] for row in page["rows"]]
    assert "Pretrained" in models and "Logit MixOE w/ L_LC" in models
    assert page["strong"] >= 3                     # the best of each column in bold
    assert "**" not in page["text"] and "±" in page["text"]   # rendered, in its charset
    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert sorted(i["src"].removeprefix("figures/") for i in page["imgs"]) == figures
    assert len(page["titles"]) == len(figures)
    for img in page["imgs"]:                       # loaded, shown at its drawn size
        assert img["complete"] and img["natural"] > 0, img["src"]
        assert img["width"] and abs(img["shown"] - min(int(img["width"]), img["room"])) <= 1, img
