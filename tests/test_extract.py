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
