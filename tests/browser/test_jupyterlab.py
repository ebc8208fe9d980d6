"""Every notebook opened in JupyterLab (headless Chromium), run from the menu
(Run > Run All Cells) until the kernel is idle; no cell raised; each figure cell shows its
figures exactly once; each explorer's control moved as a user moves it (another option of
a Dropdown's ``<select>``; a slider's ``.noUi-handle`` clicked then arrow keys, then
dragged), after which the explorer holds exactly one figure, the new state's, and no
static copy beside it. The tree JupyterLab serves: conftest.py."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import nbformat
import pytest

from lmoe_viz.reproduce import NOTEBOOKS

pytestmark = [pytest.mark.browser, pytest.mark.notebooks]

#: cells (found by a piece of their source) that show figures, and how many each shows;
#: every other cell shows none
FIGURE_CELLS = {
    "02_logit_norm_histograms.ipynb": {"'fig3_logit_norm_histograms'": 1, "widgets.model_score_picker(": 1},
    "03_logit_pca.ipynb": {"'fig4_logit_pca'": 1, "widgets.model_score_picker(": 1},
    "04_sample_logit_responses.ipynb": {"'fig5_6_sample_logit_responses'": 1, "widgets.mix_explorer(": 1},
    "05_beta_distributions.ipynb": {"'fig7_beta_distributions'": 1, "widgets.beta_explorer(": 1},
    "07_claims.ipynb": {"claimplots.primary_figure(": 1, "claimplots.alpha_figure(": 1,
                        "claimplots.control_figure(": 1, "claimplots.norm_figure(": 1},
}
EXPLORERS = {"02_logit_norm_histograms.ipynb": "widgets.model_score_picker(",
             "03_logit_pca.ipynb": "widgets.model_score_picker(",
             "04_sample_logit_responses.ipynb": "widgets.mix_explorer(",
             "05_beta_distributions.ipynb": "widgets.beta_explorer("}
RUN_TIMEOUT = 420          # seconds for Run All of one notebook (nothing is trained)
REDRAW_TIMEOUT = 60        # seconds for an explorer to show the new state

# what an output that is a Python error looks like (warnings are stderr too)
ERROR_TEXT = re.compile(r"Traceback \(most recent call last\)|^\s*\w*(Error|Exception)\b.*:",
                        re.MULTILINE)

_CELLS_JS = """
const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
if (!panel) return null;
return [...panel.querySelectorAll('.jp-Notebook .jp-Cell')].map(c => ({
  code: c.classList.contains('jp-CodeCell'),
  prompt: ((c.querySelector('.jp-InputPrompt') || {}).textContent || '').trim(),
  imgs: [...c.querySelectorAll('.jp-Cell-outputArea img')].map(i => i.getAttribute('src')),
  widget_imgs: c.querySelectorAll('.jp-Cell-outputArea .widget-output img').length,
  stderr: [...c.querySelectorAll(
      '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')].map(e => e.textContent),
  tables: [...c.querySelectorAll('.jp-Cell-outputArea table')].map(t => [
      t.querySelectorAll('th').length, t.querySelectorAll('tbody tr').length]),
}));
"""
_STATUS_JS = """
const e = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator');
return e ? e.getAttribute('data-status') : null;
"""
_TAB_TEXT_JS = """
const t = document.querySelector('.lm-TabBar-tab.jp-mod-current .lm-TabBar-tabLabel');
return t ? t.textContent : '';
"""
_TAB_JS = """
const t = document.querySelector('.lm-TabBar-tab.jp-mod-current');
return t ? t.className : '';
"""


def _wait(what: str, predicate, timeout: float, poll: float = 0.5):
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


class NotebookPage:
    """One notebook open in JupyterLab, in a workspace of its own."""

    def __init__(self, browser, lab, path: str):
        self.d, self.lab, self.path = browser, lab, path
        self.file = lab.root / path
        self.d.get(lab.page(re.sub(r"\W", "-", path), path))
        name = Path(path).name
        _wait(f"{path} open, current, with an idle kernel",
              lambda: self.d.execute_script(_TAB_TEXT_JS) == name and self.status() == "idle", 180)

    def status(self):
        return self.d.execute_script(_STATUS_JS)

    def dirty(self) -> bool:
        return "jp-mod-dirty" in self.d.execute_script(_TAB_JS)

    def menu(self, top: str, command: str = None, label: str = None) -> None:
        """Click a top menu, then one of its items (by its command id or its label), once
        that item is enabled (JupyterLab enables a notebook's commands once it is current)."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys

        def enabled_entry():
            (item,) = [e for e in self.d.find_elements(By.CSS_SELECTOR, ".lm-MenuBar-item") if e.text == top]
            item.click()
            for entry in self.d.find_elements(By.CSS_SELECTOR, ".lm-Menu.lm-MenuBar-menu .lm-Menu-item"):
                text = entry.find_element(By.CSS_SELECTOR, ".lm-Menu-itemLabel").text
                if (command and entry.get_attribute("data-command") == command) or (label and text == label):
                    if "lm-mod-disabled" not in entry.get_attribute("class"):
                        return entry
                    break
            self.d.switch_to.active_element.send_keys(Keys.ESCAPE)     # closed, to try again
            return None
        _wait(f"{top} > {label or command} enabled", enabled_entry, 60, poll=1.0).click()

    def cells(self) -> list[dict]:
        return self.d.execute_script(_CELLS_JS)

    def run_all(self) -> list[dict]:
        """Run > Run All Cells, then wait until the kernel is idle and no cell is queued."""
        self.menu("Run", label="Run All Cells")
        seen = {"started": False, "done": 0, "t0": time.time()}

        def finished():
            cells, status = self.cells(), self.status()
            prompts = [c["prompt"] for c in cells if c["code"]]
            running = status == "busy" or any("*" in p for p in prompts)
            seen["started"] |= running or _all_ran(cells)
            assert seen["started"] or time.time() - seen["t0"] < 60, (
                f"Run All did not start in 60 s (kernel {status}, prompts {prompts})")
            # idle and nothing queued, twice in a row (an error leaves later cells unrun)
            seen["done"] = seen["done"] + 1 if (seen["started"] and status == "idle" and not running) else 0
            return cells if seen["done"] >= 2 else None
        return _wait(f"Run All of {self.path}", finished, RUN_TIMEOUT, poll=1.0)

    def save(self) -> dict:
        """File > Save Notebook; returns the notebook as written."""
        self.menu("File", command="docmanager:save")
        _wait(f"{self.path} saved", lambda: not self.dirty(), 60)
        return json.loads(self.file.read_text())

    def close(self) -> None:
        self.d.get("about:blank")
        self.lab.shutdown_kernels()


@pytest.fixture
def open_notebook(browser, lab):
    pages = []

    def _open(path):
        pages.append(NotebookPage(browser, lab, path))
        return pages[-1]
    yield _open
    for page in pages:
        page.close()


def _all_ran(cells: list[dict]) -> bool:
    """Every code cell ran, in order, in a fresh kernel: prompts [1], [2], ... (a cell
    that did not run keeps "[ ]" or the count stored in the file)."""
    prompts = [c["prompt"] for c in cells if c["code"]]
    return prompts == [f"[{i}]:" for i in range(1, len(prompts) + 1)]


def _errors(cells: list[dict]) -> list[str]:
    return [f"cell {i}: {text[:1500]}" for i, c in enumerate(cells) for text in c["stderr"]
            if ERROR_TEXT.search(text)]


def _expected_figures(nb_name: str, sources: list[str]) -> list[int]:
    marks = FIGURE_CELLS.get(nb_name, {})
    found = [sum(n for mark, n in marks.items() if mark in src) for src in sources]
    for mark in marks:      # the table above names real cells
        assert any(mark in src for src in sources), f"{nb_name}: no cell holds {mark!r}"
    return found


@pytest.mark.parametrize("nb_name", NOTEBOOKS)
def test_notebook_runs_in_jupyterlab_and_its_explorer_redraws_in_place(nb_name, lab, open_notebook):
    page = open_notebook(f"notebooks/{nb_name}")
    source = nbformat.read(page.file, as_version=4)
    t0 = time.time()
    cells = page.run_all()
    print(f"[browser] {nb_name}: Run All {time.time() - t0:.0f} s")
    assert len(cells) == len(source.cells), "JupyterLab shows another number of cells than the file"
    assert not _errors(cells), f"{nb_name} raised:\n" + "\n".join(_errors(cells))
    assert _all_ran(cells), f"{nb_name}: not every cell ran once, in order: {[c['prompt'] for c in cells]}"

    # each figure cell shows its figures once; no other cell shows one
    expected = _expected_figures(nb_name, [c.source for c in source.cells])
    shown = [len(c["imgs"]) for c in cells]
    assert shown == expected, f"{nb_name}: figures per cell {shown}, expected {expected}"
    for i, c in enumerate(cells):
        assert len(set(c["imgs"])) == len(c["imgs"]), f"{nb_name} cell {i} shows a figure twice"

    if nb_name == "06_results_table.ipynb":      # Table I, rendered from Markdown, is a table
        tables = [t for c in cells for t in c["tables"]]
        assert tables and tables[0][0] >= 5 and tables[0][1] >= 2, tables

    if nb_name in EXPLORERS:
        (index,) = [i for i, c in enumerate(source.cells) if EXPLORERS[nb_name] in c.source]
        _move_every_control(page, index)

    saved = page.save()                      # what the kernel sent, as a file
    code = [c for c in saved["cells"] if c["cell_type"] == "code"]
    errors = [o for c in code for o in c["outputs"] if o["output_type"] == "error"]
    assert not errors, [f"{o['ename']}: {o['evalue']}" for o in errors]
    assert all(c["execution_count"] for c in code)


def _move_every_control(page: NotebookPage, index: int) -> None:
    """Move each control of the explorer in cell ``index`` and check its one figure."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    cell = page.d.find_elements(By.CSS_SELECTOR, ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell")[index]

    def figure() -> str:
        """The one figure the explorer's cell shows, inside the widget's Output."""
        info = page.cells()[index]
        assert len(info["imgs"]) == 1 and info["widget_imgs"] == 1, (
            f"explorer cell {index}: {len(info['imgs'])} figures, {info['widget_imgs']} in its Output")
        return info["imgs"][0]

    def redrawn(before: str, what: str) -> str:
        def changed():
            info = page.cells()[index]
            return len(info["imgs"]) == 1 and info["imgs"][0] != before and info["imgs"][0]
        _wait(f"{page.path}: the figure after {what}", changed, REDRAW_TIMEOUT)
        time.sleep(0.5)                       # nothing more arrives
        return figure()

    def back_to(src: str, what: str) -> None:
        _wait(f"{page.path}: the first figure again after {what}",
              lambda: page.cells()[index]["imgs"] == [src], REDRAW_TIMEOUT)

    moved = 0
    for select in cell.find_elements(By.CSS_SELECTOR, ".widget-dropdown select"):
        page.d.execute_script("arguments[0].scrollIntoView({block: 'center'})", select)
        control = Select(select)
        first_value, first = control.first_selected_option.text, figure()
        other = next(o.text for o in control.options if o.text != first_value)
        control.select_by_visible_text(other)
        redrawn(first, f"choosing {other!r}")
        control.select_by_visible_text(first_value)       # the same state draws the same figure
        back_to(first, f"choosing {first_value!r} again")
        moved += 1
    for handle in cell.find_elements(By.CSS_SELECTOR, ".widget-slider .noUi-handle"):
        page.d.execute_script("arguments[0].scrollIntoView({block: 'center'})", handle)
        readout = cell.find_element(By.CSS_SELECTOR, ".widget-readout")
        first_value, first = readout.text, figure()
        handle.click()
        handle.send_keys(Keys.ARROW_RIGHT)
        right = redrawn(first, "the arrow key")
        assert readout.text != first_value, "the slider's readout did not move with its figure"
        handle.send_keys(Keys.ARROW_LEFT)
        back_to(first, "the arrow key back")
        assert readout.text == first_value
        low, high, now = (float(handle.get_attribute(f"aria-value{k}")) for k in ("min", "max", "now"))
        step = -60 if now - low > high - now else 60       # towards the farther end
        ActionChains(page.d).click_and_hold(handle).move_by_offset(step, 0).release().perform()
        dragged = redrawn(first, "dragging the handle")
        assert dragged != right and readout.text != first_value
        moved += 1
    assert moved, f"{page.path}: the explorer in cell {index} has no control found"


def test_opening_a_committed_notebook_marks_nothing_modified(open_notebook):
    """The notebooks store the kernelspec and language_info an ipykernel reports
    (reproduce.strip_outputs), so JupyterLab, once its kernel is up, has nothing to update."""
    page = open_notebook("pristine/06_results_table.ipynb")
    time.sleep(3)                 # JupyterLab updates the metadata when the kernel is ready
    if page.dirty():
        committed = json.loads(page.file.read_text())["metadata"]
        written = page.save()["metadata"]
        diff = {k: (committed.get(k), written.get(k)) for k in set(committed) | set(written)
                if committed.get(k) != written.get(k)}
        pytest.fail(f"JupyterLab marks the committed notebook modified on open; it changes "
                    f"the metadata (committed, as JupyterLab writes it): {diff}")
