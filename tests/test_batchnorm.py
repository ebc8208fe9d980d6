"""BatchNorm regimes (batchnorm.py): in train mode, the running statistics move exactly
as each regime's docstring says, checked against statistics computed independently."""
import numpy as np
import pytest
import torch

from lmoe_viz.batchnorm import frozen_running_stats, recalibrate
from lmoe_viz.config import RunConfig
from lmoe_viz.methods import objective
from lmoe_viz.models import SmallResNet

M = 0.1   # BatchNorm's default momentum


def _stem_stats(model, x):
    """Mean and unbiased variance per channel of the first conv's output on ``x``."""
    with torch.no_grad():
        h = model.stem[0](x).double()
    return h.mean((0, 2, 3)), h.var((0, 2, 3), unbiased=True)


def _expected(r_mean, r_var, batches, model):
    mean, var = r_mean.double().clone(), r_var.double().clone()
    for b in batches:
        bm, bv = _stem_stats(model, b)
        mean, var = (1 - M) * mean + M * bm, (1 - M) * var + M * bv
    return mean, var


def _step(method, bn, lc=True, x_out=None, seed=0):
    torch.manual_seed(seed)
    model = SmallResNet(3).train()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 1, 8, 8, generator=g)
    xo = 3 + 2 * torch.randn(8, 1, 8, 8, generator=g) if x_out is None else x_out
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    cfg = RunConfig(method=method, lc=lc, bn=bn).resolved()
    bn0 = model.stem[1]
    r0 = (bn0.running_mean.clone(), bn0.running_var.clone())
    frozen = SmallResNet(3)
    frozen.load_state_dict(model.state_dict())
    loss, _ = objective(model, cfg, 3, x, y, xo, 0.3)
    loss.backward()        # the statistics update must not break the step's backward
    return model, frozen, r0, x, xo


@pytest.mark.parametrize("method", ["mixoe", "logit_mixoe", "oe"])
def test_id_stats_running_statistics_come_from_the_id_batch_alone(method):
    model, frozen, r0, x, xo = _step(method, "id-stats", lc=method != "oe")
    mean, var = _expected(*r0, [x], frozen)
    assert torch.allclose(model.stem[1].running_mean.double(), mean, atol=1e-5)
    assert torch.allclose(model.stem[1].running_var.double(), var, atol=1e-4)
    assert int(model.stem[1].num_batches_tracked) == 1
    # the outliers do not reach the running statistics at all
    other, *_ = _step(method, "id-stats", lc=method != "oe", x_out=torch.zeros(16, 1, 8, 8))
    assert torch.allclose(other.stem[1].running_mean, model.stem[1].running_mean, atol=1e-6)


def test_separate_updates_once_per_forward_with_each_batch():
    """MixOE w/ L_LC under separate: ID, x~ and outliers each move the statistics."""
    model, frozen, r0, x, xo = _step("mixoe", "separate")
    x_mix = 0.3 * x + 0.7 * xo
    mean, var = _expected(*r0, [x, x_mix, xo], frozen)
    assert torch.allclose(model.stem[1].running_mean.double(), mean, atol=1e-5)
    assert torch.allclose(model.stem[1].running_var.double(), var, atol=1e-4)
    assert int(model.stem[1].num_batches_tracked) == 3


@pytest.mark.parametrize("method", ["mixoe", "logit_mixoe"])
def test_joint_updates_once_from_every_input_of_the_step(method):
    model, frozen, r0, x, xo = _step(method, "joint")
    x_mix = 0.3 * x + 0.7 * xo
    batch = torch.cat([x, x_mix, xo] if method == "mixoe" else [x, xo, x_mix])
    mean, var = _expected(*r0, [batch], frozen)
    assert torch.allclose(model.stem[1].running_mean.double(), mean, atol=1e-5)
    assert torch.allclose(model.stem[1].running_var.double(), var, atol=1e-4)
    assert int(model.stem[1].num_batches_tracked) == 1


@pytest.mark.parametrize("method", ["oe", "logit_mixoe"])
def test_id_stats_runs_separate_forwards_so_only_running_statistics_differ(method):
    """id-stats and separate share their forwards (the ID batch normalised by its own
    statistics, as at evaluation): the same loss, other running statistics."""
    def run(bn):
        torch.manual_seed(0)
        model = SmallResNet(3).train()
        x, xo = torch.randn(4, 1, 8, 8), 2 + torch.randn(8, 1, 8, 8)
        cfg = RunConfig(method=method, lc=method != "oe", bn=bn).resolved()
        loss, _ = objective(model, cfg, 3, x, torch.tensor([0, 1, 2, 0]), xo, 0.4)
        return loss.item(), model.stem[1].running_mean.clone()
    (l_sep, r_sep), (l_id, r_id), (l_joint, _) = run("separate"), run("id-stats"), run("joint")
    assert l_sep == pytest.approx(l_id, rel=1e-6)
    assert l_joint != pytest.approx(l_id, rel=1e-4)
    assert not torch.allclose(r_sep, r_id)


def test_frozen_running_stats_leaves_statistics_and_counter_even_on_error():
    model = SmallResNet(3).train()
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "tracked" in k}
    with frozen_running_stats(model):
        model(torch.randn(4, 1, 8, 8))
    with pytest.raises(RuntimeError), frozen_running_stats(model):
        model(torch.randn(4, 3, 8, 8))          # wrong channels: the forward fails midway
    after = model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())
    assert model.stem[1].momentum == M      # restored


def test_recalibrate_gives_id_statistics_and_keeps_rng():
    torch.manual_seed(0)
    model = SmallResNet(3).eval()
    data = [(torch.randn(1, 8, 8) * 2 + 1, 0, i) for i in range(64)]
    state = torch.get_rng_state()
    batches = recalibrate(model, data, "cpu", batch_size=16, seed=3)
    assert batches == 4 and not model.training
    assert torch.equal(torch.get_rng_state(), state)
    x = torch.stack([d[0] for d in data])
    mean, _ = _stem_stats(model, x)
    # cumulative average of equal-size batch means = the mean over the whole set
    assert np.allclose(model.stem[1].running_mean.double().numpy(), mean.numpy(), atol=1e-5)
    assert model.stem[1].momentum == M


def test_run_identity_keeps_names_of_runs_made_before_bn_and_marks_the_new_joint_forward():
    d = RunConfig(method="mixoe", lc=True).resolved().identity()
    assert d["batching"] == "separate" and "bn" not in d and "lc_mode" not in d
    assert RunConfig(method="logit_mixoe", lc=True, lc_mode="norm").resolved().identity()["lc_mode"] == "norm"
    joint_sep = RunConfig(method="logit_mixoe", id_forward="separate").resolved().identity()
    assert joint_sep["joint_id_forward"] is True
    assert "joint_id_forward" not in RunConfig(method="logit_mixoe").resolved().identity()
    legacy = {k: v for k, v in RunConfig(method="oe").to_dict().items() if k != "bn"}
    old = RunConfig.from_dict({**legacy, "batching": "joint"})
    assert old.bn == "joint"            # a checkpoint written before --bn still loads
