"""The documentation site as a reader sees it in Chromium (file:// URLs, nothing served, no
network): the landing page's figure loads, the navigation leads to every notebook page and
each shows its figures, the API pages show the docstrings, the equations are typeset by the
MathJax the site carries. ``LMOE_DOCS_SHOTS=DIR`` keeps screenshots of the landing page,
a notebook page and an API page there (to look at them)."""
from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]

_IMAGES_JS = """
return [...document.querySelectorAll('article img')].map(i => ({
    src: i.getAttribute('src'), complete: i.complete, natural: i.naturalWidth,
    shown: i.getBoundingClientRect().width}));
"""


@pytest.fixture(scope="module")
def site(lab_tree, tmp_path_factory):
    """docs/build.py on the browser tier's reproduce (its own folder: up to date, so
    nothing is executed), into a folder of its own."""
    out = Path(os.environ.get("LMOE_BROWSER_OUT") or lab_tree / "reproduce").resolve()
    spec = importlib.util.spec_from_file_location("docs_build", ROOT / "docs" / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    html = tmp_path_factory.mktemp("docs") / "html"
    assert build.main(["--out", str(out), "--html", str(html), "--quiet"]) == 0
    return html


def _shot(browser, name: str) -> None:
    folder = os.environ.get("LMOE_DOCS_SHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(Path(folder) / f"{name}.png"))


def _loaded(images) -> bool:
    return all(i["complete"] and i["natural"] > 0 and i["shown"] > 50 for i in images)


def _click(browser, text: str) -> None:
    """Follow the sidebar link whose text is ``text`` (as a reader clicks it)."""
    from selenium.webdriver.common.by import By
    links = [a for a in browser.find_elements(By.CSS_SELECTOR, ".sidebar-tree a")
             if a.get_attribute("textContent").strip() == text]
    assert links, f"no sidebar link {text!r} on {browser.current_url}"
    browser.get(links[0].get_attribute("href"))


def test_the_navigation_leads_to_every_notebook_and_each_shows_its_figures(browser, site):
    from selenium.webdriver.common.by import By
    browser.get((site / "index.html").as_uri())
    landing = browser.execute_script(_IMAGES_JS)
    assert len(landing) == 1 and _loaded(landing), landing
    assert "make reproduce" in browser.find_element(By.TAG_NAME, "article").text
    _shot(browser, "landing")
    _click(browser, "The notebooks")
    pages = [a.get_attribute("href") for a in
             browser.find_elements(By.CSS_SELECTOR, "article .toctree-wrapper a")]
    assert len(pages) == 7, pages
    for url in pages:
        browser.get(url)
        images = browser.execute_script(_IMAGES_JS)
        name = url.rsplit("/", 1)[-1]
        if not name.startswith(("01_", "06_")):      # 01 trains, 06 tabulates
            assert images, f"{name} shows no figure"
        assert _loaded(images), (name, images)
        if name.startswith("02_"):                   # its figure, not its first cells
            browser.execute_script("document.querySelector('article img').scrollIntoView({behavior: 'instant'})")
            _shot(browser, "notebook_02")


def test_api_pages_show_docstrings_and_the_equations_are_typeset(browser, site):
    from selenium.webdriver.common.by import By
    browser.get((site / "index.html").as_uri())
    _click(browser, "API reference")
    browser.get((site / "api" / "generated" / "lmoe_viz.metrics.html").as_uri())
    entries = browser.find_elements(By.CSS_SELECTOR, "dl.py.function")
    assert len(entries) >= 5
    for dl in entries:
        assert dl.find_element(By.TAG_NAME, "dd").text.strip(), dl.text[:80]
    _shot(browser, "api_metrics")
    browser.get((site / "guide" / "methods.html").as_uri())
    for _ in range(50):                                  # MathJax typesets asynchronously
        typeset = browser.execute_script("return document.querySelectorAll('mjx-container').length")
        if typeset:
            break
        time.sleep(0.2)
    assert typeset >= 4, "the equations were not typeset (MathJax did not load from _static)"
