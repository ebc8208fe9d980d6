import numpy as np
import pytest
import torch

from lmoe_viz import losses as L
from lmoe_viz.config import RunConfig
from lmoe_viz.errors import UserError
from lmoe_viz.methods import draw_mix, objective
from lmoe_viz.models import SmallResNet

CASES = [("baseline", False, "input"), ("oe", False, "input"), ("mixoe", False, "input"),
         ("mixoe", True, "input"), ("logit_mixoe", False, "fc"), ("logit_mixoe", True, "fc"),
         ("logit_mixoe", True, "layer2")]


@pytest.mark.parametrize("method,lc,layer", CASES)
@pytest.mark.parametrize("batching", ["separate", "joint"])
@pytest.mark.parametrize("mix_op", ["mixup", "cutmix"])
def test_every_method_gives_finite_loss_and_gradients(method, lc, layer, batching, mix_op):
    torch.manual_seed(0)
    model = SmallResNet(4)
    cfg = RunConfig(method=method, lc=lc, mix_layer=None if layer == "input" and method != "mixoe" else layer,
                    batching=batching, mix_op=mix_op).resolved()
    x, y, xo = torch.randn(6, 1, 8, 8), torch.randint(0, 4, (6,)), torch.randn(6, 1, 8, 8)
    lam, box = draw_mix(np.random.default_rng(0), 1.0, mix_op, 8, 8)
    loss, terms = objective(model, cfg, 4, x, y, xo, lam, box)
    assert torch.isfinite(loss)
    loss.backward()
    assert model.fc.weight.grad is not None and model.stem[0].weight.grad.abs().sum() > 0
    assert ("lc" in terms) == lc


def test_logit_mixoe_matches_equations_by_hand():
    """Eq. (14) + gamma * eq. (15) with mixup, computed from the model's own pieces."""
    torch.manual_seed(1)
    model = SmallResNet(3).eval()   # eval: BatchNorm does not depend on the batching
    cfg = RunConfig(method="logit_mixoe", lc=True, beta=0.7, gamma=2.0).resolved()
    x, y, xo, lam = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 0]), torch.randn(4, 1, 8, 8), 0.3
    loss, _ = objective(model, cfg, 3, x, y, xo, lam)
    z_in, z_out, z_x = model(x), model(xo), model(lam * x + (1 - lam) * xo)
    expected = (L.soft_cross_entropy(z_in, torch.eye(3)[y])
                + 0.7 * L.soft_cross_entropy(L.logit_mix(z_in, z_out, lam), L.mixoe_targets(y, 3, lam))
                + 2.0 * L.logit_consistency(z_x, z_in, z_out, lam))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    # separate and joint batching agree in eval mode
    cfg.batching = "separate"
    assert objective(model, cfg, 3, x, y, xo, lam)[0].item() == pytest.approx(loss.item(), rel=1e-5)


def test_mixoe_cutmix_uses_area_lambda():
    model = SmallResNet(3).eval()
    cfg = RunConfig(method="mixoe", mix_op="cutmix").resolved()
    x, y, xo = torch.randn(2, 1, 8, 8), torch.tensor([0, 1]), torch.randn(2, 1, 8, 8)
    _, terms = objective(model, cfg, 3, x, y, xo, 0.9, (0, 0, 4, 4))
    assert terms["lam"] == pytest.approx(0.75)


def test_draw_mix_is_seeded():
    a = [draw_mix(np.random.default_rng(5), 0.3, "cutmix", 32, 32) for _ in range(2)]
    assert a[0] == a[1] and 0 < a[0][0] < 1


@pytest.mark.parametrize("kwargs,match", [
    ({"alpha": 0}, "alpha must be > 0"), ({"beta": -1}, "beta must be >= 0"),
    ({"gamma": -0.5}, "gamma must be >= 0"), ({"method": "vos"}, "unknown method 'vos'"),
    ({"preset": "cifar"}, "unknown preset 'cifar'"), ({"mix_op": "cutout"}, "unknown mix_op"),
    ({"method": "oe", "lc": True}, "--lc applies to mixoe and logit_mixoe"),
    ({"method": "mixoe", "mix_layer": "layer2"}, "needs --method logit_mixoe")])
def test_config_errors_name_the_value(kwargs, match):
    with pytest.raises(UserError, match=match):
        RunConfig(**kwargs).validate()
