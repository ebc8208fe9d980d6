"""Hold-out-class splits, identical to MixOE's convention (PAPER.md, protocol), and the
``Splits`` a preset builds: the datasets of one run."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from torch.utils.data import Dataset

from ..errors import UserError


def holdout_split(num_id: int, num_ood: int, seed: int) -> np.ndarray:
    """The ID classes of a hold-out split, sorted.

    MixOE draws ``numpy.random.RandomState(seed).choice(range(num_id + num_ood), num_id,
    replace=False)``; every class not drawn is held out as OOD. ID labels are the rank of
    the class in the sorted ID list (:func:`id_label_map`).
    """
    if num_id < 1 or num_ood < 0:
        raise UserError(f"a split needs num_id >= 1 and num_ood >= 0, got {num_id}/{num_ood}")
    drawn = np.random.RandomState(seed).choice(range(num_id + num_ood), num_id, replace=False)
    return np.sort(drawn)


def id_label_map(id_classes) -> dict:
    """Original class -> ID label (rank in sorted order)."""
    return {int(c): i for i, c in enumerate(sorted(int(c) for c in id_classes))}


def check_disjoint(id_classes, ood_classes) -> None:
    """UserError naming the classes that are in both ``id_classes`` and ``ood_classes``."""
    overlap = sorted(set(map(int, id_classes)) & set(map(int, ood_classes)))
    if overlap:
        raise UserError(f"classes {overlap} are both ID and OOD; a hold-out split must be "
                        "disjoint: fix the class lists")


@dataclass
class Splits:
    id_train: Dataset
    id_test: Dataset
    ood_test: Dataset
    aux: Dataset
    id_classes: list
    ood_classes: list
    info: dict = field(default_factory=dict)  # where each part was found
    id_val: Dataset | None = None             # ID classes of val.txt (paper presets)
    #: embedded presets: n -> n photo crops drawn apart from the training outliers (another
    #: seed, the same normalisation), the far-OOD set of the ``paper`` protocol
    far_ood: Callable | None = None
    #: embedded presets: the named far-OOD test sets, name -> () -> dataset (normalised as
    #: the ID images; data/protocols.py FAR_SETS)
    ood_sets: dict = field(default_factory=dict)
    #: paper presets: the original class of each ood_test item (the SSB grades select by it)
    ood_test_classes: list | None = None

    @property
    def num_classes(self) -> int:
        return len(self.id_classes)

    def describe(self) -> dict:
        return {"id_classes": self.id_classes, "ood_classes": self.ood_classes,
                "num_classes": self.num_classes, "id_train": len(self.id_train),
                "id_val": None if self.id_val is None else len(self.id_val),
                "id_test": len(self.id_test), "ood_test": len(self.ood_test),
                "aux": len(self.aux) if getattr(self.aux, "loaded", True) else None, **self.info}
