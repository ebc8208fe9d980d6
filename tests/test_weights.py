"""Initial weights: a torchvision state dict loads into every stage but the head; ImageNet
comes from torchvision's cache or a clear offline error. Nothing downloads (conftest)."""
import pytest
import torch
import torchvision

import fakes
from lmoe_viz.cli import main
from lmoe_viz.errors import UserError
from lmoe_viz.io import file_sha256
from lmoe_viz.models import ResNet50
from lmoe_viz.weights import imagenet_file, load_initial_weights, weights_record


@pytest.fixture(scope="module")
def tv_state(tmp_path_factory):
    torch.manual_seed(3)
    net = torchvision.models.resnet50()
    path = tmp_path_factory.mktemp("w") / "rn50.pth"
    torch.save(net.state_dict(), path)
    return path, net.state_dict()


def test_state_dict_loads_all_but_the_head(tv_state):
    path, sd = tv_state
    model = ResNet50(num_classes=7)
    fc_before = model.fc.weight.clone()
    rec = weights_record(str(path))
    load_initial_weights(model, rec)
    assert rec == {"name": "file", "file": str(path), "sha256": file_sha256(path)}
    assert torch.equal(model.stem[0].weight, sd["conv1.weight"])
    assert torch.equal(model.stem[1].running_mean, sd["bn1.running_mean"])
    assert torch.equal(model.layer4[2].conv3.weight, sd["layer4.2.conv3.weight"])
    assert model.fc.out_features == 7 and torch.equal(model.fc.weight, fc_before)


def test_wrapped_and_prefixed_state_dicts(tv_state, tmp_path):
    _, sd = tv_state
    path = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, path)
    model = ResNet50(num_classes=3)
    load_initial_weights(model, weights_record(str(path)))
    assert torch.equal(model.layer1[0].conv1.weight, sd["layer1.0.conv1.weight"])


def test_other_architecture_refused(tmp_path):
    path = tmp_path / "rn18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    with pytest.raises(UserError, match=r"rn18.pth does not fit ResNet-50 .*torchvision resnet50"):
        load_initial_weights(ResNet50(num_classes=3), weights_record(str(path)))
    deeper = tmp_path / "rn101.pth"       # same block shapes, more blocks: still refused
    torch.save(torchvision.models.resnet101().state_dict(), deeper)
    with pytest.raises(UserError, match=r"rn101.pth does not fit ResNet-50 .*unexpected layer3\."):
        load_initial_weights(ResNet50(num_classes=3), weights_record(str(deeper)))
    (tmp_path / "junk.pth").write_bytes(b"not a state dict")
    with pytest.raises(UserError, match="cannot be read as a state dict"):
        load_initial_weights(ResNet50(num_classes=3), weights_record(str(tmp_path / "junk.pth")))
    with pytest.raises(UserError, match="weights file .*missing.pth not found"):
        weights_record(str(tmp_path / "missing.pth"))


def test_imagenet_from_torchvision_cache(tv_state):
    """MixOE's pretrained=True is IMAGENET1K_V1: read from $TORCH_HOME/hub/checkpoints."""
    url, cached = imagenet_file()
    assert url.endswith("resnet50-0676ba61.pth") and cached.name == "resnet50-0676ba61.pth"
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(tv_state[0].read_bytes())
    rec = weights_record("imagenet")
    assert rec["name"] == "IMAGENET1K_V1" and rec["sha256"] == file_sha256(tv_state[0])
    model = ResNet50(num_classes=5)
    load_initial_weights(model, rec)
    assert torch.equal(model.stem[0].weight, tv_state[1]["conv1.weight"])


def test_imagenet_offline_one_line(tmp_path, capsys):
    with pytest.raises(UserError, match=r"ImageNet weights resnet50-0676ba61.pth are not in .* "
                                        r"download https://.*resnet50-0676ba61.pth and put it at"):
        weights_record("imagenet")
    fakes.aircraft(tmp_path)
    fakes.webvision(tmp_path)
    assert main(["data", "build-info", "--preset", "aircraft", "--data-root", str(tmp_path)]) == 0
    out = tmp_path / "run"
    code = main(["pretrain", "--preset", "aircraft", "--data-root", str(tmp_path), "--out", str(out),
                 "--image-size", "32", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "or pass --weights PATH" in err
    assert not (out / "checkpoint.pt").exists()


def test_weights_option_scope(tmp_path, capsys):
    assert main(["pretrain", "--preset", "digits", "--weights", "imagenet", "--out",
                 str(tmp_path / "d")]) == 2
    assert "applies to the ResNet-50 presets" in capsys.readouterr().err
