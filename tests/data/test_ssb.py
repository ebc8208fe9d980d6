"""The Semantic Shift Benchmark splits (data/ssb.py), the ssb-* protocols and OSCR."""
import json

import numpy as np
import pytest

import fakes
from lmoe_viz.config import RunConfig
from lmoe_viz.data import build_splits
from lmoe_viz.data.build_info import build_info
from lmoe_viz.data.protocols import part_dataset
from lmoe_viz.data.ssb import SSB_FILE, ssb_classes, ssb_presets
from lmoe_viz.errors import UserError
from lmoe_viz.metrics import oscr

#: (classes in the release, known, easy, hard = Medium + Hard): SSB's split files
SIZES = {"cub": (200, 100, 32, 68), "aircraft": (100, 50, 20, 30), "car": (196, 98, 76, 22)}


@pytest.mark.parametrize("name", SIZES)
def test_split_sizes_disjoint_and_covering_every_class(name):
    c = ssb_classes(name)
    total, known, easy, hard = SIZES[name]
    assert (len(c["known"]), len(c["easy"]), len(c["hard"])) == (known, easy, hard)
    every = c["known"] + c["easy"] + c["hard"]
    assert sorted(every) == list(range(total))            # disjoint, and every class once
    raw = json.loads(SSB_FILE.read_text())
    assert c["hard"] == raw[name]["medium"] + raw[name]["hard"]
    assert raw["_source"]["commit"] == "3258f058d4fd75cb88e23d0bd638d24b629e60d3"


def test_facts_from_the_split_files_spot_checked():
    """A few entries read by hand from the pickles (the class names they stand for are
    SSB's documented Hard cases: Boeing 737-600..900 unknown beside 737-200..500 known)."""
    air = ssb_classes("aircraft")
    assert {2, 3, 4, 5} <= set(air["known"]) and {6, 7, 8, 9} <= set(air["hard"])
    assert set(ssb_presets()) == {"cub", "aircraft", "car"}
    with pytest.raises(UserError, match="has no SSB split"):
        ssb_classes("bird")


def test_ssb_split_trains_on_the_known_classes_and_grades_the_unknown(tmp_path):
    fakes.aircraft(tmp_path)
    build_info("aircraft", tmp_path)
    fakes.webvision(tmp_path)
    cfg = RunConfig(preset="aircraft", data_root=str(tmp_path), split="ssb").resolved()
    s = build_splits(cfg)
    c = ssb_classes("aircraft")
    assert s.id_classes == sorted(c["known"]) and s.ood_classes == sorted(c["easy"] + c["hard"])
    for grade in ("easy", "hard"):
        part = part_dataset(f"ssb_{grade}", s, cfg)
        classes = {s.ood_test_classes[i] for i in part.indices}
        assert classes and classes <= set(c[grade])
    assert len(part_dataset("ssb_easy", s, cfg)) + len(part_dataset("ssb_hard", s, cfg)) == len(s.ood_test)
    holdout = RunConfig(preset="aircraft", data_root=str(tmp_path), split=0).resolved()
    with pytest.raises(UserError, match="tests a run trained with --split ssb"):
        part_dataset("ssb_easy", build_splits(holdout), holdout)


def test_ssb_split_on_a_preset_without_one_is_one_line():
    with pytest.raises(UserError, match="--split ssb applies to cub, aircraft, car"):
        RunConfig(preset="bird", split="ssb").validate()


# ---------------------------------------------------------------- OSCR
def _oscr_by_the_rule(known, correct, unknown):
    """SSB's compute_oscr rule written out as a loop (test/utils.py of the SSB code)."""
    s = np.r_[known, unknown]
    idx = s.argsort()
    ok = np.r_[np.asarray(correct, float), np.zeros(len(unknown))][idx]
    unk = np.r_[np.zeros(len(known)), np.ones(len(unknown))][idx]
    n = len(s)
    pts = [(0.0, 0.0)] * (n + 2)
    for k in range(n - 1):
        pts[k] = (unk[k:].sum() / len(unknown), ok[k + 1:].sum() / len(known))
    pts[n + 1] = (1.0, 1.0)
    pts = sorted(pts, reverse=True)
    return sum((pts[j][0] - pts[j + 1][0]) * (pts[j][1] + pts[j + 1][1]) / 2 for j in range(n + 1))


def test_oscr_hand_computed():
    # ordered: 0.1 unknown, 0.6 known (wrong), 0.7 unknown, 0.9 known (right):
    # points (1, .5), (.5, .5), (.5, .5), (0, 0), (0, 0), (1, 1) -> 0.25 + 0.125
    assert oscr([0.9, 0.6], [True, False], [0.7, 0.1]) == pytest.approx(0.375)
    # perfect separation, all right: the rule's CCR counts the known samples *after* the
    # cut-off, so the first known one is lost at its own cut-off: 0.875, not 1 (the gap
    # shrinks as 1/n_known; the SSB numbers carry it)
    assert oscr([5, 4], [True, True], [1, 0]) == pytest.approx(0.875)


@pytest.mark.parametrize("seed", range(6))
def test_oscr_equals_the_rule_with_ties(seed):
    rng = np.random.RandomState(seed)
    known = rng.randint(0, 6, rng.randint(3, 40)) / 2.0
    unknown = rng.randint(0, 5, rng.randint(3, 40)) / 2.0
    correct = rng.rand(len(known)) < 0.7
    assert oscr(known, correct, unknown) == pytest.approx(_oscr_by_the_rule(known, correct, unknown), abs=1e-12)
