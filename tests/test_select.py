"""Model selection (MixOE: the epoch with the best validation accuracy) and resume."""
import json

import pytest
import torch

import fakes
from lmoe_viz import train as train_mod
from lmoe_viz.config import RunConfig
from lmoe_viz.data.build_info import build_info
from lmoe_viz.errors import UserError
from lmoe_viz.extract import extract
from lmoe_viz.metrics import accuracy
from lmoe_viz.models import load_checkpoint


def test_track_best_keeps_the_earliest_of_equal_epochs():
    model = torch.nn.Linear(2, 2)
    state = {"best": None}
    for epoch, acc in ((1, 50.0), (2, 70.0), (3, 70.0), (4, 60.0)):
        with torch.no_grad():
            model.weight.fill_(epoch)
        train_mod._track_best(state, {"epoch": epoch, "val_accuracy": acc}, model, "best-val")
    assert state["best"]["epoch"] == 2 and torch.all(state["best"]["model"]["weight"] == 2)
    last = {"best": None}
    train_mod._track_best(last, {"epoch": 1, "val_accuracy": 1.0}, model, "last")
    assert last["best"] is None


@pytest.fixture(scope="module")
def aircraft_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("air")
    fakes.aircraft(root)
    fakes.webvision(root)
    build_info("aircraft", root)
    return root


@pytest.mark.slow
def test_best_val_is_kept_and_resume_is_exact(aircraft_root, tmp_path, stop_after_first_epoch):
    kw = dict(preset="aircraft", data_root=str(aircraft_root), image_size=32, epochs=3,
              limit_batches=2, batch_size=8, lr=0.05, weights="none", num_workers=0, device="cpu")
    straight = train_mod.train(RunConfig(**kw), tmp_path / "a", progress=False)
    hist = json.loads((tmp_path / "a" / "metrics.json").read_text())["history"]
    accs = [h["val_accuracy"] for h in hist]
    assert straight["select"] == "best-val"
    assert straight["selected_epoch"] == accs.index(max(accs)) + 1
    # the checkpoint holds the selected epoch's weights: its val accuracy is that epoch's
    val = extract(tmp_path / "a" / "checkpoint.pt", parts=("id_val",))["id_val"]
    assert accuracy(val["logits"], val["labels"]) == pytest.approx(straight["val_accuracy"])
    assert straight["val_accuracy"] == max(accs)
    # interrupted after epoch 1, resumed: the same selection and the same weights
    stop_after_first_epoch(RunConfig(**kw), tmp_path / "b")
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["best"]["epoch"] == 1
    resumed = train_mod.train(RunConfig(**kw), tmp_path / "b", progress=False)
    for key in ("selected_epoch", "val_accuracy", "accuracy", "auroc", "fpr95"):
        assert resumed[key] == straight[key], key
    wa = load_checkpoint(tmp_path / "a" / "checkpoint.pt")
    wb = load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    assert all(torch.equal(wa["model"][k], wb["model"][k]) for k in wa["model"])
    assert "model" not in wa["best"]           # a finished run drops the extra copy


def test_best_val_needs_a_val_split(tmp_path):
    with pytest.raises(UserError, match="--select best-val needs validation images.*--select last"):
        train_mod.train(RunConfig(preset="digits", select="best-val", epochs=1), tmp_path / "d",
                        progress=False)
