"""The CUDA path (bf16 autocast, channels_last); skipped on machines without a GPU."""
import pytest
import torch

import fakes

from lmoe_viz.config import RunConfig
from lmoe_viz.train import train

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_cuda_pretrain_and_logit_mixoe(tmp_path):
    pre = train(RunConfig(preset="digits", epochs=3, device="cuda"), tmp_path / "pre", progress=False)
    assert pre["accuracy"] > 50
    ft = train(RunConfig(preset="digits", method="logit_mixoe", lc=True, epochs=1, device="cuda",
                         init=str(tmp_path / "pre" / "checkpoint.pt")), tmp_path / "ft", progress=False)
    oracle = fakes.msp_oracle(tmp_path / "ft" / "checkpoint.pt")   # on CPU, float32
    assert ft["accuracy"] == pytest.approx(oracle["accuracy"], abs=1.0)      # bf16 on the GPU
    assert ft["auroc"] == pytest.approx(oracle["auroc"], abs=0.01)


def test_resnet50_bf16_step_channels_last():
    from lmoe_viz.models import build_model
    m = build_model("resnet50", 10, 3).cuda().to(memory_format=torch.channels_last)
    x = torch.randn(4, 3, 224, 224, device="cuda").contiguous(memory_format=torch.channels_last)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = m(x)
    assert out.dtype == torch.bfloat16 and out.shape == (4, 10)
    out.float().sum().backward()


def test_no_host_sync_inside_a_logit_mixoe_step():
    """The step's lambda and noise scalars stay on their side: with CUDA's sync debug mode
    set to error, the objective of Logit MixOE w/ L_LC and feature noise runs through."""
    from lmoe_viz.methods import objective
    from lmoe_viz.models import build_model
    cfg = RunConfig(preset="digits", method="logit_mixoe", lc=True, mix_layer="layer2",
                    id_forward="separate", mix_noise="both").resolved()
    m = build_model("small", 6, 1).cuda()
    x, y = torch.randn(8, 1, 8, 8, device="cuda"), torch.randint(0, 6, (8,), device="cuda")
    xo = torch.randn(8, 1, 8, 8, device="cuda")
    torch.cuda.set_sync_debug_mode("error")
    try:
        loss, terms = objective(m, cfg, 6, x, y, xo, lam=0.3)
        loss.backward()
    finally:
        torch.cuda.set_sync_debug_mode(0)


def test_resume_a_cpu_checkpoint_on_cuda(tmp_path, stop_after_first_epoch):
    """Momentum buffers written on the CPU take the channels_last layout of the CUDA
    parameters (fused SGD refuses mixed strides)."""
    stop_after_first_epoch(RunConfig(preset="digits", epochs=2, device="cpu"), tmp_path / "r")
    m = train(RunConfig(preset="digits", epochs=2, device="cuda"), tmp_path / "r", progress=False,
              allow_resume_change=True)
    assert m["epoch"] == 2 and (tmp_path / "r" / "metrics.json").is_file()


def test_compiled_step_matches_eager_on_cuda():
    """``--compile`` changes the speed, not what is trained: the compiled network's loss and
    gradients on one Logit MixOE w/ L_LC objective equal eager's within bf16 rounding."""
    from lmoe_viz.methods import objective
    from lmoe_viz.models import build_model
    cfg = RunConfig(preset="digits", method="logit_mixoe", lc=True).resolved()
    torch.manual_seed(0)
    eager = build_model("small", 6, 1).cuda()
    compiled = build_model("small", 6, 1).cuda()
    compiled.load_state_dict(eager.state_dict())
    compiled = torch.compile(compiled)
    x, y = torch.randn(16, 1, 8, 8, device="cuda"), torch.randint(0, 6, (16,), device="cuda")
    xo = torch.randn(16, 1, 8, 8, device="cuda")
    out = []
    for m in (eager, compiled):
        torch.manual_seed(1)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss, _ = objective(m, cfg, 6, x, y, xo, lam=0.3)
        loss.backward()
        grads = torch.cat([p.grad.flatten() for p in m.parameters() if p.grad is not None])
        out.append((loss.item(), grads))
    (l_e, g_e), (l_c, g_c) = out
    assert l_c == pytest.approx(l_e, rel=2e-2)
    assert torch.nn.functional.cosine_similarity(g_e, g_c, dim=0).item() > 0.99
