import numpy as np

from lmoe_viz.extract import extract
from lmoe_viz.models import load_checkpoint, save_checkpoint


def test_cache_reused_and_recomputed_on_change(tmp_path, digits_pretrained):
    ck = tmp_path / "c.pt"
    ck.write_bytes(digits_pretrained.read_bytes())
    res = extract(ck, cache_dir=tmp_path / "cache", parts=("id_test", "ood_test", "aux"), aux_limit=50)
    assert res["id_test"]["logits"].shape == (358, 6) and res["ood_test"]["labels"].min() == -1
    assert res["id_test"]["features"].shape[0] == 358 and len(res["aux"]["ids"]) == 50
    npz = list((tmp_path / "cache").glob("*.npz"))
    assert len(npz) == 1 and len(list((tmp_path / "cache").glob("*.json"))) == 1
    mtime = npz[0].stat().st_mtime_ns
    again = extract(ck, cache_dir=tmp_path / "cache", parts=("id_test", "ood_test", "aux"), aux_limit=50)
    assert npz[0].stat().st_mtime_ns == mtime
    assert np.array_equal(again["id_test"]["logits"], res["id_test"]["logits"])
    # a changed checkpoint gets a new cache entry with new logits
    c = load_checkpoint(ck)
    c["model"]["fc.bias"] += 1.0
    save_checkpoint(ck, c)
    changed = extract(ck, cache_dir=tmp_path / "cache", parts=("id_test", "ood_test", "aux"), aux_limit=50)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2
    assert np.allclose(changed["id_test"]["logits"], res["id_test"]["logits"] + 1.0, atol=1e-4)


def test_recalibrated_logits_have_their_own_cache_entry(tmp_path, digits_pretrained):
    """--recalibrate-bn changes the model, so its logits are cached apart, and equal a
    model whose BatchNorm statistics were recomputed by hand on the ID training images."""
    import torch

    from lmoe_viz.batchnorm import recalibrate
    from lmoe_viz.config import RunConfig
    from lmoe_viz.data import build_splits
    from lmoe_viz.extract import predict
    from lmoe_viz.models import model_from_checkpoint
    ck = tmp_path / "c.pt"
    ck.write_bytes(digits_pretrained.read_bytes())
    plain = extract(ck, cache_dir=tmp_path / "cache", parts=("id_test",))
    recal = extract(ck, cache_dir=tmp_path / "cache", parts=("id_test",), recalibrate_bn=True)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2
    assert not np.allclose(plain["id_test"]["logits"], recal["id_test"]["logits"])
    ckpt = load_checkpoint(ck)
    cfg = RunConfig.from_dict(ckpt["config"])
    splits = build_splits(cfg)
    model = model_from_checkpoint(ckpt)
    recalibrate(model, splits.id_train, "cpu", batch_size=cfg.batch_size, seed=cfg.seed)
    by_hand = predict(model, splits.id_test)
    assert np.allclose(by_hand["logits"], recal["id_test"]["logits"], atol=1e-5)
    again = extract(ck, cache_dir=tmp_path / "cache", parts=("id_test",), recalibrate_bn=True)
    assert np.array_equal(again["id_test"]["logits"], recal["id_test"]["logits"])
    assert torch.is_tensor(torch.as_tensor(again["id_test"]["logits"]))
