"""Headless reproduction: run the notebooks in order with papermill, collect every artifact.

``lmoe-viz reproduce --preset P --out DIR [-p NAME VALUE ...] [-f params.yaml]`` writes
``DIR/notebooks/*.ipynb`` (executed), ``DIR/figures/*.png|pdf``, ``DIR/tables/*`` and
``DIR/index.md`` / ``DIR/index.html`` showing all figures; runs live in ``DIR/runs`` and
are reused by a second call (cached checkpoints and logits), which is much faster.
"""
from __future__ import annotations

import ast
import json
import sys
import time
from pathlib import Path

import yaml

from .data import get_preset
from .errors import UserError
from .io import atomic_write_text, check_can_create, ensure_dir
from .nbcache import NotebookState, inputs_digest, outputs_state, package_digest
from .report import write_index

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = ("01_train.ipynb", "02_logit_norm_histograms.ipynb", "03_logit_pca.ipynb",
             "04_sample_logit_responses.ipynb", "05_beta_distributions.ipynb",
             "06_results_table.ipynb", "07_claims.ipynb")


def load_params(param_file=None, overrides=()) -> dict:
    """Parameters from a YAML file, then ``-p NAME VALUE`` pairs (values parsed as YAML)."""
    params = {}
    if param_file:
        p = Path(param_file)
        if not p.is_file():
            raise UserError(f"parameter file {p} not found; see params/ for examples")
        try:
            params = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise UserError(f"parameter file {p} is not valid YAML ({exc.__class__.__name__})") from None
        if not isinstance(params, dict):
            raise UserError(f"parameter file {p} must map names to values")
    for name, value in overrides:
        try:
            params[name] = yaml.safe_load(value)
        except yaml.YAMLError:
            params[name] = value
    return params


def notebook_parameters(path) -> dict:
    """{name: default value} of a notebook's ``parameters`` cell."""
    import papermill as pm
    out = {}
    for name, info in pm.inspect_notebook(str(path)).items():
        try:
            out[name] = ast.literal_eval(info["default"])
        except (ValueError, SyntaxError):
            out[name] = None
    return out


def check_types(nb_name: str, defaults: dict, params: dict) -> None:
    """Refuse a parameter whose type does not match the notebook's default."""
    for name, value in params.items():
        if name not in defaults or defaults[name] is None or value is None:
            continue
        d = defaults[name]
        ok = (isinstance(value, bool) if isinstance(d, bool) else
              isinstance(value, (int, float)) and not isinstance(value, bool) if isinstance(d, float) else
              isinstance(value, int) and not isinstance(value, bool) if isinstance(d, int) else
              isinstance(value, type(d)))
        if not ok:
            raise UserError(f"parameter {name!r} of {nb_name} expects {type(d).__name__} like {d!r}, "
                            f"got {type(value).__name__} {value!r}; fix it in -p or the params file")


def _ipc_kernel_manager():
    """Kernels over local IPC sockets, not unencrypted TCP (ipykernel warns about TCP)."""
    from jupyter_client.manager import AsyncKernelManager

    class IPCKernelManager(AsyncKernelManager):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.transport = "ipc"
    return IPCKernelManager


