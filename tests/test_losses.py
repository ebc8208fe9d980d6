import math

import numpy as np
import pytest
import torch

from lmoe_viz import losses as L
from lmoe_viz.errors import UserError


def test_soft_cross_entropy_hand_computed():
    z = torch.tensor([[0.0, math.log(3.0)]])          # softmax = (1/4, 3/4)
    t = torch.tensor([[0.5, 0.5]])
    expected = -(0.5 * math.log(0.25) + 0.5 * math.log(0.75))
    assert L.soft_cross_entropy(z, t).item() == pytest.approx(expected)
    # one-hot targets reduce to ordinary cross-entropy
    z = torch.randn(5, 4)
    y = torch.tensor([0, 1, 2, 3, 1])
    assert L.soft_cross_entropy(z, torch.eye(4)[y]).item() == pytest.approx(
        torch.nn.functional.cross_entropy(z, y).item(), rel=1e-6)
    # numpy in, tensor out
    assert float(L.soft_cross_entropy(np.zeros((2, 2)), np.full((2, 2), 0.5))) == pytest.approx(math.log(2))


def test_mixoe_targets_eq11():
    t = L.mixoe_targets(torch.tensor([1, 0]), 4, 0.6)
    assert torch.allclose(t[0], torch.tensor([0.1, 0.7, 0.1, 0.1]))
    assert torch.allclose(t.sum(1), torch.ones(2))
    assert torch.allclose(L.mixoe_targets([2], 4, 0.0), torch.full((1, 4), 0.25))
    per_sample = L.mixoe_targets(torch.tensor([0, 0]), 2, torch.tensor([1.0, 0.0]))
    assert torch.allclose(per_sample, torch.tensor([[1.0, 0.0], [0.5, 0.5]]))


def test_logit_mix_eq13_and_gradients_flow_into_both():
    z_in = torch.tensor([[2.0, 0.0]], requires_grad=True)
    z_out = torch.tensor([[0.0, 4.0]], requires_grad=True)
    mixed = L.logit_mix(z_in, z_out, 0.25)
    assert torch.allclose(mixed, torch.tensor([[0.5, 3.0]]))
    mixed.sum().backward()
    assert torch.allclose(z_in.grad, torch.full((1, 2), 0.25))
    assert torch.allclose(z_out.grad, torch.full((1, 2), 0.75))


def test_logit_consistency_eq15_normalisation():
    z_mix = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    z_in = torch.tensor([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]])
    z_out = torch.tensor([[3.0, 3.0, 3.0], [0.0, 0.0, 0.0]])
    # lam = 0.5: targets (2,2,2) and (1,1,1); squared errors (1,0,1) and (1,1,1)
    # -> per sample 2/3 and 3/3, mean over batch 5/6
    assert L.logit_consistency(z_mix, z_in, z_out, 0.5).item() == pytest.approx(5 / 6)
    assert L.logit_consistency(z_in, z_in, z_out, 1.0).item() == 0.0


