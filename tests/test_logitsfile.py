"""Logits from elsewhere (logitsfile.py): a file in the documented format gives the same
metrics as the checkpoint it was exported from, and every malformed file is one line."""
import json
import shutil

import numpy as np
import pytest

from lmoe_viz.cli import main
from lmoe_viz.evaluation import evaluate_checkpoint
from lmoe_viz.extract import extract


@pytest.fixture(scope="module")
def exported(tmp_path_factory, digits_pretrained):
    """A digits checkpoint and the .npz a user would export from it (our own extraction)."""
    d = tmp_path_factory.mktemp("export")
    ck = d / "checkpoint.pt"
    shutil.copy(digits_pretrained, ck)
    import torch
    state = torch.load(ck, map_location="cpu", weights_only=True)["model"]
    r = extract(ck, parts=("id_test", "ood_test", "id_train_fit"))
    arrays = {"id_logits": r["id_test"]["logits"], "id_labels": r["id_test"]["labels"],
              "ood_logits": r["ood_test"]["logits"], "id_features": r["id_test"]["features"],
              "ood_features": r["ood_test"]["features"],
              "train_logits": r["id_train_fit"]["logits"],
              "train_features": r["id_train_fit"]["features"],
              "train_labels": r["id_train_fit"]["labels"],
              "fc_weight": state["fc.weight"].numpy(), "fc_bias": state["fc.bias"].numpy()}
    np.savez(d / "model.npz", **arrays)
    return ck, d / "model.npz", arrays


@pytest.mark.parametrize("score,convention", [("msp", "ours"), ("energy", "openood"),
                                              ("mahalanobis", "ours"), ("vim", "mixoe"),
                                              ("klmatching", "ours")])
def test_a_file_gives_the_checkpoints_numbers(exported, capsys, score, convention):
    ck, npz, _ = exported
    assert main(["evaluate", "--logits", str(npz), "--score", score,
                 "--metric-convention", convention]) == 0
    got = json.loads(capsys.readouterr().out)
    ref = evaluate_checkpoint(ck, score=score, convention=convention)
    for k in ("accuracy", "auroc", "fpr95", "aupr_in", "n_id", "n_ood"):
        assert got[k] == pytest.approx(ref[k], abs=1e-9), k
    assert got["protocol"] == "file" and got["metric_convention"] == convention
    assert (npz.parent / f"model_evaluate_{score}_{convention}.json").is_file()


