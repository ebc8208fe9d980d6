"""The browser tier: the notebooks and their explorers in JupyterLab, driven by headless
Chromium through selenium; ``index.html`` in the same browser.

Off by default, so ``make test`` neither runs nor waits for it: every test of this folder
is skipped unless ``LMOE_BROWSER=1`` (what ``make test-browser`` sets) or the run selects
the marker (``pytest tests/browser -m browser``). When on, it is skipped, not failed, where
selenium, ``chromium`` or ``chromedriver`` is missing (``make browser-deps`` installs
Debian's pair), and fails with both versions named where the two differ in major version.

The tree the tests open, made once per session (fixture ``lab_tree``)::

    TREE/out/digits/    what `lmoe-viz reproduce --preset digits --quiet` wrote with the
                        SMALLEST grid of tests/test_reproduce.py: trained runs, logit
                        caches, figures, tables, index.html
    TREE/notebooks/     the committed notebooks, each with one cell added after its
                        `parameters` cell (tagged `injected-parameters`, as papermill
                        does) that sets the same SMALLEST values
    TREE/pristine/      the committed notebooks byte for byte (what opening them does)

The notebooks keep their own defaults ``runs_dir = "../out/digits/runs"`` and
``out_dir = "../out/digits"``, relative to the notebook's folder where JupyterLab starts
the kernel, so run in TREE/notebooks they find reproduce's runs exactly as the README says
they do after `make reproduce`; with the grid reduced to the runs that exist, nothing is
trained. JupyterLab serves TREE (``--ServerApp.root_dir``) on 127.0.0.1 with a random
token, ``--allow-root``, and its own settings (cells never virtualised, no news toast),
workspaces, config and runtime folders, so nothing of the user's JupyterLab is read or
written. ``LMOE_BROWSER_OUT=DIR`` keeps reproduce's output in DIR between sessions
(a second reproduce there executes nothing: for iterating on these tests).
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
#: the SMALLEST grid of tests/test_reproduce.py (one alpha, one seed, a few batches)
SMALLEST = [("alphas", "[1.0]"), ("seeds", "[0]"), ("pretrain_epochs", "2"),
            ("finetune_epochs", "1"), ("limit_batches", "3"), ("study_units", "2"),
            ("study_extra_units", "2"), ("study_alphas", "[1.0, 3.0]"), ("lc_modes", "[stop-id]")]
ENABLE_ENV = "LMOE_BROWSER"


def _enabled(config) -> bool:
    if os.environ.get(ENABLE_ENV, "") not in ("", "0"):
        return True
    expr = config.getoption("markexpr", "") or ""
    return "browser" in expr and "not browser" not in expr


def pytest_collection_modifyitems(config, items):
    # a conftest's hook sees the whole session's items: touch only this folder's
    if _enabled(config):
        return
    skip = pytest.mark.skip(reason=f"browser tier: `make test-browser` (or {ENABLE_ENV}=1)")
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(skip)


# -- the browser -------------------------------------------------------------------------

def _version(exe: str) -> tuple[str, int]:
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60).stdout
    m = re.search(r"(\d+)\.\d+\.\d+\.\d+", out)
    return out.strip(), int(m.group(1)) if m else -1


@pytest.fixture(scope="session")
def chromium_paths():
    """(chromium, chromedriver): skipped where either or selenium is missing."""
    pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[dev]')")
    browser = next(filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None)
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        pytest.skip("chromium and chromedriver are not installed: `make browser-deps`")
    (b_text, b_major), (d_text, d_major) = _version(browser), _version(driver)
    if b_major != d_major:
        pytest.fail(f"chromium ({b_text}) and chromedriver ({d_text}) differ: install both from "
                    "one release (`make browser-deps`)")
    return browser, driver


@pytest.fixture(scope="session")
def browser(chromium_paths, tmp_path_factory):
    """One headless Chromium for the session (selenium WebDriver)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    binary, driver_exe = chromium_paths
    logs = tmp_path_factory.mktemp("chromium")
    opts = Options()
    opts.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000", f"--user-data-dir={logs / 'profile'}"):
        opts.add_argument(arg)
    service = Service(executable_path=driver_exe, log_output=str(logs / "chromedriver.log"))
    drv = webdriver.Chrome(options=opts, service=service)
    drv.set_page_load_timeout(120)
    yield drv
    drv.quit()


# -- the tree: reproduce's output and the notebooks ---------------------------------------