def test_mixup_and_cutmix():
    a, b = torch.ones(1, 1, 4, 4), torch.zeros(1, 1, 4, 4)
    assert torch.allclose(L.mixup(a, b, 0.3), torch.full((1, 1, 4, 4), 0.3))
    mixed, lam = L.cutmix(a, b, (0, 0, 2, 2))
    assert lam == pytest.approx(1 - 4 / 16)
    assert mixed.sum().item() == 12 and mixed[0, 0, 0, 0] == 0 and mixed[0, 0, 3, 3] == 1
    rng = np.random.default_rng(0)
    for lam0 in (0.1, 0.5, 0.9):
        side = 2 * (int(32 * (1 - lam0) ** 0.5) // 2)        # CutMix's cut, before clipping
        areas = []
        for _ in range(200):
            top, left, bottom, right = L.cutmix_box(lam0, 32, 32, rng)
            assert 0 <= top < bottom <= 32 and 0 <= left < right <= 32      # never empty
            areas.append((bottom - top) * (right - left))
        assert max(areas) <= side * side
        if lam0 >= 0.5:                                     # room for interior boxes: the full cut
            assert max(areas) == side * side
        assert abs(side * side - (1 - lam0) * 1024) <= 2 * side + 1
        assert min(areas) >= (side // 2) ** 2               # a corner keeps a quarter


def _lc_case():
    g = torch.Generator().manual_seed(0)
    z_x, z_in, z_out = (torch.randn(5, 4, generator=g, dtype=torch.float64) for _ in range(3))
    return z_x, z_in, z_out, 0.3


def test_lc_modes_match_their_equations_computed_in_numpy():
    z_x, z_in, z_out, lam = _lc_case()
    a, b, c = z_x.numpy(), z_in.numpy(), z_out.numpy()
    t = lam * b + (1 - lam) * c
    fixed = ((a - t) ** 2).sum(1).mean() / 4
    norm = ((np.linalg.norm(a, axis=1) - np.linalg.norm(t, axis=1)) ** 2).mean() / 4
    got = {m: L.logit_consistency(z_x, z_in, z_out, lam, m).item() for m in L.LC_MODES}
    assert got["fixed"] == pytest.approx(fixed, rel=1e-6)
    assert got["outlier-share"] == pytest.approx(0.7 * fixed, rel=1e-6)
    assert got["stop-id"] == pytest.approx(fixed, rel=1e-6)   # same value, other gradients
    assert got["norm"] == pytest.approx(norm, rel=1e-6)
    assert got["norm"] <= got["fixed"]                        # reverse triangle inequality


def test_lc_stop_id_sends_no_gradient_to_the_id_logits():
    z_x, z_in, z_out, lam = (t.requires_grad_() if torch.is_tensor(t) else t for t in _lc_case())
    L.logit_consistency(z_x, z_in, z_out, lam, "stop-id").backward()
    assert z_in.grad is None and z_out.grad.abs().sum() > 0 and z_x.grad.abs().sum() > 0
    z_x2, z_in2, z_out2, _ = (t.requires_grad_() if torch.is_tensor(t) else t for t in _lc_case())
    L.logit_consistency(z_x2, z_in2, z_out2, lam, "fixed").backward()
    assert z_in2.grad.abs().sum() > 0
    # the part of the gradient f(x~) receives is the same in both
    assert torch.allclose(z_x.grad, z_x2.grad)


def test_lc_norm_ignores_the_direction_of_the_logits():
    """Rotating f(x~) within its norm leaves the norm variant at 0, not the fixed one."""
    z_in, z_out, lam = torch.tensor([[3.0, 0.0]]), torch.tensor([[1.0, 0.0]]), 0.5
    z_x = torch.tensor([[0.0, 2.0]])       # same norm as the target (2, 0), orthogonal
    assert L.logit_consistency(z_x, z_in, z_out, lam, "norm").item() == pytest.approx(0.0)
    assert L.logit_consistency(z_x, z_in, z_out, lam, "fixed").item() == pytest.approx(4.0)


def test_lc_mode_reaches_the_objective():
    from lmoe_viz.config import RunConfig
    from lmoe_viz.methods import objective
    from lmoe_viz.models import SmallResNet
    torch.manual_seed(0)
    model = SmallResNet(3).eval()
    x, y, xo = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 0]), torch.randn(4, 1, 8, 8)
    lcs = {m: objective(model, RunConfig(method="logit_mixoe", lc=True, lc_mode=m).resolved(),
                        3, x, y, xo, 0.25)[1]["lc"].item() for m in L.LC_MODES}
    assert lcs["outlier-share"] == pytest.approx(0.75 * lcs["fixed"], rel=1e-5)
    assert lcs["norm"] < lcs["fixed"]
    with pytest.raises(UserError, match="--lc-mode norm shapes the L_LC term: add --lc"):
        RunConfig(method="mixoe", lc_mode="norm").validate()


@pytest.mark.parametrize("lam", [0.0, 0.123456789, 0.5, 0.97, 1.0])
def test_mixoe_targets_of_a_python_lambda_equal_the_tensor_path_bit_for_bit(lam):
    """The host-side scalar path (no device copy a step) gives the float32 tensor path's
    bits: the golden run names and bitcheck digests rest on it."""
    import torch

    from lmoe_viz import losses as L
    y = torch.tensor([0, 3, 2, 1, 3])
    fast = L.mixoe_targets(y, 7, lam)
    slow = L.mixoe_targets(y, 7, torch.tensor(lam))          # the 0-d tensor path
    assert torch.equal(fast, slow) and fast.dtype == torch.float32
    per_sample = L.mixoe_targets(y, 7, torch.full((5,), lam))
    assert torch.equal(fast, per_sample)