def reproduce(preset: str, out, params: dict | None = None, progress: bool = True,
              notebooks=NOTEBOOKS, kernel_name: str = "python3", force: bool = False) -> dict:
    """Execute ``notebooks`` into ``out``; a notebook whose inputs and outputs are as its
    last execution left them is not executed again (nbcache.py) unless ``force``.
    ``progress``: a line per notebook and the notebooks' own printed lines (the grid's
    per-run progress with its ETA) as they come, on stdout."""
    import papermill as pm
    out = Path(out).resolve()
    params, known = _checked_params(preset, out, params, notebooks)
    check_can_create(out)
    ensure_dir(out / "notebooks")
    timings, skipped = {}, []
    state, package = NotebookState(out), package_digest()
    for i, nb in enumerate(notebooks, 1):
        nb_params = {k: v for k, v in params.items() if k in known[nb]}
        if not force and state.up_to_date(nb, inputs_digest(NOTEBOOK_DIR / nb, nb_params, out, package)):
            skipped.append(nb)
            timings[nb] = state.seconds(nb)
            _say(progress, f"[reproduce {i}/{len(notebooks)}] {nb}: up to date")
            continue
        _say(progress, f"[reproduce {i}/{len(notebooks)}] {nb}: executing")
        t0, before = time.time(), outputs_state(out)
        try:
            pm.execute_notebook(str(NOTEBOOK_DIR / nb), str(out / "notebooks" / nb),
                                parameters=nb_params, kernel_name=kernel_name, progress_bar=False,
                                cwd=str(out), kernel_manager_class=_ipc_kernel_manager(),
                                stdout_file=sys.stdout if progress else None)
        except pm.PapermillExecutionError as exc:
            raise UserError(f"notebook {nb} failed in cell {exc.exec_count}: {exc.ename}: "
                            f"{exc.evalue.splitlines()[0] if exc.evalue else ''}; the executed copy "
                            f"is {out / 'notebooks' / nb}") from None
        timings[nb] = round(time.time() - t0, 2)
        state.executed(nb, inputs_digest(NOTEBOOK_DIR / nb, nb_params, out, package), before,
                       timings[nb])
    index = write_index(out, preset, timings, skipped)
    atomic_write_text(out / "reproduce.json", json.dumps({"preset": preset, "params": params,
                                                          "seconds": timings, "up_to_date": skipped},
                                                         indent=2))
    return {"index": index, "seconds": timings, "up_to_date": skipped}


def _checked_params(preset: str, out: Path, params: dict | None, notebooks) -> tuple[dict, dict]:
    """The parameters every notebook gets (``runs_dir`` and ``out_dir`` under ``out``, then
    ``params``, then ``preset``) and each notebook's defaults; an unknown parameter or one
    of the wrong type is one line, before anything runs."""
    params = {"runs_dir": str(out / "runs"), "out_dir": str(out), **(params or {}), "preset": preset}
    known = {}
    for nb in notebooks:                      # check every notebook before running any
        known[nb] = notebook_parameters(NOTEBOOK_DIR / nb)
        check_types(nb, known[nb], params)
    unknown = sorted(set(params) - set().union(*known.values()))
    if unknown:
        raise UserError(f"unknown parameter(s) {unknown}; the notebooks take "
                        f"{sorted(set().union(*known.values()))}")
    return params, known


def pending(out, notebooks=NOTEBOOKS) -> list[str]:
    """The notebooks a ``reproduce`` into ``out`` with the parameters of its last call
    (``reproduce.json``) would execute: all of them when ``out`` holds no reproduce; none
    when every executed notebook is up to date (nbcache.py). What ``make docs`` asks before
    rendering ``out``'s executed notebooks."""
    out = Path(out).resolve()
    last = read_last(out)
    if last is None:
        return list(notebooks)
    params, known = _checked_params(last["preset"], out, last["params"], notebooks)
    state, package = NotebookState(out), package_digest()
    return [nb for nb in notebooks if not state.up_to_date(nb, inputs_digest(
                NOTEBOOK_DIR / nb, {k: v for k, v in params.items() if k in known[nb]}, out, package))]


def read_last(out) -> dict | None:
    """``{"preset", "params", ...}`` of the last reproduce into ``out``, None when none."""
    path = Path(out) / "reproduce.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _say(enabled: bool, line: str) -> None:
    if enabled:
        print(line, flush=True)


def summary_line(res: dict, preset: str, seconds: float) -> str:
    """One line: what ran, Table I's size, the figures, where to look."""
    out = Path(res["index"]).parent
    table = out / "tables" / "table1.csv"
    rows = max(len(table.read_text().splitlines()) - 1, 0) if table.is_file() else 0
    figs = len(list((out / "figures").glob("*.png")))
    fresh = len(res["seconds"]) - len(res["up_to_date"])
    return (f"reproduce {preset}: {len(res['seconds'])} notebooks ({fresh} executed, "
            f"{len(res['up_to_date'])} up to date) in {seconds:.0f} s; Table I {rows} rows, "
            f"{figs} figures; open {res['index']}")


