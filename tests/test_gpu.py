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
