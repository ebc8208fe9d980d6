"""Figures, the machine they were measured on, the printed table and the JSON file.

A :class:`Figure` is one number with its unit, its target (``<=`` or ``>=``) where the
issue sets one, one sentence on what it rests on and, for timings, their noise: the
interquartile range over the median of the repeated timings behind it (the larger of the
two for a ratio). On a shared machine a noise above ~0.2 says the figure moved with other
work and should be measured again when the machine is quiet. A :class:`Piece` is what one
benchmark module returns: its figures, the settings it ran with and its raw numbers.
"""
from __future__ import annotations

import datetime
import json
import math
import os
import platform
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lmoe_viz.machine import cpu_cores, cpu_model  # noqa: F401 - re-exported for the pieces

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass
class Figure:
    name: str
    value: float | None
    unit: str
    basis: str                      # what the number rests on, one sentence
    target: float | None = None
    sense: str = "<="               # the value must be <= or >= the target
    noise: float | None = None      # interquartile range / median of the timings behind it

    @property
    def meets(self) -> bool | None:
        if self.target is None or self.value is None or not math.isfinite(self.value):
            return None
        return self.value <= self.target if self.sense == "<=" else self.value >= self.target

    def to_dict(self) -> dict:
        return {**asdict(self), "meets": self.meets}


@dataclass
class Piece:
    name: str
    figures: list
    settings: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def machine_slug(device: str = "cpu") -> str:
    """A short name of the hardware, no hostname: ``cuda-<gpu name>`` on a GPU,
    ``cpu-<model>-<cores>c`` otherwise (e.g. ``cpu-amd-epyc-2c``)."""
    import torch
    if str(device).startswith("cuda") and torch.cuda.is_available():
        return "cuda-" + slug(torch.cuda.get_device_name(0))
    return f"cpu-{slug(cpu_model())}-{cpu_cores()}c"


def environment(device: str) -> dict:
    import PIL
    import torch
    import torchvision
    env = {"machine": machine_slug(device), "device": str(device), "cpu": cpu_model(),
           "cores": cpu_cores(), "torch_threads": torch.get_num_threads(),
           "python": platform.python_version(), "torch": torch.__version__,
           "torchvision": torchvision.__version__, "pillow": PIL.__version__,
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    if str(device).startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
        env["cuda"] = torch.version.cuda
    return env


def payload(pieces: list, device: str, command: str) -> dict:
    """Everything one run measured, as written to ``results/<machine>.json``."""
    return {**environment(device), "command": command,
            "settings": {p.name: p.settings for p in pieces},
            "figures": [{"piece": p.name, **f.to_dict()} for p in pieces for f in p.figures],
            "details": {p.name: p.details for p in pieces},
            "notes": {p.name: p.notes for p in pieces if p.notes}}


def publish(pieces: list, device: str, command: str, write: bool, results_dir=None,
            suffix: str = "") -> dict:
    """Print the pieces' table and, when ``write``, the results file
    ``<machine><suffix>.json`` (in ``results_dir``, default RESULTS_DIR): the end of a
    stand-alone benchmark (benchmarks.gpu, benchmarks.feed)."""
    data = payload(pieces, device, command.strip())
    print(format_table(pieces, data))
    if write:
        kwargs = {"results_dir": results_dir} if results_dir else {}
        print(f"\nwrote {write_results(data, name=data['machine'] + suffix, **kwargs)}")
    return data


def partial_recorder(device: str, suffix: str, write: bool, results_dir=None):
    """``on_result(name, result)`` for a stand-alone benchmark that a time limit may stop:
    every result kept and, when ``write``, all of them rewritten to
    ``<results_dir>/<machine><suffix>.partial.json`` as soon as each is measured."""
    path = Path(results_dir or RESULTS_DIR) / f"{machine_slug(device)}{suffix}.partial.json"
    taken: dict = {}

    def on_result(name, result):
        taken[name] = result
        if write:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"device": device, "partial": taken}, indent=1))
    return on_result


def write_results(data: dict, results_dir=RESULTS_DIR, name: str | None = None,
                  table: str | None = None) -> Path:
    """Write ``data`` to ``<results_dir>/<name or machine>.json`` and, given the printed
    ``table``, the same table as ``.md`` (a code block; the documentation's benchmarks page,
    docs/guide/benchmarks.md, includes it). Temp file + rename each."""
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{name or data['machine']}.json"
    outputs = {path: json.dumps(data, indent=2, default=float) + "\n"}
    if table is not None:
        outputs[path.with_suffix(".md")] = f"`{data['command']}`\n\n```\n{table.rstrip()}\n```\n"
    for target, text in outputs.items():
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, target)
    return path


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    a = abs(v)
    return f"{v:,.0f}" if a >= 100 else f"{v:.2f}" if a >= 0.1 or a == 0 else f"{v:.3g}"


def format_table(pieces: list, env: dict | None = None) -> str:
    """A plain-text table (piece, figure, value, unit, target, verdict, basis number),
    then each distinct basis once, then each piece's notes."""
    bases: list = []
    rows = [("piece", "figure", "value", "unit", "target", "ok", "noise", "basis")]
    for p in pieces:
        for f in p.figures:
            if f.basis not in bases:
                bases.append(f.basis)
            target = "-" if f.target is None else f"{f.sense} {_fmt(f.target)}"
            ok = {True: "yes", False: "NO", None: ""}[f.meets]
            noise = "" if f.noise is None else f"{f.noise:.2f}"
            rows.append((p.name, f.name, _fmt(f.value), f.unit, target, ok, noise,
                         f"[{bases.index(f.basis) + 1}]"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    if env:
        load = env.get("load_avg_1m") or [None]
        head = (f"machine {env['machine']}  device {env['device']}  torch {env['torch']}  "
                f"threads {env['torch_threads']}  {env['date']}")
        if None not in load:
            head += f"  load {load[0]:.1f} -> {load[1]:.1f}"
        lines.append(head)
    for k, r in enumerate(rows):
        lines.append("  ".join(c.rjust(w) if i == 2 else c.ljust(w)
                               for i, (c, w) in enumerate(zip(r, widths))).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines += ["", "noise: interquartile range / median of the timings behind a figure "
              "(above ~0.2: other work moved it; measure again on a quiet machine)",
              "", "What the figures rest on:"]
    lines += [f"  [{i}] {b}" for i, b in enumerate(bases, 1)]
    notes = [f"  [{p.name}] {n}" for p in pieces for n in p.notes]
    if notes:
        lines += ["", "Notes:"] + notes
    return "\n".join(lines)
