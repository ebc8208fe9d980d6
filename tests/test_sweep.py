"""`lmoe-viz sweep`: one Slurm job array after the pretraining (fake sbatch/sacct on PATH),
resubmission of unfinished cells only, --status, local resources, one-line failures."""
import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from submitit.core.utils import cloudpickle_dump, pickle_load

from lmoe_viz import jobs, sweep
from lmoe_viz import train as train_mod
from lmoe_viz.cli import main
from lmoe_viz.config import RunConfig
from lmoe_viz.errors import UserError

CELLS = ["oe_s0_bn-id-stats", "logit_mixoe_a1_s0_bn-id-stats", "logit_mixoe_lc_a1_s0_bn-id-stats"]

FAKE_SBATCH = """
import json, os, sys
log = os.environ["FAKE_SBATCH_LOG"]
n = len(open(log).readlines()) if os.path.exists(log) else 0
with open(log, "a") as fh:
    fh.write(json.dumps({"argv": sys.argv[1:], "script": open(sys.argv[-1]).read()}) + "\\n")
print(f"Submitted batch job {1000 + n}")
"""
FAKE_SACCT = """
import os
print("JobID|State|NodeList")
path = os.environ["FAKE_SACCT"]
if os.path.exists(path):
    print(open(path).read().strip())
"""


@pytest.fixture
def slurm(tmp_path, monkeypatch):
    """sbatch, srun and sacct on PATH: sbatch records its script and answers job 1000, 1001,
    ...; sacct reports the states set with ``states({...})``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("sbatch", FAKE_SBATCH), ("sacct", FAKE_SACCT), ("srun", "raise SystemExit(1)")):
        (bin_dir / name).write_text(f"#!{sys.executable}\n{body}")
        (bin_dir / name).chmod(0o755)
    log, states = tmp_path / "sbatch.log", tmp_path / "sacct.txt"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SBATCH_LOG", str(log))
    monkeypatch.setenv("FAKE_SACCT", str(states))
    return SimpleNamespace(
        calls=lambda: [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else [],
        states=lambda d: states.write_text("\n".join(f"{j}|{s}|node1" for j, s in d.items())))


def _sweep(out, *extra, finetune_epochs=1):
    return main(["sweep", "--preset", "digits", "--out", str(out), "--methods", "logit_mixoe",
                 "--lc", "both", "--alphas", "1", "--seeds", "0", "--pretrain-epochs", "1",
                 "--finetune-epochs", str(finetune_epochs), "--limit-batches", "2", *extra])


def _run_job(out, job_id):
    """Do what the cluster would: run the job's pickled submission."""
    return pickle_load(Path(out) / "runs" / "_submitit" / f"{job_id}_submitted.pkl").result()


def _jobs(out):
    return json.loads((Path(out) / "sweep.json").read_text())["jobs"]


def test_slurm_submits_one_array_after_pretraining_and_returns(tmp_path, slurm, capsys):
    out = tmp_path / "sw"
    assert _sweep(out, "--executor", "slurm", "--parallel", "2", "--gpus", "1") == 0
    pre, array = [c["script"] for c in slurm.calls()]          # two sbatch calls, no more
    for script in (pre, array):
        assert "#SBATCH --cpus-per-task=1" in script           # digits: 0 loader workers + 1
        assert "#SBATCH --gpus-per-node=1" in script and "#SBATCH --time=30" in script
    assert "--array" not in pre and "--dependency" not in pre
    assert "#SBATCH --array=0-2%2" in array                    # every cell, 2 at a time
    assert "#SBATCH --dependency=afterok:1000" in array
    assert "#SBATCH --kill-on-invalid-dep=yes" in array
    jobs = _jobs(out)
    assert jobs == {"pretrained": "1000", **{c: f"1001_{i}" for i, c in enumerate(CELLS)}}
    for cell in CELLS:                                         # each array task trains its cell
        cfg, run_dir = pickle_load(out / "runs" / "_submitit" / f"{jobs[cell]}_submitted.pkl").args
        assert Path(run_dir).name == cell
        assert cfg["init"] == str((out / "runs" / "pretrained" / "checkpoint.pt").resolve())
    text = capsys.readouterr().out
    assert "pretraining job 1000" in text and "job 1001" in text
    assert f"lmoe-viz sweep --status {out}" in text
    assert not list(out.glob("runs/*/metrics.json"))           # returned without waiting


