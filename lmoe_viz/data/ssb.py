"""The Semantic Shift Benchmark's class splits (Vaze et al., ICLR 2022; sgvaze/osr_closed_set_all_you_need,
``data/open_set_splits/*_osr_splits.pkl``), shipped as facts in ``ssb_splits.json`` with
their source and commit.

``--split ssb`` (presets ``cub``, ``aircraft``, ``car``) trains on SSB's known classes;
the unknown classes are graded Easy / Hard, where Hard is the files' Medium and Hard
together, as SSB's README and its fine-grained evaluation do. The files' indices are
0-based and are this package's info-file labels unchanged: CUB class id - 1, the line of
the variant in FGVC-Aircraft's ``variants.txt``, Stanford Cars class id - 1 (build_info.py
writes exactly these). ID labels are the ranks of the known classes in sorted order, as
for every split here (SSB's code numbers them in list order; no metric depends on it).
"""
from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

import numpy as np

from ..errors import UserError

SSB = "ssb"
SSB_FILE = Path(__file__).with_name("ssb_splits.json")
GRADES = ("easy", "hard")


@functools.lru_cache(maxsize=None)
def _table() -> dict:
    return json.loads(SSB_FILE.read_text())


def ssb_presets() -> tuple:
    """The presets with an SSB split: the keys of ssb_splits.json that do not start with ``_``."""
    return tuple(k for k in _table() if not k.startswith("_"))


def ssb_classes(name: str) -> dict:
    """``{'known', 'easy', 'hard'}`` of preset ``name`` in the split files' own class indices
    (their order kept; hard = the files' Medium followed by Hard)."""
    if name not in ssb_presets():
        raise UserError(f"preset {name!r} has no SSB split; --split ssb applies to "
                        f"{', '.join(ssb_presets())}: pass an integer --split")
    t = _table()[name]
    return {"known": list(t["known"]), "easy": list(t["easy"]),
            "hard": list(t["medium"]) + list(t["hard"])}


def ssb_split(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(ID classes, OOD classes), sorted, of the SSB split of ``name``: known, and every
    unknown class (easy and hard)."""
    c = ssb_classes(name)
    return np.array(sorted(c["known"])), np.array(sorted(c["easy"] + c["hard"]))


def split_value(text: str):
    """``--split``: an integer seed of a hold-out split, or ``ssb``."""
    if str(text).lower() == SSB:
        return SSB
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes an integer seed or ssb, not {text!r}") from None
