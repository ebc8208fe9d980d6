"""Hold-out-class splits, identical to MixOE's convention (PAPER.md, protocol)."""
from __future__ import annotations

import numpy as np

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


def ood_classes(num_id: int, num_ood: int, seed: int) -> np.ndarray:
    ids = set(holdout_split(num_id, num_ood, seed).tolist())
    return np.array([c for c in range(num_id + num_ood) if c not in ids], dtype=np.int64)


def id_label_map(id_classes) -> dict:
    """Original class -> ID label (rank in sorted order)."""
    return {int(c): i for i, c in enumerate(sorted(int(c) for c in id_classes))}


def check_disjoint(id_classes, ood_classes) -> None:
    overlap = sorted(set(map(int, id_classes)) & set(map(int, ood_classes)))
    if overlap:
        raise UserError(f"classes {overlap} are both ID and OOD; a hold-out split must be "
                        "disjoint: fix the class lists")
