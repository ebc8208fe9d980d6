"""Which notebooks of a ``reproduce`` are up to date, as ``make`` decides for targets.

A notebook is re-executed unless all of these are as they were just after its last
execution in this output folder:

* its inputs: the notebook's source, the parameters injected into it, the source of the
  ``lmoe_viz`` package, and the state (relative path, size, modification time) of every
  file under each parameter that names an existing folder or file other than the output
  folder (the runs folder, a results folder), derived logit caches (``logits/``) left out;
* its outputs: the executed copy and every figure or table it wrote (same size and time).

The record lives in ``<out>/.reproduce-state.json``. ``reproduce --force`` ignores it.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .io import atomic_write_text

STATE_FILE = ".reproduce-state.json"
PACKAGE_DIR = Path(__file__).resolve().parent
#: folders under an input whose files are derived caches, not inputs
DERIVED = {"logits", "__pycache__", ".ipynb_checkpoints"}


def _tree_state(path: Path) -> list:
    if path.is_file():
        st = path.stat()
        return [[path.name, st.st_size, st.st_mtime_ns]]
    out = []
    for f in sorted(path.rglob("*")):
        rel = f.relative_to(path)
        if f.is_file() and not DERIVED & set(rel.parts[:-1]) and not rel.name.startswith(".lock"):
            st = f.stat()
            out.append([str(rel), st.st_size, st.st_mtime_ns])
    return out


def package_digest() -> str:
    """sha256 of the lmoe_viz package's source: every .py and .json file under it, relative path
    and content."""
    h = hashlib.sha256()
    for f in sorted(PACKAGE_DIR.rglob("*")):
        if f.is_file() and f.suffix in (".py", ".json"):
            h.update(str(f.relative_to(PACKAGE_DIR)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def inputs_digest(notebook: Path, params: dict, out: Path, package: str) -> str:
    """The digest of everything a notebook's execution reads (module doc)."""
    trees = {}
    for name, value in sorted(params.items()):
        if isinstance(value, str) and value:
            p = Path(value) if Path(value).is_absolute() else out / value
            if p.exists() and p.resolve() != out.resolve():
                trees[name] = _tree_state(p)
    blob = json.dumps({"notebook": hashlib.sha256(notebook.read_bytes()).hexdigest(),
                       "params": params, "package": package, "trees": trees},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def outputs_state(out: Path) -> dict:
    """{relative path: [size, mtime]} of the figures and tables under ``out``."""
    state = {}
    for sub in ("figures", "tables"):
        d = out / sub
        if d.is_dir():
            for rel, size, mtime in _tree_state(d):
                state[f"{sub}/{rel}"] = [size, mtime]
    return state


class NotebookState:
    """The up-to-date record of one output folder."""

    def __init__(self, out: Path):
        self.out = out
        self.path = out / STATE_FILE
        try:
            self.record = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.record = {}

    def up_to_date(self, nb: str, digest: str) -> bool:
        rec = self.record.get(nb)
        if not rec or rec.get("inputs") != digest:
            return False
        copy = self._copy(nb)                      # absent, or rewritten since (a failed rerun)
        if copy is None or rec.get("copy") != copy:
            return False
        now = outputs_state(self.out)
        return all(now.get(rel) == v for rel, v in rec.get("outputs", {}).items())

    def _copy(self, nb: str) -> list | None:
        """[size, mtime_ns] of the executed copy of ``nb``; None when there is none."""
        path = self.out / "notebooks" / nb
        if not path.is_file():
            return None
        st = path.stat()
        return [st.st_size, st.st_mtime_ns]

    def executed(self, nb: str, digest: str, before: dict, seconds: float) -> None:
        """Record a finished execution: the inputs as it left them, what it (re)wrote."""
        after = outputs_state(self.out)
        wrote = {rel: v for rel, v in after.items() if before.get(rel) != v}
        self.record[nb] = {"inputs": digest, "outputs": wrote, "seconds": seconds,
                           "copy": self._copy(nb)}
        atomic_write_text(self.path, json.dumps(self.record, indent=1, sort_keys=True))

    def seconds(self, nb: str) -> float:
        return float(self.record.get(nb, {}).get("seconds", 0.0))
