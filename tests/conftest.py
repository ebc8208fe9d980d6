import os

import matplotlib
import numpy as np
import pytest

from fakes import write_idx

matplotlib.use("Agg")


@pytest.fixture(autouse=True, scope="session")
def _cache_home(tmp_path_factory):
    """Derived-data caches (io.cache_home) of the whole session in one temporary folder,
    shared with the CLI subprocesses the tests start, never the user's ~/.cache."""
    os.environ["LMOE_VIZ_CACHE"] = str(tmp_path_factory.mktemp("lmoe_viz_cache"))
    yield


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt
    plt.close("all")


@pytest.fixture
def fashion_dir(tmp_path):
    """A tiny Fashion-MNIST in the standard idx.gz format: 10 classes, 12 train, 6 test each."""
    rng = np.random.RandomState(0)
    d = tmp_path / "fmnist"
    d.mkdir()
    for split, n in (("train", 12), ("t10k", 6)):
        y = np.repeat(np.arange(10), n)
        x = (rng.rand(len(y), 28, 28) * 60).astype(np.uint8)
        for i, c in enumerate(y):       # a class-dependent bright bar: learnable
            x[i, 2 * c:2 * c + 3, :] = 250
        write_idx(d / f"{split}-images-idx3-ubyte.gz", x)
        write_idx(d / f"{split}-labels-idx1-ubyte.gz", y)
    return d


@pytest.fixture(scope="session")
def digits_pretrained(tmp_path_factory):
    """A short digits pretraining run shared by several tests."""
    from lmoe_viz.cli import main
    out = tmp_path_factory.mktemp("runs") / "pre"
    assert main(["pretrain", "--preset", "digits", "--out", str(out), "--epochs", "3",
                 "--no-progress"]) == 0
    return out / "checkpoint.pt"


@pytest.fixture(autouse=True)
def _no_downloads(tmp_path_factory, monkeypatch):
    """Nothing downloads in tests: an empty torch cache and a download that fails."""
    import urllib.error

    import torch
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch_home")))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("downloads are disabled in tests")
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)


@pytest.fixture
def stop_after_first_epoch(monkeypatch):
    """``run(cfg, out)``: train until the first checkpoint is written, then stop as a kill
    would (KeyboardInterrupt), leaving that checkpoint to resume from."""
    from lmoe_viz import train as train_mod

    def run(cfg, out):
        real, calls = train_mod.save_checkpoint, {"n": 0}

        def save_then_stop(path, payload):
            real(path, payload)
            calls["n"] += 1
            if calls["n"] == 1:
                raise KeyboardInterrupt
        with monkeypatch.context() as m:
            m.setattr(train_mod, "save_checkpoint", save_then_stop)
            with pytest.raises(KeyboardInterrupt):
                train_mod.train(cfg, out, progress=False)
    return run
