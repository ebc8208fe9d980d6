"""The training loop's pieces (train.py, runtime.py): evaluation only where used, the
device-side non-finite watch on every rank, sharded evaluation, resume guards, a kill
between the checkpoint and metrics.json, the run identity of the new options, loader
workers, compile, the TensorBoard curves and the paper path with the tensor decode (the
data caches and decoders are tested in tests/data/)."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import fakes
from lmoe_viz import runtime
from lmoe_viz import train as train_mod
from lmoe_viz.config import RunConfig
from lmoe_viz.errors import TrainingError, UserError
from lmoe_viz.extract import predict, predict_all
from lmoe_viz.models import SmallResNet, load_checkpoint
from lmoe_viz.train import NonFiniteWatch, run_identity, train


def _metrics(d):
    return json.loads((Path(d) / "metrics.json").read_text())


def test_test_sets_are_evaluated_once_unless_eval_every(tmp_path):
    cfg = RunConfig(preset="digits", epochs=3, device="cpu")
    once = train(cfg, tmp_path / "once", progress=False)
    curve = train(RunConfig(preset="digits", epochs=3, device="cpu", eval_every=1),
                  tmp_path / "curve", progress=False)
    h_once, h_curve = _metrics(tmp_path / "once")["history"], _metrics(tmp_path / "curve")["history"]
    assert not any("accuracy" in h for h in h_once)
    assert all("accuracy" in h and "auroc" in h for h in h_curve)
    # an epoch's time is its training plus its evaluation (each rounded to 1 ms), and an
    # epoch that evaluates spends time on it
    for h in h_once + h_curve:
        assert h["seconds"] == pytest.approx(h["train_seconds"] + h["eval_seconds"], abs=0.0021)
    assert all(h["eval_seconds"] > 0 for h in h_curve)
    # evaluating changes nothing that is trained, and the same run name serves both
    assert [h["train_loss"] for h in h_once] == [h["train_loss"] for h in h_curve]
    assert once["accuracy"] == curve["accuracy"] == h_curve[-1]["accuracy"]
    assert once["run_hash"] == curve["run_hash"]


def test_watch_names_the_first_non_finite_step_without_reading_each_step():
    w = NonFiniteWatch("cpu")
    for step, v in enumerate([1.0, 2.0, float("inf"), float("nan"), 3.0], 1):
        w.update(torch.tensor(v), step)
    with pytest.raises(TrainingError, match=r"non-finite loss \(inf\) at epoch 4, step 3;"):
        w.check(3, "somewhere")
    ok = NonFiniteWatch("cpu")
    ok.update(torch.tensor(0.5), 1)
    ok.check(0, "somewhere")


def _rank_main(rank, world, init, out):
    dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        model = SmallResNet(3).eval()
        data = torch.utils.data.TensorDataset(torch.randn(11, 1, 8, 8), torch.arange(11),
                                              torch.arange(11))
        got = predict_all(model, data, "cpu")
        w = NonFiniteWatch("cpu")
        for step in range(1, 9):
            w.update(torch.tensor(float("nan") if rank == 1 and step >= 6 else 1.0), step)
        try:
            w.check(1, "runs/x")
            msg = "no error"
        except TrainingError as exc:
            msg = str(exc)
        torch.save({"logits": got["logits"], "ids": got["ids"], "msg": msg}, f"{out}{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ranks_stop_alike_and_sharded_evaluation_equals_one_process(tmp_path):
    """A non-finite loss on rank 1 only: both ranks raise the same message (no rank is
    left waiting in a collective); the gathered evaluation is the one-process result."""
    mp.spawn(_rank_main, args=(2, tmp_path / "init", tmp_path / "rank"), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert r0["msg"] == r1["msg"] and "non-finite loss (nan) at epoch 2, step 6" in r0["msg"]
    torch.manual_seed(0)
    model = SmallResNet(3).eval()
    data = torch.utils.data.TensorDataset(torch.randn(11, 1, 8, 8), torch.arange(11), torch.arange(11))
    ref = predict(model, data, "cpu")
    for r in (r0, r1):
        assert np.array_equal(r["ids"], np.arange(11))
        # shards run other batch shapes (other oneDNN kernels) than the one-process reference
        np.testing.assert_allclose(r["logits"], ref["logits"], rtol=0, atol=fakes.LOGIT_TOL)


def test_resume_on_another_world_size_is_refused_unless_allowed(tmp_path, stop_after_first_epoch):
    cfg = RunConfig(preset="digits", epochs=2, device="cpu")
    out = tmp_path / "r"
    stop_after_first_epoch(cfg, out)
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["runtime"] == {"world_size": 1, "device": "cpu"}
    ckpt["runtime"]["world_size"] = 4                  # as if started by torchrun on 4 GPUs
    torch.save(ckpt, out / "checkpoint.pt")
    with pytest.raises(UserError, match="was trained with world_size 4; this run has world_size 1: "
                                        "resume it as it began or pass --allow-resume-change"):
        train(cfg, out, progress=False)
    assert train(cfg, out, progress=False, allow_resume_change=True)["epoch"] == 2


def test_another_batch_size_names_both_values(tmp_path):
    out = tmp_path / "r"
    train(RunConfig(preset="digits", epochs=1, device="cpu"), out, progress=False)
    with pytest.raises(UserError, match=r"batch_size 64 there, 32 here"):
        train(RunConfig(preset="digits", epochs=1, device="cpu", batch_size=32), out, progress=False)


def test_kill_between_checkpoint_and_metrics_is_repaired(tmp_path, monkeypatch):
    cfg = RunConfig(preset="digits", epochs=2, device="cpu")
    out = tmp_path / "r"
    real = train_mod.atomic_write_json

    def die_on_the_final_write(path, obj):
        if obj.get("finished"):
            raise KeyboardInterrupt         # the kill: the checkpoint is written, metrics not
        real(path, obj)
    with monkeypatch.context() as m:
        m.setattr(train_mod, "atomic_write_json", die_on_the_final_write)
        with pytest.raises(KeyboardInterrupt):
            train(cfg, out, progress=False)
    assert load_checkpoint(out / "checkpoint.pt")["finished"] and not _metrics(out)["finished"]
    final = train(cfg, out, progress=False)
    m = _metrics(out)
    assert m["finished"] and m["accuracy"] == final["accuracy"] and len(m["history"]) == 2


def test_new_options_enter_the_run_name_only_when_they_change_what_is_trained():
    base = RunConfig(preset="bird", data_root="x").resolved()
    assert run_identity(base) == run_identity(RunConfig(preset="bird", compile=True, eval_every=2,
                                                        data_root="x").resolved())
    assert run_identity(RunConfig(preset="bird", decode="draft", data_root="x").resolved()) != run_identity(base)
    assert "decode" not in base.identity()
    with pytest.raises(UserError, match="--decode draft applies to the paper presets"):
        RunConfig(preset="digits", decode="draft").resolved()


def test_loader_workers_are_capped_by_the_cpus(monkeypatch):
    monkeypatch.setattr(runtime, "available_cpus", lambda: 2)
    assert runtime.default_workers(8) == 1 and runtime.default_workers(0) == 0
    monkeypatch.setattr(runtime, "available_cpus", lambda: 32)
    assert runtime.default_workers(8) == 8


@pytest.mark.slow
def test_compiled_network_trains_like_the_eager_one(tmp_path, digits_pretrained):
    """--compile (torch.compile, here on CPU) runs the fine-tuning path, hidden-layer calls
    and BatchNorm freezing included, and lands where the eager run does."""
    kw = dict(preset="digits", method="logit_mixoe", lc=True, bn="id-stats", epochs=1,
              limit_batches=3, device="cpu", init=str(digits_pretrained))
    eager = train(RunConfig(**kw), tmp_path / "eager", progress=False)
    compiled = train(RunConfig(**kw, compile=True), tmp_path / "compiled", progress=False)
    assert compiled["run_hash"] == eager["run_hash"]
    assert abs(compiled["accuracy"] - eager["accuracy"]) <= 2.0
    assert abs(compiled["auroc"] - eager["auroc"]) <= 0.02


def _scalars(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(Path(run_dir) / "tensorboard"))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_curves_beside_metrics_survive_a_resume(tmp_path, monkeypatch):
    """Read back with TensorBoard's own reader: one point per epoch, the final metrics, and
    after a kill and resume no epoch twice. The kill comes as epoch 2's checkpoint is
    written (its curves are logged, its checkpoint is not): the resume redoes epoch 2."""
    cfg = RunConfig(preset="digits", epochs=3, device="cpu", eval_every=2)
    out = tmp_path / "r"
    real, calls = train_mod.save_checkpoint, {"n": 0}

    def kill_at_the_second(path, payload):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        real(path, payload)
    with monkeypatch.context() as m:
        m.setattr(train_mod, "save_checkpoint", kill_at_the_second)
        with pytest.raises(KeyboardInterrupt):
            train(cfg, out, progress=False)
    final = train(cfg, out, progress=False)
    sc, m = _scalars(out), _metrics(out)
    steps = [h for h in m["history"]]
    assert [v for _, v in sc["train/loss"]] == pytest.approx([h["train_loss"] for h in steps], rel=1e-6)
    assert len(sc["train/lr"]) == 3 and len(sc["test/accuracy"]) == 1      # epoch 2 only
    assert sc["final/accuracy"] == [(final["steps"], pytest.approx(final["accuracy"]))]


def test_paper_preset_trains_with_tensor_decode(tmp_path):
    """The whole paper path at 32 px with --decode tensor: splits, loaders, a step."""
    from lmoe_viz.data import build_splits
    fakes.aircraft(tmp_path)
    from lmoe_viz.datacmd import build_info_cmd
    build_info_cmd("aircraft", str(tmp_path))
    cfg = RunConfig(preset="aircraft", data_root=str(tmp_path), image_size=32, decode="tensor",
                    weights="none", epochs=1, limit_batches=1, batch_size=4, device="cpu",
                    select="last", num_workers=0)
    x, y, _ = build_splits(cfg.resolved()).id_train[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    out = train(cfg, tmp_path / "run", progress=False)
    assert out["config"]["decode"] == "tensor" and out["steps"] == 1


def test_loaded_optimizer_buffers_take_their_parameters_layout():
    """A checkpoint written with contiguous momentum buffers, resumed where the network is
    channels_last (CUDA): each buffer gets its parameter's strides (CUDA's fused SGD
    refuses mixed strides), with the same values."""
    import torch

    from lmoe_viz.train import _buffers_like_params
    conv = torch.nn.Conv2d(3, 4, 3).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(conv.parameters(), lr=0.1, momentum=0.9)
    saved = {"state": {0: {"momentum_buffer": torch.arange(108.).reshape(4, 3, 3, 3)},
                       1: {"momentum_buffer": torch.ones(4)}},
             "param_groups": opt.state_dict()["param_groups"]}
    opt.load_state_dict(saved)
    assert opt.state[conv.weight]["momentum_buffer"].stride() != conv.weight.stride()
    _buffers_like_params(opt)
    buf = opt.state[conv.weight]["momentum_buffer"]
    assert buf.stride() == conv.weight.stride() and torch.equal(buf, torch.arange(108.).reshape(4, 3, 3, 3))


def test_each_ddp_rank_draws_its_own_noise_and_rank_0_keeps_the_seed():
    from lmoe_viz.runtime import epoch_seed, rank_seed
    s = epoch_seed(3, 2)
    assert rank_seed(s, 0) == s
    assert len({rank_seed(s, r) for r in range(8)}) == 8


def test_every_epoch_is_seeded_through_rank_seed(tmp_path, monkeypatch):
    """train.py seeds each epoch with rank_seed(epoch_seed(seed, epoch), rank), so DDP ranks
    draw their own noise; fails if the loop stops passing its rank through."""
    import lmoe_viz.train as T
    from lmoe_viz.runtime import epoch_seed, rank_seed
    calls, seeded = [], []
    monkeypatch.setattr(T, "rank_seed", lambda s, r: calls.append((s, r)) or rank_seed(s, r) + 0)
    real = T.seed_everything
    monkeypatch.setattr(T, "seed_everything", lambda s: seeded.append(s) or real(s))
    T.train(RunConfig(preset="digits", epochs=2, limit_batches=1, device="cpu", seed=3),
            tmp_path / "r", progress=False)
    assert calls == [(epoch_seed(3, 0), 0), (epoch_seed(3, 1), 0)]
    assert set(seeded) >= {rank_seed(s, r) for s, r in calls}