def _fails(argv, match, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert match in err and len(err.strip().splitlines()) == 1, err


def test_malformed_files_and_mismatched_detectors_are_one_line(exported, tmp_path, capsys):
    _, npz, arrays = exported

    def write(**change):
        a = {k: v for k, v in {**arrays, **change}.items() if v is not None}
        np.savez(tmp_path / "x.npz", **a)
        return ["evaluate", "--logits", str(tmp_path / "x.npz")]
    _fails(write(ood_logits=arrays["ood_logits"][:, :3]), "ood_logits has shape", capsys)
    _fails(write(id_labels=arrays["id_labels"] + 10), "id_labels must be integers in 0..5", capsys)
    _fails(write(ood_features=None), "holds id_features without ood_features", capsys)
    _fails(write(id_logits=None), "lacks id_logits", capsys)
    _fails(write(extra=np.zeros(3)), "unknown arrays ['extra']", capsys)
    _fails(write(id_features=None, ood_features=None, fc_weight=None, fc_bias=None,
                 train_features=None) + ["--score", "knn"], "needs penultimate features", capsys)
    _fails(write(fc_weight=None, fc_bias=None) + ["--score", "vim"], "fc_weight and fc_bias", capsys)
    _fails(write(train_features=None, train_logits=None, train_labels=None) + ["--score", "rmd"],
           "is fitted on ID training data: add train_labels and train_features", capsys)
    _fails(["evaluate", "--logits", str(npz), "--score", "react"], "needs the activations of the network", capsys)
    _fails(["evaluate", "--logits", str(tmp_path / "none.npz")], "not found", capsys)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    _fails(["evaluate", "--logits", str(tmp_path / "bad.npz")], "is not a readable .npz", capsys)
    _fails(["evaluate", "--logits", str(npz), "--protocol", "paper"], "--protocol apply to checkpoints", capsys)
    _fails(["evaluate"], "needs exactly one of --checkpoint", capsys)
    _fails(["evaluate", "--logits", str(npz), "--checkpoint", str(npz)], "needs exactly one of", capsys)


def test_the_figures_take_a_files_logits_beside_the_grids(exported):
    """Notebooks 02 and 03 (parameter logits_files): figure_logits adds each file's model."""
    from lmoe_viz import plots
    from lmoe_viz.errors import UserError
    from lmoe_viz.grid import figure_logits
    ck, npz, arrays = exported
    logits = figure_logits({"Pretrained": ck.parent}, files={"my model": npz})
    assert list(logits) == ["Pretrained", "my model"]
    assert np.array_equal(logits["my model"][1], arrays["ood_logits"])
    fig = plots.norm_histogram_grid(logits)
    assert len([a for a in fig.axes if a.has_data()]) == 2
    with pytest.raises(UserError, match="is a model of the grid"):
        figure_logits({"Pretrained": ck.parent}, files={"Pretrained": npz})


def test_figure_scores_give_the_evaluated_scores_and_a_reason_for_a_file_that_cannot(exported, tmp_path):
    """Notebooks 02 and 03 (parameter detectors): the picker's detector scores of a run
    are the arrays evaluate computes its metrics from; a file without features says why."""
    from lmoe_viz.errors import UserError
    from lmoe_viz.grid import figure_scores
    from lmoe_viz.metrics import metrics_by_convention
    ck, npz, arrays = exported
    np.savez(tmp_path / "logits_only.npz", **{k: arrays[k] for k in ("id_logits", "id_labels", "ood_logits")})
    got = figure_scores({"Pretrained": ck.parent}, ["msp", "mahalanobis"],
                        files={"mine": npz, "bare": tmp_path / "logits_only.npz"})
    assert set(got["Pretrained"]) == {"mahalanobis"}          # msp: from the logits
    ref = evaluate_checkpoint(ck, score="mahalanobis")
    assert metrics_by_convention(*got["Pretrained"]["mahalanobis"])["auroc"] == pytest.approx(ref["auroc"], abs=1e-12)
    assert metrics_by_convention(*got["mine"]["mahalanobis"])["auroc"] == pytest.approx(ref["auroc"], abs=1e-9)
    assert "has none" in got["bare"]["mahalanobis"]
    with pytest.raises(UserError, match="unknown score or detector 'mahalanobys'"):
        figure_scores({"Pretrained": ck.parent}, ["mahalanobys"])


def test_network_detectors_in_the_explorers_take_the_notebooks_device_and_errors_come_first(exported, tmp_path):
    """`device = "auto"` (the notebooks' default) reaches a detector that runs the network
    as a device, not as a string; a wrong score or option is refused before any file is read."""
    from lmoe_viz.errors import UserError
    from lmoe_viz.grid import figure_scores
    from lmoe_viz.metrics import metrics_by_convention
    ck, _, _ = exported
    got = figure_scores({"Pretrained": ck.parent}, ["odin"], device="auto")["Pretrained"]["odin"]
    ref = evaluate_checkpoint(ck, score="odin", device="cpu")
    assert metrics_by_convention(*got)["auroc"] == pytest.approx(ref["auroc"], abs=1e-12)
    missing = tmp_path / "missing.pt"
    with pytest.raises(UserError, match="--recalibrate-bn applies to logit scores"):
        evaluate_checkpoint(missing, score="react", recalibrate_bn=True)
    with pytest.raises(UserError, match="unknown score or detector 'odim'"):
        evaluate_checkpoint(missing, score="odim")
