import numpy as np
import pytest

from lmoe_viz.data import PRESETS, holdout_split, id_label_map
from lmoe_viz.data.splits import check_disjoint
from lmoe_viz.errors import UserError

MIXOE_COUNTS = {"bird": (200, 55), "aircraft": (90, 10), "butterfly": (150, 50), "car": (150, 46)}


@pytest.mark.parametrize("name", sorted(MIXOE_COUNTS))
@pytest.mark.parametrize("seed", range(5))
def test_split_equals_mixoe_formula(name, seed):
    num_id, num_ood = MIXOE_COUNTS[name]
    assert (PRESETS[name].num_id, PRESETS[name].num_ood) == (num_id, num_ood)
    expected = np.random.RandomState(seed).choice(range(num_id + num_ood), num_id, replace=False)
    got = holdout_split(num_id, num_ood, seed)
    assert np.array_equal(got, np.sort(expected))
    assert len(set(got.tolist())) == num_id and set(got.tolist()) <= set(range(num_id + num_ood))


def test_known_split_and_rank_labels():
    assert holdout_split(6, 4, 0).tolist() == [1, 2, 4, 6, 8, 9]
    assert id_label_map([9, 1, 4]) == {1: 0, 4: 1, 9: 2}


def test_bad_splits():
    with pytest.raises(UserError, match="num_id"):
        holdout_split(0, 3, 0)
    with pytest.raises(UserError, match=r"classes \[2\] are both ID and OOD"):
        check_disjoint([1, 2], [2, 3])
