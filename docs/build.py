"""Build the documentation site into ``docs/_build/html`` (``make docs``).

    python docs/build.py [--preset digits] [--out out/digits] [--html docs/_build/html]

1. **The executed notebooks** are those ``lmoe-viz reproduce`` wrote into ``--out``
   (default ``out/<preset>``, where ``make reproduce`` puts them). When every one of them
   is up to date (reproduce.pending: the notebook, its parameters of the last reproduce,
   the package source and the runs unchanged) nothing is executed; otherwise reproduce
   runs again with the parameters it last ran with (the notebooks' defaults when there was
   none). A preset whose data is absent stops here with one line naming the command to
   run first (exit 2).
2. They are copied into ``docs/notebooks/executed/`` (generated, not committed, without the
   saved widget state, which needs the widgets' JavaScript; the committed
   notebooks are stripped of their outputs and are never rendered), beside the landing
   page's figure.
3. ``sphinx-build -W --keep-going``: a warning (a broken reference, a docstring that is
   not valid reStructuredText) fails the build.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))

from lmoe_viz import reproduce as R          # noqa: E402
from lmoe_viz.config import RunConfig        # noqa: E402
from lmoe_viz.data import get_preset         # noqa: E402
from lmoe_viz.errors import UserError        # noqa: E402

#: where the rendered copies of the executed notebooks go (docs/.gitignore)
GENERATED = DOCS / "notebooks" / "executed"
#: the landing page's figure (Fig. 3 of the default preset)
LANDING_FIGURE = "fig3_logit_norm_histograms.png"


def executed_notebooks(preset: str, out: Path, progress: bool = True) -> Path:
    """The folder the executed notebooks and their figures are in (``out_dir`` of ``out``'s
    last reproduce, ``out`` itself by default), every notebook up to date (module doc,
    step 1)."""
    last = R.read_last(out)
    if last is not None and last["preset"] != preset:
        raise UserError(f"{out} holds a reproduce of preset {last['preset']}, not {preset}: "
                        f"pass --preset {last['preset']} or another --out")
    params = {k: v for k, v in (last or {}).get("params", {}).items() if k != "preset"}
    todo = R.pending(out)
    if todo:
        try:                                   # where the last reproduce read its data
            get_preset(preset).build(RunConfig(preset=preset, data_root=params.get("data_root")))
        except UserError as exc:
            raise UserError(f"docs need the executed notebooks of {out} and {len(todo)} of them "
                            f"are missing or out of date, but preset {preset} cannot run here "
                            f"({str(exc).split(';')[0]}): run `make reproduce PRESET={preset}` "
                            "after putting its data in place, then `make docs` again") from None
        if progress:
            print(f"docs: {len(todo)} notebook(s) of {out} to execute first: {', '.join(todo)}",
                  flush=True)
        R.reproduce(preset, out, params, progress=progress)    # its own runs_dir, out_dir
    return Path(params.get("out_dir") or out)


def stage(out: Path, figures: Path) -> list[Path]:
    """Copy the executed notebooks of ``out`` and the landing figure of ``figures`` into the
    docs tree (step 2)."""
    if GENERATED.exists():
        shutil.rmtree(GENERATED)
    GENERATED.mkdir(parents=True)
    copied = []
    for nb in R.NOTEBOOKS:
        executed = nbformat.read(out / "notebooks" / nb, as_version=4)
        # the saved widget state needs the widget JS (from a CDN) to mean anything: the
        # page shows each explorer's PNG instead (conf.py), so the state is left out
        executed.metadata.pop("widgets", None)
        nbformat.write(executed, GENERATED / nb)
        copied.append(GENERATED / nb)
    if not (figures / LANDING_FIGURE).is_file():
        raise UserError(f"{figures / LANDING_FIGURE} is missing (notebook 02 draws it): run "
                        f"`make reproduce`, or `lmoe-viz reproduce ... --force` into {out}")
    shutil.copy2(figures / LANDING_FIGURE, GENERATED / LANDING_FIGURE)
    return copied


def sphinx(html: Path, quiet: bool = False) -> int:
    """``sphinx-build -W --keep-going -b html docs HTML`` (step 3); its exit status."""
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html",
           "-d", str(html.parent / "doctrees"), str(DOCS), str(html)] + (["-q"] if quiet else [])
    return subprocess.call(cmd, cwd=ROOT)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="digits")
    ap.add_argument("--out", default=None, help="reproduce's folder (default out/<preset>)")
    ap.add_argument("--html", default=str(DOCS / "_build" / "html"), help="the site's folder")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    out = Path(args.out or ROOT / "out" / args.preset).resolve()
    try:
        figures = executed_notebooks(args.preset, out, progress=not args.quiet) / "figures"
        stage(out, figures)
    except UserError as exc:
        print(f"docs: error: {exc}", file=sys.stderr)
        return 2
    return sphinx(Path(args.html).resolve(), quiet=args.quiet)


if __name__ == "__main__":
    sys.exit(main())
