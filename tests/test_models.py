import pytest
import torch

from lmoe_viz.errors import UserError
from lmoe_viz.models import (ResNet50, SmallResNet, arch_spec, build_model, load_checkpoint,
                             model_from_checkpoint, save_checkpoint)


def test_staged_forward_equals_full_forward():
    torch.manual_seed(0)
    m = SmallResNet(5, channels=1).eval()
    x = torch.randn(3, 1, 8, 8)
    full, feat = m(x, return_features=True)
    assert full.shape == (3, 5) and feat.shape == (3, 128)
    for stage in ("input", "stem", "layer1", "layer2", "layer3", "layer4", "fc"):
        h = m(x, stop=stage) if stage != "input" else x
        assert torch.allclose(m(h, start=stage), full, atol=1e-5), stage


def test_resnet50_head_sized_from_split():
    m = build_model("resnet50", 7, 3)
    assert isinstance(m, ResNet50) and m.fc.out_features == 7 and m.fc.in_features == 2048
    with pytest.raises(UserError, match="unknown architecture 'vit'"):
        build_model("vit", 3, 3)


def _ckpt(tmp_path, num_classes=4):
    m = SmallResNet(num_classes)
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"model": m.state_dict(), "arch": arch_spec("small", num_classes, 1),
                           "config": {"preset": "digits"}, "epoch": 1})
    return path, m


def test_checkpoint_roundtrip_and_wrong_architecture(tmp_path):
    path, m = _ckpt(tmp_path)
    ck = load_checkpoint(path, expect=arch_spec("small", 4, 1))
    m2 = model_from_checkpoint(ck)
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), m2.state_dict().values()))
    with pytest.raises(UserError, match="this run needs .*same preset and split"):
        load_checkpoint(path, expect=arch_spec("small", 6, 1))
    ck["arch"] = arch_spec("small", 9, 1)
    with pytest.raises(UserError, match="do not fit a small network"):
        model_from_checkpoint(ck)


def test_missing_and_truncated_checkpoint(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_checkpoint(tmp_path / "none.pt")
    path, _ = _ckpt(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="corrupt or truncated"):
        load_checkpoint(path)
    torch.save({"weights": torch.zeros(1)}, path)
    with pytest.raises(UserError, match="not an lmoe-viz checkpoint"):
        load_checkpoint(path)


class _Payload:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_pickled_payload_is_refused_and_never_runs(tmp_path):
    target = tmp_path / "pwned.txt"
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "arch": {}, "evil": _Payload(str(target))}, path)
    assert not target.exists()
    with pytest.raises(UserError, match="pickled objects .* refused without running them"):
        load_checkpoint(path)
    assert not target.exists()
    # an unsafe load would have run it: the payload is real
    torch.load(path, weights_only=False)
    assert target.exists()