def add_parser(sub) -> None:
    """Add the ``reproduce`` subcommand (``--preset``, ``--out``, ``-p`` / ``-f`` parameters,
    ``--quiet``, ``--force``) to ``sub``."""
    p = sub.add_parser("reproduce", help="run all notebooks headless for a preset")
    p.add_argument("--preset", default="digits")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="notebook parameter (value parsed as YAML)")
    p.add_argument("-f", "--params-file", default=None, help="YAML file of parameters (see params/)")
    p.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true",
                   help="print only the final summary line (CI)")
    p.add_argument("--force", action="store_true",
                   help="execute every notebook, even those whose inputs and outputs are unchanged")
    p.set_defaults(func=cmd_reproduce)


def cmd_reproduce(args) -> int:
    """``lmoe-viz reproduce``: check the preset, read the parameters (``-f`` file, then ``-p``),
    run reproduce and print summary_line; returns 0."""
    get_preset(args.preset)
    params = load_params(args.params_file, args.param)
    t0 = time.time()
    res = reproduce(args.preset, args.out, params, progress=not args.quiet, force=args.force)
    print(summary_line(res, args.preset, time.time() - t0))
    return 0


#: what ipykernel's installed kernelspec calls itself (JupyterLab rewrites another name)
KERNEL_DISPLAY_NAME = "Python 3 (ipykernel)"


def kernel_language_info() -> dict:
    """What the ipykernel of this Python reports on start; stored in the notebooks so that
    JupyterLab, opening them with the same kernel, finds nothing to update and does not
    mark them modified."""
    from ipykernel.ipkernel import IPythonKernel
    return dict(IPythonKernel.language_info)


def strip_outputs(nb) -> bool:
    """Strip outputs and execution counts except in cells marked ``# NBVAL_CHECK_OUTPUT``
    (nbstripout's result for the other cells; the checked cells keep their output and a
    stable execution count); normalise the kernelspec. Returns whether it changed."""
    before = json.dumps(nb, sort_keys=True, default=str)
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    for number, cell in enumerate(code_cells, 1):
        if "NBVAL_CHECK_OUTPUT" not in cell.source:
            cell.execution_count = None
            cell.outputs = []
        else:   # nbval needs an execution count to treat the stored output as a reference
            cell.execution_count = number
            for o in cell.outputs:
                if "execution_count" in o:
                    o["execution_count"] = number
        cell.metadata = {k: v for k, v in cell.metadata.items() if k == "tags"}
    nb.metadata = {"kernelspec": {"display_name": KERNEL_DISPLAY_NAME, "language": "python",
                                  "name": "python3"},
                   "language_info": kernel_language_info()}
    return json.dumps(nb, sort_keys=True, default=str) != before


def refresh_notebooks(paths, execute: bool = True, kernel_name: str = "python3") -> None:
    """Maintainers: execute committed notebooks with their defaults (so the cells nbval
    checks hold fresh outputs), then strip every other output. ``make notebooks``."""
    import nbformat
    import papermill as pm
    for path in paths:
        path = Path(path)
        if execute:
            pm.execute_notebook(str(path), str(path), kernel_name=kernel_name, progress_bar=False,
                                cwd=str(path.parent))
        nb = nbformat.read(path, as_version=4)
        strip_outputs(nb)
        for cell in nb.cells:   # papermill's own bookkeeping
            cell.metadata.pop("papermill", None)
        atomic_write_text(path, nbformat.writes(nb) + "\n")


if __name__ == "__main__":  # python -m lmoe_viz.reproduce [--no-execute] notebooks/*.ipynb
    args = sys.argv[1:]
    refresh_notebooks([a for a in args if not a.startswith("--")], execute="--no-execute" not in args)
