"""A cached ``lmoe-viz reproduce`` against the first one (target: cached <= 20 s).

``lmoe-viz reproduce --preset digits --out DIR`` runs twice in a fresh folder, each a
subprocess timed from start to exit: the first trains the notebooks' grid and extracts
logits; the second finds every run and logit cache in DIR and only re-executes the
notebooks. The first takes minutes on 2 cores, hence ``--skip-reproduce``.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .report import Figure, Piece


def default_command(preset: str, out) -> list:
    return [sys.executable, "-m", "lmoe_viz.cli", "reproduce", "--preset", preset,
            "--out", str(out)]


def timed_run(cmd: list, log: Path, timeout: float | None = None) -> float:
    """Seconds from start to exit of ``cmd``; its output goes to ``log``; a failure raises
    with the log's tail."""
    t0 = time.perf_counter()
    with open(log, "wb") as fh:
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout).returncode
    seconds = time.perf_counter() - t0
    if rc != 0:
        tail = log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{' '.join(map(str, cmd))} exited with {rc}:\n{tail}")
    return seconds


def reproduce_piece(preset: str = "digits", command=None, timeout: float | None = 3600,
                    workdir=None) -> Piece:
    """``command(out_dir) -> argv`` replaces the real command (tests pass a trivial one)."""
    make = command or (lambda out: default_command(preset, out))
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        out = Path(tmp) / "out"
        cmd = make(out)
        first = timed_run(cmd, Path(tmp) / "first.log", timeout)
        first_nb = _notebook_seconds(out)
        cached = timed_run(cmd, Path(tmp) / "cached.log", timeout)
        cached_nb = _notebook_seconds(out)
    shown = " ".join(str(c) for c in cmd).replace(str(out), "OUT").replace(sys.executable, "python")
    figures = [
        Figure("first reproduce", first, "s", f"wall time of `{shown}` in a fresh OUT"),
        Figure("cached reproduce", cached, "s", "wall time of the same command again (runs "
               "and logits cached in OUT)", 20.0, "<="),
        Figure("cached / first reproduce", cached / first if first > 0 else None, "x",
               "the two wall times above, one run"),
    ]
    return Piece("reproduce", figures, {"preset": preset, "command": shown},
                 {"first_s": first, "cached_s": cached, "first_notebooks": first_nb,
                  "cached_notebooks": cached_nb})


def _notebook_seconds(out: Path) -> dict | None:
    """What ``OUT/reproduce.json`` says each notebook took (and which were up to date)."""
    import json
    try:
        rec = json.loads((out / "reproduce.json").read_text())
        return {"seconds": rec.get("seconds"), "up_to_date": rec.get("up_to_date")}
    except (OSError, ValueError):
        return None
