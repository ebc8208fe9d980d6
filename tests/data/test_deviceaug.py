"""--augment device (data/deviceaug.py): the host path's parameters from the same seeds,
applied in batches; on the CPU PIL's pixels exactly; a named option."""
import numpy as np
import pytest
import torch
from PIL import Image

from lmoe_viz.config import RunConfig
from lmoe_viz.data.deviceaug import DevicePrep, augment_batch
from lmoe_viz.data.finegrained import IMAGENET_MEAN, IMAGENET_STD, transforms_for
from lmoe_viz.io import dict_hash

CROP = 48


def _photo(seed):
    rng = np.random.RandomState(seed)
    base = rng.rand(8, 8, 3) * 255                        # smooth colour fields, as photos
    img = Image.fromarray(base.astype(np.uint8)).resize((70, 60), Image.BILINEAR)
    return img


def test_device_batches_equal_the_pil_pipeline():
    from torchvision import transforms as T
    host = transforms_for(CROP, train=True)               # Resize(55), RandomCrop, flip, jitter
    prep = DevicePrep(CROP, T.Resize((55, 55)))
    imgs, items, ref = [_photo(i) for i in range(12)], [], []
    for i, img in enumerate(imgs):
        torch.manual_seed(1000 + i)
        ref.append(host(img))
        torch.manual_seed(1000 + i)
        items.append(prep(img))
    got = augment_batch(torch.stack([d["img"] for d in items]), torch.stack([d["params"] for d in items]),
                        CROP, IMAGENET_MEAN, IMAGENET_STD)
    ref = torch.stack(ref)
    std = torch.tensor(IMAGENET_STD)[None, :, None, None]
    diff = ((got - ref) * std * 255).abs()                # in grey levels
    assert got.shape == ref.shape == (12, 3, CROP, CROP)
    assert diff.max() < 1e-3, (diff.mean(), diff.max())       # bit for bit up to the float print
    assert torch.equal(got, ref)
    flips = [bool(d["params"][2]) for d in items]
    assert any(flips) and not all(flips)                   # the flips were drawn, both ways


def test_device_augmentation_is_a_named_option():
    host = RunConfig(preset="aircraft", method="mixoe").resolved()
    dev = RunConfig(preset="aircraft", method="mixoe", augment="device").resolved()
    assert dict_hash(host.identity()) != dict_hash(dev.identity())
    assert "augment" not in host.identity()                 # the default names nothing: old runs keep theirs
    from lmoe_viz.errors import UserError
    with pytest.raises(UserError, match="--augment device applies to the paper presets"):
        RunConfig(preset="digits", augment="device").resolved()
    with pytest.raises(UserError, match="--augment device applies"):
        RunConfig(preset="aircraft", decode="tensor", augment="device").resolved()


def test_training_with_device_augmentation_runs(tmp_path):
    import fakes
    from lmoe_viz.data.build_info import build_info
    from lmoe_viz.train import train
    fakes.aircraft(tmp_path)
    build_info("aircraft", tmp_path)
    fakes.webvision(tmp_path)
    kw = dict(preset="aircraft", data_root=str(tmp_path), image_size=32, epochs=1, limit_batches=2,
              batch_size=4, num_workers=0, device="cpu", weights="none")
    for decode in ("pil", "cached"):
        m = train(RunConfig(augment="device", decode=decode, **kw), tmp_path / f"pre_{decode}",
                  progress=False)
        assert m["epoch"] == 1 and np.isfinite(m["auroc"])
    ft = train(RunConfig(augment="device", method="mixoe", init=str(tmp_path / "pre_pil" / "checkpoint.pt"),
                         **{k: v for k, v in kw.items() if k != "weights"}), tmp_path / "ft", progress=False)
    assert ft["epoch"] == 1