def test_resubmitting_submits_only_unfinished_cells_not_queued(tmp_path, slurm):
    out = tmp_path / "sw"
    assert _sweep(out, "--executor", "slurm") == 0
    _run_job(out, "1000")                                      # pretraining and the OE cell ran
    _run_job(out, "1001_0")
    slurm.states({"1000": "COMPLETED", "1001_0": "COMPLETED", "1001_1": "FAILED",
                  "1001_2": "PENDING"})
    assert _sweep(out, "--executor", "slurm") == 0
    calls = slurm.calls()
    assert len(calls) == 3                                     # one new job: the failed cell
    script = calls[2]["script"]
    assert "--array" not in script and "--dependency" not in script   # pretraining is done
    _, run_dir = pickle_load(out / "runs" / "_submitit" / "1002_submitted.pkl").args
    assert Path(run_dir).name == CELLS[1]
    assert _jobs(out) == {CELLS[1]: "1002", CELLS[2]: "1001_2"}
    # everything queued or running: nothing is submitted twice
    slurm.states({"1001_2": "RUNNING", "1002": "PENDING"})
    assert _sweep(out, "--executor", "slurm") == 0
    assert len(slurm.calls()) == 3


def test_resubmitting_after_a_failed_pretraining_renews_everything(tmp_path, slurm):
    out = tmp_path / "sw"
    assert _sweep(out, "--executor", "slurm") == 0
    slurm.states({"1000": "FAILED", "1001_[0-2%8]": "CANCELLED by 0"})  # kill-on-invalid-dep
    assert _sweep(out, "--executor", "slurm") == 0
    calls = slurm.calls()
    assert len(calls) == 4 and "--array" not in calls[2]["script"]
    assert "#SBATCH --array=0-2%3" in calls[3]["script"]          # min(cells, --parallel 8)
    assert "#SBATCH --dependency=afterok:1002" in calls[3]["script"]


def _train_one_epoch_of(cfg_dict, run_dir, monkeypatch):
    """Train a run until its first epoch's metrics.json is written, then stop as a kill would."""
    real = train_mod.atomic_write_json

    def write_then_stop(path, obj):
        real(path, obj)
        raise KeyboardInterrupt
    with monkeypatch.context() as m:
        m.setattr(train_mod, "atomic_write_json", write_then_stop)
        with pytest.raises(KeyboardInterrupt):
            train_mod.train(RunConfig.from_dict(cfg_dict), run_dir, progress=False)


def test_status_shows_progress_and_gathers_the_table_when_done(tmp_path, slurm, capsys, monkeypatch):
    out = tmp_path / "sw"
    assert _sweep(out, "--executor", "slurm", "--metric-convention", "openood", finetune_epochs=2) == 0
    capsys.readouterr()
    assert main(["sweep", "--status", str(out)]) == 0
    text = capsys.readouterr().out
    assert "0 of 3 cells finished, 0 running, 3 pending, 0 failed" in text
    assert not (out / "tables").exists()
    _run_job(out, "1000")
    _run_job(out, "1001_0")
    cfg, run_dir = pickle_load(out / "runs" / "_submitit" / "1001_1_submitted.pkl").args
    _train_one_epoch_of(cfg, run_dir, monkeypatch)             # a cell half way
    cloudpickle_dump(("error", "Traceback (most recent call last):\n  ...\n"
                      "lmoe_viz.errors.TrainingError: non-finite loss"),
                     out / "runs" / "_submitit" / "1001_2_0_result.pkl")
    slurm.states({"1000": "COMPLETED", "1001_0": "COMPLETED", "1001_1": "RUNNING",
                  "1001_2": "FAILED"})
    assert main(["sweep", "--status", str(out)]) == 0
    lines = {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("  ")}
    assert lines["pretrained"].split()[1] == "finished" and lines[CELLS[0]].split()[1] == "finished"
    assert "running" in lines[CELLS[1]] and "epoch 1/2 done" in lines[CELLS[1]]
    assert "failed" in lines[CELLS[2]] and "TrainingError: non-finite loss" in lines[CELLS[2]]
    assert "1001_2_0_log.err" in lines[CELLS[2]]
    assert not (out / "tables").exists()                       # not every cell has finished
    (out / "runs" / "_submitit" / "1001_2_0_result.pkl").unlink()
    _run_job(out, "1001_1")                                    # resumes after epoch 1
    _run_job(out, "1001_2")
    slurm.states({"1001_1": "COMPLETED", "1001_2": "COMPLETED"})
    assert main(["sweep", "--status", str(out)]) == 0
    text = capsys.readouterr().out
    assert "3 of 3 cells finished, 0 running, 0 pending, 0 failed" in text
    md = (out / "tables" / "table1.md").read_text()
    assert "Logit MixOE w/ L_LC" in md and "Pretrained" in md and "OE" in md
    assert "metric convention `openood`" in md   # the convention the sweep was started with


def test_status_of_a_folder_without_a_sweep_is_one_line(tmp_path, capsys):
    assert main(["sweep", "--status", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sweep.json not found" in err


def test_slurm_without_slurm_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))                  # no srun, no sbatch
    assert _sweep(tmp_path / "sw", "--executor", "slurm") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "srun and sbatch" in err


