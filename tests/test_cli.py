"""End-to-end CLI on digits, and every bad input of the core: one line, exit 2, nothing overwritten."""
import json
import shutil

import pytest

import fakes

from lmoe_viz.cli import main


def test_end_to_end_digits(tmp_path, digits_pretrained, capsys):
    pre = json.loads((digits_pretrained.parent / "metrics.json").read_text())
    assert pre["accuracy"] > 80 and pre["num_classes"] == 6 and pre["finished"]
    out = tmp_path / "lm"
    assert main(["finetune", "--preset", "digits", "--init", str(digits_pretrained),
                 "--method", "logit_mixoe", "--lc", "--alpha", "0.5", "--epochs", "2",
                 "--out", str(out), "--no-progress"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert {"accuracy", "auroc", "fpr95", "aupr_in", "aupr_out"} <= set(m)
    # recomputed with scikit-learn from the checkpoint's logits (another process and batch
    # shape than the run's evaluation: equal within fakes.LOGIT_TOL per logit)
    fakes.assert_msp_matches(m, out / "checkpoint.pt")
    assert len(m["lambdas"]) == m["steps"] and all(0 < v < 1 for v in m["lambdas"])
    assert len(m["history"]) == 2 and "train_lc" in m["history"][0]
    capsys.readouterr()
    assert main(["evaluate", "--preset", "digits", "--checkpoint", str(out / "checkpoint.pt"),
                 "--score", "energy"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["score"] == "energy" and ev["accuracy"] == pytest.approx(m["accuracy"])
    assert (out / "evaluate_holdout_energy_ours.json").is_file()
    # rerunning a finished run does not retrain
    mtime = (out / "checkpoint.pt").stat().st_mtime_ns
    assert main(["finetune", "--preset", "digits", "--init", str(digits_pretrained),
                 "--method", "logit_mixoe", "--lc", "--alpha", "0.5", "--epochs", "2",
                 "--out", str(out), "--no-progress"]) == 0
    assert (out / "checkpoint.pt").stat().st_mtime_ns == mtime


def test_data_command(capsys):
    assert main(["data", "--preset", "digits"]) == 0
    out = capsys.readouterr().out
    assert "ID classes (split 0): [1, 2, 4, 6, 8, 9]" in out


def _fails(argv, match, capsys):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("lmoe-viz: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert match in err, err


def test_bad_inputs(tmp_path, digits_pretrained, capsys):
    ft = ["finetune", "--preset", "digits", "--init", str(digits_pretrained), "--out",
          str(tmp_path / "x"), "--no-progress"]
    _fails(ft + ["--method", "logit_mixoe", "--alpha", "0"], "alpha must be a finite number > 0", capsys)
    _fails(ft + ["--method", "mixoe", "--beta", "-1"], "beta must be a finite number >= 0", capsys)
    _fails(ft + ["--method", "mixoe", "--gamma", "-1"], "gamma must be a finite number >= 0", capsys)
    _fails(ft + ["--method", "mixoe", "--alpha", "inf"], "alpha must be a finite number > 0", capsys)
    # a device typo is refused, never evaluated on the CPU in silence
    _fails(["evaluate", "--checkpoint", str(digits_pretrained), "--device", "mps"],
           "unknown --device 'mps'; choose one of auto, cpu, cuda", capsys)
    _fails(ft + ["--method", "mixoe", "--beta", "nan"], "beta must be a finite number >= 0", capsys)
    _fails(ft + ["--method", "energy_oe", "--m-in=-inf"], "m_in must be a finite number", capsys)
    pre = ["pretrain", "--preset", "digits", "--out", str(tmp_path / "p"), "--no-progress"]
    _fails(pre + ["--split", "-1"], "split must be an integer in 0 .. 2**32 - 1, got -1", capsys)
    _fails(pre + ["--seed", str(2 ** 32)], "seed must be an integer in 0 .. 2**32 - 1", capsys)
    ft_at = ["finetune", "--preset", "digits", "--method", "oe", "--out", str(tmp_path / "x"),
             "--no-progress", "--init"]
    _fails(ft_at + [str(tmp_path / "missing.pt")], "missing.pt: no such checkpoint; pass the "
           "checkpoint.pt of a `lmoe-viz pretrain` run", capsys)
    _fails(ft_at + [str(digits_pretrained.parent)],
           f"is a folder, not a checkpoint; pass --init {digits_pretrained}", capsys)
    _fails(ft + ["--method", "vos"], "unknown method 'vos'", capsys)
    _fails(ft + ["--method", "oe", "--aux-root", str(tmp_path)], "--aux-root", capsys)
    assert not (tmp_path / "x").exists()
    _fails(["pretrain", "--preset", "cifar", "--out", str(tmp_path / "p")], "unknown preset 'cifar'", capsys)
    _fails(["pretrain", "--preset", "bird", "--out", str(tmp_path / "p")], "needs --data-root", capsys)
    _fails(["pretrain", "--preset", "bird", "--data-root", str(tmp_path / "nope"),
            "--out", str(tmp_path / "p")], "not found", capsys)
    _fails(["evaluate", "--checkpoint", str(digits_pretrained), "--score", "gram"],
           "unknown score or detector 'gram'", capsys)
    _fails(["evaluate", "--checkpoint", str(digits_pretrained), "--protocol", "ssb-easy"],
           "tests a run trained with --split ssb", capsys)
    _fails(["evaluate", "--checkpoint", str(tmp_path / "missing.pt")], "not found", capsys)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"PK\x03\x04 truncated")
    _fails(["evaluate", "--checkpoint", str(bad)], "corrupt or truncated", capsys)
    assert not (tmp_path / "x").exists() and not (tmp_path / "p").exists()


def test_fashion_missing(tmp_path, monkeypatch, capsys):
    from lmoe_viz.data import fashion
    monkeypatch.setattr(fashion, "DEBIAN_DIR", tmp_path / "no-debian")
    _fails(["data", "--preset", "fashion-mnist", "--data-root", str(tmp_path / "none")],
           "Fashion-MNIST not found", capsys)


def test_a_data_root_given_is_used_or_refused_never_replaced(tmp_path, fashion_dir, capsys):
    """Fashion-MNIST under --data-root, or one line: never the system copy instead."""
    from lmoe_viz.data import fashion
    (_, _, x_test, _), where = fashion.load(fashion_dir, download=False)
    assert where == str(fashion_dir) and len(x_test) == 60      # the 6 a class of the fake
    _fails(["pretrain", "--preset", "fashion-mnist", "--data-root", str(tmp_path / "nowhere"),
            "--out", str(tmp_path / "p"), "--no-progress"],
           f"Fashion-MNIST not found under --data-root {tmp_path / 'nowhere'}", capsys)
    assert not (tmp_path / "p").exists()


def test_an_earlier_download_is_found_where_it_was_put(tmp_path, fashion_dir, monkeypatch):
    """Without --data-root, the copy torchvision downloaded into ~/.cache/lmoe_viz is one of
    the places searched (after $LMOE_VIZ_FASHION_DIR and Debian's folder), not re-fetched."""
    import shutil

    from lmoe_viz.data import fashion
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LMOE_VIZ_FASHION_DIR", raising=False)
    monkeypatch.setattr(fashion, "DEBIAN_DIR", tmp_path / "no-debian")
    assert fashion.locate(None) is None
    raw = tmp_path / "home" / ".cache" / "lmoe_viz" / "FashionMNIST" / "raw"
    shutil.copytree(fashion_dir, raw)
    assert fashion.locate(None) == raw
    assert fashion.load(None, download=False)[1] == str(raw)


def test_wrong_architecture_init_and_other_run_in_out(tmp_path, fashion_dir, digits_pretrained, capsys):
    _fails(["finetune", "--preset", "fashion-mnist", "--data-root", str(fashion_dir),
            "--init", str(digits_pretrained), "--method", "oe", "--out", str(tmp_path / "f")],
           "this run needs", capsys)
    # --out holding a run of a different config is refused, and kept intact (a copy: the
    # session's shared run stays out of reach if the refusal ever broke)
    out = tmp_path / "pre"
    shutil.copytree(digits_pretrained.parent, out)
    before = (out / "checkpoint.pt").read_bytes()
    _fails(["pretrain", "--preset", "digits", "--out", str(out), "--epochs", "4", "--no-progress"],
           "holds a run of a different config", capsys)
    assert (out / "checkpoint.pt").read_bytes() == before


def test_out_where_no_folder_can_be_made_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    for argv in (["pretrain", "--preset", "digits", "--epochs", "1", "--no-progress"],
                 ["reproduce", "--preset", "digits", "--no-progress"]):
        assert main(argv + ["--out", str(blocker / "sub")]) == 2
        err = capsys.readouterr().err
        assert "cannot create folder" in err and "is a file" in err and "Traceback" not in err
        assert err.count("\n") == 1
    assert blocker.read_text() == "not a folder"


def test_evaluate_names_what_contradicts_the_checkpoint(tmp_path, digits_pretrained, capsys,
                                                        monkeypatch):
    ck = str(digits_pretrained)
    import lmoe_viz.models as models
    loads = []
    real = models.load_checkpoint

    def counting(path):
        loads.append(path)
        return real(path)
    monkeypatch.setattr("lmoe_viz.cli.load_checkpoint", counting)
    monkeypatch.setattr("lmoe_viz.extract.load_checkpoint", counting)
    assert main(["evaluate", "--checkpoint", ck, "--correct-quirks"]) == 2
    assert "--correct-quirks contradicts checkpoint" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", ck, "--split", "3"]) == 2
    assert "--split 3 contradicts checkpoint" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", ck, "--preset", "fashion-mnist"]) == 2
    assert "(preset 'digits')" in capsys.readouterr().err
    loads.clear()
    assert main(["evaluate", "--checkpoint", ck, "--preset", "digits", "--split", "0",
                 "--out", str(tmp_path / "m.json")]) == 0
    assert len(loads) == 1                  # checked and evaluated from one load
    metrics = digits_pretrained.parent / "metrics.json"
    assert main(["evaluate", "--checkpoint", str(metrics)]) == 2
    assert "is not a checkpoint" in capsys.readouterr().err
