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
    stamps = {f: f.stat().st_mtime_ns for f in (tmp_path / "cache").glob("*.npz")}
    again = extract(ck, cache_dir=tmp_path / "cache", parts=("id_test",), recalibrate_bn=True)
    assert np.array_equal(again["id_test"]["logits"], recal["id_test"]["logits"])
    # served from the cache: no file rewritten, none added
    assert {f: f.stat().st_mtime_ns for f in (tmp_path / "cache").glob("*.npz")} == stamps


def test_outlier_sample_size_keys_the_cache_and_is_a_sample(tmp_path, digits_pretrained):
    ck = tmp_path / "c.pt"
    ck.write_bytes(digits_pretrained.read_bytes())
    small = extract(ck, cache_dir=tmp_path / "cache", parts=("aux",), aux_limit=50)["aux"]
    large = extract(ck, cache_dir=tmp_path / "cache", parts=("aux",), aux_limit=500)["aux"]
    assert len(small["ids"]) == 50 and len(large["ids"]) == 500
    # a seeded sample spread over the outlier set, in its order, not its first rows
    assert list(small["ids"]) == sorted(small["ids"]) and small["ids"].max() > 1000
    assert not np.array_equal(small["ids"], np.arange(50))


def test_truncated_logit_cache_is_recomputed_with_a_warning(tmp_path, digits_pretrained):
    import pytest
    ck = tmp_path / "c.pt"
    ck.write_bytes(digits_pretrained.read_bytes())
    first = extract(ck, cache_dir=tmp_path / "cache", parts=("id_test",))
    (npz,) = (tmp_path / "cache").glob("*.npz")
    npz.write_bytes(npz.read_bytes()[:100])
    with pytest.warns(UserWarning, match="logit cache .* is unreadable"):
        again = extract(ck, cache_dir=tmp_path / "cache", parts=("id_test",))
    assert np.array_equal(again["id_test"]["logits"], first["id_test"]["logits"])
    assert np.load(npz)["id_test/logits"].shape == first["id_test"]["logits"].shape


def test_stratified_sample_reaches_every_class():
    from lmoe_viz.sampling import sample_rows
    labels = np.repeat(np.arange(200), 30)            # a test list sorted by class
    rows = sample_rows(len(labels), 400, labels=labels)
    assert len(rows) == 400 == len(set(rows)) and list(rows) == sorted(rows)
    assert set(labels[rows]) == set(range(200)) and np.bincount(labels[rows]).max() == 2
    assert np.array_equal(sample_rows(10, None), np.arange(10))
    assert np.array_equal(sample_rows(10, 3, seed=1), sample_rows(10, 3, seed=1))


def test_rewritten_fashion_files_under_the_same_root_are_not_served_stale(tmp_path, fashion_dir):
    """The cache key holds the idx files' content: new data in the same folder, new logits."""
    from fakes import write_idx
    from lmoe_viz.cli import main
    assert main(["pretrain", "--preset", "fashion-mnist", "--data-root", str(fashion_dir), "--epochs",
                 "1", "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    ck = tmp_path / "run" / "checkpoint.pt"
    first = extract(ck, cache_dir=tmp_path / "cache", parts=("id_test",), data_root=fashion_dir)
    x = np.full((60, 28, 28), 7, dtype=np.uint8)             # every test image replaced
    write_idx(fashion_dir / "t10k-images-idx3-ubyte.gz", x)
    again = extract(ck, cache_dir=tmp_path / "cache", parts=("id_test",), data_root=fashion_dir)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2
    assert not np.allclose(again["id_test"]["logits"], first["id_test"]["logits"])