def _env(tmp: Path) -> dict:
    env = dict(os.environ)
    env.setdefault("TORCH_HOME", str(tmp / "torch_home"))      # nothing downloads
    env.pop("MPLBACKEND", None)     # kernels draw with ipykernel's inline backend, as for a user
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _inject(src: Path, dst: Path, params: dict) -> None:
    """Copy a notebook, adding after its `parameters` cell a cell that sets ``params``
    (those the notebook takes), tagged `injected-parameters` like papermill's."""
    import nbformat

    from lmoe_viz.reproduce import notebook_parameters
    known = notebook_parameters(src)
    nb = nbformat.read(src, as_version=4)
    (index,) = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    lines = [f"{k} = {v!r}\n" for k, v in params.items() if k in known]
    cell = nbformat.v4.new_code_cell("# Parameters of the browser tier (tests/browser)\n" + "".join(lines))
    cell.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(index + 1, cell)
    nbformat.write(nb, dst)


@pytest.fixture(scope="session")
def lab_tree(tmp_path_factory, chromium_paths):
    """TREE (module doc): reproduce's output under out/digits and the notebooks."""
    from lmoe_viz.reproduce import NOTEBOOK_DIR, NOTEBOOKS, load_params
    tree = tmp_path_factory.mktemp("lab")
    out = Path(os.environ.get("LMOE_BROWSER_OUT") or tree / "reproduce").resolve()
    cmd = [str(Path(sys.executable).parent / "lmoe-viz"), "reproduce", "--preset", "digits",
           "--out", str(out), "--quiet"]
    for name, value in SMALLEST:
        cmd += ["-p", name, value]
    t0 = time.time()
    res = subprocess.run(cmd, capture_output=True, text=True, env=_env(tree), cwd=ROOT)
    assert res.returncode == 0, f"{' '.join(cmd)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    print(f"\n[browser] reproduce: {time.time() - t0:.0f} s: {res.stdout.strip()}")
    shutil.copytree(out, tree / "out" / "digits")
    params = load_params(None, SMALLEST)
    (tree / "notebooks").mkdir()
    (tree / "pristine").mkdir()
    for nb in NOTEBOOKS:
        _inject(NOTEBOOK_DIR / nb, tree / "notebooks" / nb, params)
        shutil.copy2(NOTEBOOK_DIR / nb, tree / "pristine" / nb)
    return tree


# -- JupyterLab -----------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """A running JupyterLab: its URL, token and REST calls."""

    def __init__(self, url: str, token: str, root: Path, log: Path, proc):
        self.url, self.token, self.root, self.log, self.proc = url, token, root, log, proc

    def api(self, path: str, method: str = "GET"):
        req = urllib.request.Request(f"{self.url}/api/{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=30) as r:
            body = r.read()
        return json.loads(body) if body else None

    def page(self, workspace: str, path: str) -> str:
        """A document in a workspace of its own (nothing restored from another test)."""
        return f"{self.url}/lab/workspaces/{workspace}/tree/{path}?token={self.token}"

    def shutdown_kernels(self) -> None:
        for session in self.api("sessions"):
            self.api(f"sessions/{session['id']}", method="DELETE")

    def log_tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:]


@pytest.fixture(scope="session")
def lab(lab_tree, tmp_path_factory):
    """JupyterLab on 127.0.0.1 serving ``lab_tree`` (module doc)."""
    home = tmp_path_factory.mktemp("jupyter")
    settings = home / "settings" / "@jupyterlab"
    (settings / "notebook-extension").mkdir(parents=True)
    (settings / "apputils-extension").mkdir(parents=True)
    # every cell in the DOM (no windowing), no news or update toast over the notebook
    (settings / "notebook-extension" / "tracker.jupyterlab-settings").write_text(
        json.dumps({"windowingMode": "none"}))
    (settings / "apputils-extension" / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    port, token = _free_port(), secrets.token_hex(24)
    env = _env(home)
    env.update({"JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_RUNTIME_DIR": str(home / "runtime")})
    env.pop("JUPYTER_TOKEN", None)
    log = home / "jupyterlab.log"
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           f"--ServerApp.token={token}", "--allow-root", f"--ServerApp.root_dir={lab_tree}",
           f"--LabApp.user_settings_dir={home / 'settings'}",
           f"--LabApp.workspaces_dir={home / 'workspaces'}"]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=lab_tree)
    server = Lab(f"http://127.0.0.1:{port}", token, lab_tree, log, proc)
    deadline = time.time() + 120
    while True:
        if proc.poll() is not None:
            pytest.fail(f"JupyterLab exited ({proc.returncode}):\n{server.log_tail()}")
        try:
            server.api("status")
            break
        except OSError:
            if time.time() > deadline:
                proc.terminate()
                pytest.fail(f"JupyterLab did not answer in 120 s:\n{server.log_tail()}")
            time.sleep(0.5)
    yield server
    proc.terminate()          # the server shuts its kernels down on SIGTERM
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
