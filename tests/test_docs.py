"""The documentation site (docs/, `make docs`): it builds offline with no warning from the
notebooks a reproduce executed, and a reader finds no broken internal link, no missing
image, no notebook page without its figures, no external script, and no public object of
the package without a docstring on its API page."""
import importlib
import importlib.util
import inspect
import json
import os
import pkgutil
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat
import pytest

import lmoe_viz
from lmoe_viz import reproduce as R
from lmoe_viz.cli import main

from test_reproduce import SMALLEST

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _build_module():
    spec = importlib.util.spec_from_file_location("docs_build", DOCS / "build.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class _Page(HTMLParser):
    """Every id, link target and resource of one HTML page."""

    def __init__(self):
        super().__init__()
        self.ids, self.links, self.images, self.resources = set(), [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        if tag == "img":
            self.images.append(a.get("src", ""))
        if tag in ("script", "img", "iframe") and a.get("src"):
            self.resources.append(a["src"])
        if tag == "link" and a.get("href"):
            self.resources.append(a["href"])


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def public_objects():
    """(module, name) of every public function and class the package defines."""
    for info in pkgutil.walk_packages(lmoe_viz.__path__, "lmoe_viz."):
        mod = importlib.import_module(info.name)
        for name, obj in vars(mod).items():
            if not name.startswith("_") and (inspect.isfunction(obj) or inspect.isclass(obj)) \
                    and obj.__module__ == mod.__name__:
                yield mod, name, obj


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A reproduce of the smallest grid, then `docs/build.py` on it: (its folder, the site).
    ``LMOE_DOCS_OUT=DIR`` keeps the reproduce in DIR between sessions (a second one there
    executes nothing: for iterating on these tests)."""
    out = Path(os.environ.get("LMOE_DOCS_OUT") or tmp_path_factory.mktemp("reproduced"))
    argv = ["reproduce", "--preset", "digits", "--out", str(out), "--no-progress"]
    for name, value in SMALLEST:
        argv += ["-p", name, value]
    assert main(argv) == 0
    html = tmp_path_factory.mktemp("site") / "html"
    build = _build_module()
    assert R.pending(out) == []                  # what make docs asks: nothing to execute
    assert build.main(["--out", str(out), "--html", str(html), "--quiet"]) == 0   # -W: 0 warnings
    return out, html


@pytest.mark.notebooks
def test_every_internal_link_and_image_resolves_and_nothing_is_fetched(site):
    _, html = site
    pages = sorted(html.rglob("*.html"))
    parsed = {p: _parse(p) for p in pages}
    broken, missing, external = [], [], []
    for page, info in parsed.items():
        for href in info.links:
            parts = urlsplit(href)
            if href.startswith("mailto:"):      # the site has no address: an "a@b" in a docstring
                broken.append(f"{page.relative_to(html)} -> {href} (docutils made an address)")
            if parts.scheme or href.startswith(("mailto:", "javascript:")):
                continue
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                broken.append(f"{page.relative_to(html)} -> {href}")
            elif parts.fragment and target.suffix == ".html" and \
                    unquote(parts.fragment) not in parsed.get(target, _parse(target)).ids:
                broken.append(f"{page.relative_to(html)} -> {href} (no such anchor)")
        for src in info.images:
            target = (page.parent / unquote(urlsplit(src).path)).resolve()
            if not src.startswith("data:") and not (target.is_file() and target.stat().st_size > 100):
                missing.append(f"{page.relative_to(html)}: {src}")
        external += [f"{page.relative_to(html)}: {r}" for r in info.resources
                     if urlsplit(r).scheme in ("http", "https") or r.startswith("//")]
    assert not broken, broken[:20]
    assert not missing, missing[:20]
    assert not external, external[:20]        # offline: no CDN script, style or image
    mathjax = [r for r in parsed[html / "guide" / "methods.html"].resources if "mathjax" in r]
    assert mathjax and all((html / "guide" / m).resolve().is_file() for m in mathjax)
    sources = [p for p in DOCS.rglob("*.md") if "_build" not in p.parts]
    assert len(pages) >= len(sources) + 7 + 40     # the pages, the notebooks, the API


@pytest.mark.notebooks
def test_each_notebook_page_shows_every_figure_its_execution_drew(site):
    """The oracle is the executed notebook: each image/png output is one <img> of its page
    (an explorer by the PNG its bundle carries, never a widget that needs a kernel)."""
    out, html = site
    for nb in R.NOTEBOOKS:
        executed = nbformat.read(out / "notebooks" / nb, as_version=4)
        pngs = sum("image/png" in o.get("data", {}) for c in executed.cells
                   for o in c.get("outputs", []))
        page = html / "notebooks" / "executed" / nb.replace(".ipynb", ".html")
        info = _parse(page)
        shown = [s for s in info.images if s.startswith("../../_images/") or s.startswith("data:")]
        assert len(shown) == pngs, (nb, len(shown), pngs)
        text = page.read_text()
        assert "jupyter-widgets" not in text and "VBox(" not in text, nb
    assert _parse(html / "notebooks" / "executed" / "02_logit_norm_histograms.html").images


@pytest.mark.notebooks
def test_pending_names_what_a_reproduce_would_execute(site, tmp_path):
    """What `make docs` asks before rendering: nothing for the fixture's fresh reproduce,
    every notebook without one, the notebooks that take a changed parameter, and a notebook
    whose executed copy was rewritten since (a failed or interrupted rerun)."""
    out, _ = site
    assert R.pending(out) == [] and R.pending(tmp_path / "none") == list(R.NOTEBOOKS)
    state = out / "reproduce.json"
    saved = state.read_text()
    try:
        last = json.loads(saved)
        last["params"]["alpha_focus"] = 3.0
        state.write_text(json.dumps(last))
        takes = [nb for nb in R.NOTEBOOKS
                 if "alpha_focus" in R.notebook_parameters(R.NOTEBOOK_DIR / nb)]
        assert R.pending(out) == takes and 0 < len(takes) < len(R.NOTEBOOKS)
    finally:
        state.write_text(saved)
    copy = out / "notebooks" / "05_beta_distributions.ipynb"
    st = copy.stat()
    try:
        os.utime(copy, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        assert R.pending(out) == ["05_beta_distributions.ipynb"]
    finally:
        os.utime(copy, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert R.pending(out) == []


@pytest.mark.notebooks
def test_every_public_object_has_a_docstring_on_its_api_page(site):
    _, html = site
    undocumented, absent = [], []
    for mod, name, obj in public_objects():
        if not (inspect.getdoc(obj) or "").strip():
            undocumented.append(f"{mod.__name__}.{name}")
        page = html / "api" / "generated" / f"{mod.__name__}.html"
        if not page.is_file() or f"{mod.__name__}.{name}" not in _parse(page).ids:
            absent.append(f"{mod.__name__}.{name}")
    assert not undocumented, undocumented
    assert not absent, absent[:20]


def test_every_public_object_has_a_docstring():
    """The same rule at the source, without a build (the fast tier)."""
    missing = [f"{m.__name__}.{n}" for m, n, o in public_objects() if not (inspect.getdoc(o) or "").strip()]
    assert not missing, missing
    assert all((importlib.import_module(i.name).__doc__ or "").strip()
               for i in pkgutil.walk_packages(lmoe_viz.__path__, "lmoe_viz."))


def test_docs_without_a_reproduce_and_without_the_data_is_one_line(tmp_path, capsys):
    build = _build_module()
    assert build.main(["--preset", "bird", "--out", str(tmp_path / "none"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "make reproduce PRESET=bird" in err, err
    assert not (tmp_path / "none").exists()          # nothing written, nothing executed


def test_the_readme_is_the_front_door_and_its_links_resolve():
    text = (ROOT / "README.md").read_text()
    assert len(text) < 8000
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    assert len(links) >= 10 and all((ROOT / link).is_file() for link in links), links
    # the pages the README links to are the only copy of their text: a paragraph of the
    # guide typed into the README again fails here
    guide = " ".join(" ".join(p.read_text().split()) for p in (DOCS / "guide").glob("*.md"))
    prose = [b for b in re.split(r"\n\s*\n", text) if not b.lstrip().startswith(("|", "<!--", "```", "#"))]
    sentences = [s for b in prose for s in re.split(r"(?<=[.;:])\s+", " ".join(b.split())) if len(s) > 60]
    assert sentences and not [s for s in sentences if s in guide]


def test_docs_include_the_committed_results_rather_than_copies():
    included = set()
    for page in DOCS.rglob("*.md"):
        included |= set(re.findall(r"```\{include\} \.\./\.\./results/(\S+)", page.read_text()))
    assert {"digits/table1.md", "digits/bn_table.md", "claims_primary.md", "digits/shortcut.md",
            "fashion-mnist/shortcut.md", "fashion-mnist/bn_table.md", "digits/power.md",
            "fashion-mnist/power.md"} <= included
    assert all((ROOT / "results" / name).is_file() for name in included)
