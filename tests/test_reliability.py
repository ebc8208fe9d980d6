"""Resume after SIGKILL, atomic artifacts under random kills, clean failures, DDP (sweeps: test_sweep.py)."""
import errno
import json
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import fakes
from lmoe_viz import io as lio
from lmoe_viz import train as train_mod
from lmoe_viz.cli import main
from lmoe_viz.config import RunConfig
from lmoe_viz.errors import UserError
from lmoe_viz.models import load_checkpoint

PY = sys.executable


def _cli(*args):
    return [PY, "-m", "lmoe_viz.cli", *args]


def _metrics(d):
    return json.loads((Path(d) / "metrics.json").read_text())


@pytest.mark.slow
def test_sigkill_then_resume_equals_straight_run(tmp_path):
    args = ["pretrain", "--preset", "digits", "--epochs", "24", "--no-progress", "--device", "cpu"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run(_cli(*args, "--out", str(straight)), check=True, capture_output=True)
    proc = subprocess.Popen(_cli(*args, "--out", str(killed)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if _metrics(killed)["epoch"] >= 3:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    at_kill = load_checkpoint(killed / "checkpoint.pt")["epoch"]
    assert 3 <= at_kill < 24, "the run must be killed mid-way"
    subprocess.run(_cli(*args, "--out", str(killed)), check=True, capture_output=True)
    a, b = _metrics(straight), _metrics(killed)
    for key in ("accuracy", "auroc", "fpr95", "aupr_in", "steps"):
        assert a[key] == b[key], key
    assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]
    wa = load_checkpoint(straight / "checkpoint.pt")["model"]
    wb = load_checkpoint(killed / "checkpoint.pt")["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_finetune_resume_in_process_is_exact(tmp_path, digits_pretrained, stop_after_first_epoch):
    """Stop after epoch 1 (limit), continue to epoch 3: same as a straight 3-epoch run."""
    kw = dict(preset="digits", method="logit_mixoe", lc=True, alpha=0.5, mix_op="cutmix",
              init=str(digits_pretrained), device="cpu")
    straight = train_mod.train(RunConfig(epochs=3, **kw), tmp_path / "a", progress=False)
    stop_after_first_epoch(RunConfig(epochs=3, **kw), tmp_path / "b")
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["epoch"] == 1
    resumed = train_mod.train(RunConfig(epochs=3, **kw), tmp_path / "b", progress=False)
    assert (resumed["accuracy"], resumed["auroc"], resumed["fpr95"]) == \
        (straight["accuracy"], straight["auroc"], straight["fpr95"])
    assert _metrics(tmp_path / "a")["lambdas"] == _metrics(tmp_path / "b")["lambdas"]


def test_same_command_twice_gives_identical_metrics(tmp_path):
    args = ["pretrain", "--preset", "digits", "--epochs", "2", "--no-progress", "--device", "cpu"]
    assert main(args + ["--out", str(tmp_path / "1")]) == 0
    assert main(args + ["--out", str(tmp_path / "2")]) == 0
    a, b = _metrics(tmp_path / "1"), _metrics(tmp_path / "2")
    assert (a["accuracy"], a["auroc"], a["fpr95"]) == (b["accuracy"], b["auroc"], b["fpr95"])


WRITER = textwrap.dedent("""
    import sys, numpy as np
    from pathlib import Path
    from lmoe_viz import io
    kind, d = sys.argv[1], Path(sys.argv[2])
    if kind == "ckpt":
        import torch
        from lmoe_viz.models import save_checkpoint
    (d / "ready").write_text("1")
    for i in range(10**6):
        data = np.full(300_000, i, dtype=np.int64)
        if kind == "ckpt":
            save_checkpoint(d / "a.pt", {"model": {"w": torch.from_numpy(data)}, "arch": {}, "i": i})
        elif kind == "json":
            io.atomic_write_json(d / "a.json", {"i": i, "data": [i] * 20000})
        else:
            io.atomic_save(d / "a.npz", lambda buf: np.savez(buf, data=data, i=i))
""")


@pytest.mark.slow
def test_random_kills_never_leave_a_truncated_artifact(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    rng = random.Random(0)
    seen = {"ckpt": 0, "json": 0, "npz": 0}
    for trial in range(24):
        kind = ("ckpt", "json", "npz")[trial % 3]
        d = tmp_path / f"t{trial}"
        d.mkdir()
        proc = subprocess.Popen([PY, str(script), kind, str(d)])
        while not (d / "ready").exists() and proc.poll() is None:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        name = {"ckpt": "a.pt", "json": "a.json", "npz": "a.npz"}[kind]
        path = d / name
        if not path.exists():
            continue
        seen[kind] += 1
        if kind == "ckpt":
            ck = load_checkpoint(path)
            assert torch.all(ck["model"]["w"] == ck["i"])
        elif kind == "json":
            obj = json.loads(path.read_text())
            assert obj["data"] == [obj["i"]] * 20000
        else:
            with np.load(path) as z:
                assert np.all(z["data"] == int(z["i"]))
    assert sum(seen.values()) >= 12, seen     # most trials killed a writer mid-stream


def test_full_disk_keeps_the_previous_artifact(tmp_path, monkeypatch):
    path = tmp_path / "m.json"
    lio.atomic_write_json(path, {"v": 1})

    class Full:
        def __init__(self, *a, **k):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(lio, "open", Full, raising=False)
    with pytest.raises(UserError, match="disk full while writing .*m.json.*previous version is kept"):
        lio.atomic_write_json(path, {"v": 2})
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    real = train_mod.objective
    state = {"step": 0}

    def nan_at_step_15(*a, **k):
        loss, terms = real(*a, **k)
        state["step"] += 1
        return (loss * float("nan") if state["step"] == 15 else loss), terms
    monkeypatch.setattr(train_mod, "objective", nan_at_step_15)
    out = tmp_path / "nan"
    code = main(["pretrain", "--preset", "digits", "--epochs", "3", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "non-finite loss (nan) at epoch 2, step 15" in err
    assert "last good checkpoint" in err
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 1


def test_overwrite_replaces_a_run_of_another_config(tmp_path, capsys):
    out = str(tmp_path / "r")
    assert main(["pretrain", "--preset", "digits", "--epochs", "1", "--out", out, "--no-progress"]) == 0
    assert main(["pretrain", "--preset", "digits", "--epochs", "2", "--out", out, "--no-progress"]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert main(["pretrain", "--preset", "digits", "--epochs", "2", "--out", out, "--no-progress",
                 "--overwrite"]) == 0
    assert _metrics(out)["epoch"] == 2


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tmp_path):
    out = tmp_path / "ddp"
    cmd = [PY, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "lmoe_viz.cli",
           "finetune", "--preset", "digits", "--device", "cpu", "--no-progress", "--method", "mixoe",
           "--lc", "--epochs", "1", "--out", str(out)]
    pre = tmp_path / "pre"
    subprocess.run([PY, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
                    "lmoe_viz.cli", "pretrain", "--preset", "digits", "--device", "cpu", "--epochs", "2",
                    "--no-progress", "--out", str(pre)], check=True, capture_output=True, timeout=300)
    m = _metrics(pre)
    assert m["world_size"] == 2 and m["finished"]
    # rank 0 reports the whole test set, gathered from both ranks' shards in order
    # (within the range the oracle's logits allow at fakes.LOGIT_TOL: the shards run other batch
    # shapes and oneDNN kernels than the one-process oracle, and this near-uniform model packs
    # MSPs so close that float noise reorders a few pairs; a missing, duplicated or reordered
    # shard, or a shard evaluated with its own BatchNorm statistics, falls outside the range)
    fakes.assert_msp_matches(m, pre / "checkpoint.pt")
    # each process takes half of the ID data per epoch: 717 // 2 // 64 steps
    assert m["steps"] == 2 * (358 // 64)
    subprocess.run(cmd + ["--init", str(pre / "checkpoint.pt")], check=True, capture_output=True, timeout=300)
    ft = _metrics(out)
    assert ft["world_size"] == 2 and ft["finished"]
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "metrics.json", "tensorboard"]


def test_json_writes_arrays_tensors_and_scalars_as_their_values(tmp_path):
    """numpy arrays and torch tensors become lists, their scalars (and size-1 arrays, as
    files written before hold them) numbers."""
    import json

    import numpy as np
    import torch

    from lmoe_viz import io as lio
    path = tmp_path / "v.json"
    lio.atomic_write_json(path, {"a": np.arange(3), "t": torch.tensor([[1.5, 2.0]]),
                                 "s": np.float32(0.25), "z": torch.tensor(7), "one": np.ones(1)})
    assert json.loads(path.read_text()) == {"a": [0, 1, 2], "t": [[1.5, 2.0]], "s": 0.25,
                                            "z": 7, "one": 1.0}