def test_local_jobs_get_one_gpu_each_when_there_are_gpus(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    res = jobs.job_resources("local", "digits")
    assert res["gpus_per_node"] == 1 and res["timeout_min"] == 30 and res["cpus_per_task"] == 1
    assert [jobs.local_gpus(k, 1, 2) for k in range(3)] == [(0,), (1,), (0,)]
    assert jobs.local_gpus(1, 2, 4) == (2, 3)
    with pytest.raises(UserError, match="--gpus 3 per job, but this machine has 2"):
        jobs.job_resources("local", "digits", gpus=3)
    ex = jobs.make_executor("local", tmp_path / "logs", res)  # submitit shows the job its GPU
    ex.update_parameters(visible_gpus=jobs.local_gpus(1, 1, 2))
    assert ex.submit(os.getenv, "CUDA_VISIBLE_DEVICES").result() == "1"
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert jobs.job_resources("local", "digits")["gpus_per_node"] == 0


def test_run_local_gives_each_job_of_a_batch_its_own_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    seen = []

    class Ex:                                                  # records what each job would see
        def update_parameters(self, **kw):
            self.gpus = kw["visible_gpus"]

        def submit(self, fn, cfg, out):
            seen.append((Path(out).name, self.gpus))
            return SimpleNamespace(job_id=str(len(seen)), exception=lambda: None)
    cfg = SimpleNamespace(to_dict=dict)
    todo = [(n, cfg, Path(n)) for n in ("pretrained", "a", "b", "c")]
    assert sweep.run_local(Ex(), {"gpus_per_node": 1}, todo, 2, {}, lambda: None) == []
    assert seen == [("pretrained", (0,)), ("a", (0,)), ("b", (1,)), ("c", (0,))]


def test_resources_follow_the_preset():
    bird = jobs.job_resources("slurm", "bird", partition="gpu", parallel=4)
    assert bird["gpus_per_node"] == 1 and bird["cpus_per_task"] == 9       # 8 loader workers
    assert bird["timeout_min"] == jobs.PAPER_TIMEOUT_MIN
    assert bird["slurm_partition"] == "gpu" and bird["slurm_array_parallelism"] == 4
    assert jobs.job_resources("slurm", "digits")["gpus_per_node"] == 0
    assert jobs.default_timeout_min("fashion-mnist") == 120
    with pytest.raises(UserError, match="--parallel must be >= 1"):
        jobs.job_resources("slurm", "digits", parallel=0)


@pytest.mark.parametrize("executor", ["local", "debug"])
def test_a_failed_pretraining_is_one_line(tmp_path, monkeypatch, capsys, executor):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)   # debug runs in this process
    assert main(["sweep", "--preset", "digits", "--out", str(tmp_path / "sw"), "--methods", "mixoe",
                 "--lc", "off", "--alphas", "1", "--no-oe", "--device", "cuda", "--gpus", "0",
                 "--executor", executor]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "the pretraining job failed (UserError: --device cuda was asked for" in err
    if executor == "local":
        assert "_0_log.err" in err                                   # names the job's log


def test_local_sweep_on_digits(tmp_path, capsys):
    assert _sweep(tmp_path, "--parallel", "2") == 0
    assert "sweep: 3 cells" in capsys.readouterr().out
    md = (tmp_path / "tables" / "table1.md").read_text()
    assert "Logit MixOE w/ L_LC" in md and "OE" in md and "Pretrained" in md
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir() if not p.name.startswith("_"))
    # one BatchNorm regime for every cell (id-stats, as the notebooks), named in the folder
    assert runs == sorted(CELLS + ["pretrained"])
    assert "| Logit MixOE w/ L_LC | id-stats |" in md
    # resubmitting finds every cell finished and trains nothing
    mtime = (tmp_path / "runs" / "oe_s0_bn-id-stats" / "checkpoint.pt").stat().st_mtime_ns
    assert _sweep(tmp_path, "--executor", "debug") == 0
    assert (tmp_path / "runs" / "oe_s0_bn-id-stats" / "checkpoint.pt").stat().st_mtime_ns == mtime
    assert md.startswith("Protocol `holdout`, score `msp`, metric convention `ours`")
    assert _sweep(tmp_path, "--executor", "debug", "--metric-convention", "openood") == 0
    assert "metric convention `openood`" in (tmp_path / "tables" / "table1.md").read_text()
    assert _sweep(tmp_path, "--metric-convention", "auc") == 2
    assert "unknown --metric-convention 'auc'" in capsys.readouterr().err


def test_a_job_that_runs_out_of_time_is_requeued_with_its_arguments():
    # submitit calls checkpoint() on timeout / pre-emption and requeues what it returns;
    # train() then resumes the run folder after its last complete epoch
    again = sweep.TrainJob().checkpoint({"preset": "digits"}, "/runs/cell")
    assert isinstance(again.function, sweep.TrainJob) and again.args == ({"preset": "digits"}, "/runs/cell")
