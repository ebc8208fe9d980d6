"""benchmarks/: every piece at its toy size on the CPU, so that none can rot.

These tests check the output's structure and that every ratio is finite and positive;
they set no timing thresholds (the machines running them are shared and noisy).
"""
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:           # benchmarks/ lives beside the package, not in it
    sys.path.insert(0, str(ROOT))

from benchmarks import gpu, report, step  # noqa: E402
from benchmarks.__main__ import PIECES, main  # noqa: E402
from benchmarks.reproduce import reproduce_piece  # noqa: E402
from benchmarks.timing import interleaved, medians  # noqa: E402

FIGURE_KEYS = {"piece", "name", "value", "unit", "basis", "target", "sense", "meets", "noise"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """One ``python -m benchmarks --tiny`` run (every piece), its JSON and its table."""
    out = tmp_path_factory.mktemp("bench")
    rc = main(["--tiny", "--results", str(out)])
    files = list(out.glob("*.json"))
    assert len(files) == 1
    data = json.loads(files[0].read_text())
    errors = [f"{f['piece']}: {f['basis']}" for f in data["figures"] if f["name"] == "error"]
    assert rc == 0 and not errors, errors
    return data, files[0]


def test_tiny_run_covers_every_piece_and_records_the_machine(tiny):
    data, path = tiny
    assert path.stem == data["machine"] == report.machine_slug("cpu")
    for key in ("torch", "torchvision", "device", "date", "cpu", "cores", "command",
                "settings", "figures", "details"):
        assert key in data, key
    assert set(data["settings"]) == set(PIECES)
    assert {f["piece"] for f in data["figures"]} == set(PIECES)
    for f in data["figures"]:
        assert set(f) == FIGURE_KEYS, f
        assert f["name"] != "error", f["basis"]
        assert f["unit"] and f["basis"]


def test_every_figure_is_finite_and_positive(tiny):
    data, _ = tiny
    for f in data["figures"]:
        v = f["value"]
        assert isinstance(v, (int, float)) and math.isfinite(v), f
        if f["piece"] == "epoch":       # the default run evaluates nothing per epoch: 0
            assert v >= 0, f
        else:
            assert v > 0, f


def test_step_figures_use_the_ideal_pass_counts(tiny):
    data, _ = tiny
    names = [f["name"] for f in data["figures"] if f["piece"] == "step"]
    assert [int(re.search(r"/ (\d) passes", n).group(1)) for n in names] == [2, 2, 3, 2, 3]
    assert all(f["target"] == 1.10 and f["sense"] == "<=" for f in data["figures"]
               if f["piece"] == "step")


def test_pipeline_reports_draft_speedup_and_workers(tiny):
    data, _ = tiny
    names = [f["name"] for f in data["figures"] if f["piece"] == "pipeline"]
    assert any("draft / pil" in n for n in names)
    workers = [f for f in data["figures"] if f["piece"] == "pipeline" and f["unit"] == "workers"]
    assert workers and all(isinstance(f["value"], int) and f["value"] >= 1 for f in workers)


def test_pipeline_reports_every_decode_and_the_cache_per_dataset(tiny):
    """pil, draft, tensor and cached at every size and split (cached and tensor as rates
    and over pil), the workers each needs, and each release's cache: its size from its
    image count (an independent oracle) and its build estimate."""
    from benchmarks.pipeline import RELEASE_IMAGES
    data, _ = tiny
    fig = {f["name"]: f for f in data["figures"] if f["piece"] == "pipeline"}
    sizes = {re.match(r"(\S+ \d+x\d+) train pil$", n).group(1) for n in fig
             if re.match(r"\S+ \d+x\d+ train pil$", n)}
    assert sizes
    for tag in sizes:
        for split in ("train", "test"):
            for d in ("pil", "draft", "tensor", "cached"):
                assert fig[f"{tag} {split} {d}"]["unit"] == "img/s/worker"
            for d in ("draft", "tensor", "cached"):
                r = fig[f"{tag} {split} {d} / pil"]["value"]
                assert r == pytest.approx(fig[f"{tag} {split} {d}"]["value"]
                                          / fig[f"{tag} {split} pil"]["value"], rel=1e-6)
    for d in ("pil", "draft", "tensor", "cached"):
        assert any(n.startswith("workers for CE") and n.endswith(f"({d})") for n in fig)
    resize = data["settings"]["pipeline"]["resize"]
    for dataset, n in RELEASE_IMAGES.items():
        assert fig[f"{dataset} cache size"]["value"] == pytest.approx(n * resize**2 * 3 / 2**30)
        assert fig[f"{dataset} cache build (estimate)"]["value"] > 0


def test_gpu_tiny_measures_each_method_and_the_supply(tiny):
    data, _ = tiny
    names = {f["name"] for f in data["figures"] if f["piece"] == "gpu"}
    for k in ("CE", "OE", "MixOE", "MixOE w/ L_LC", "Logit MixOE", "Logit MixOE w/ L_LC"):
        assert f"{k} b4 eager" in names and f"{k} data supply" in names
    assert data["settings"]["gpu"]["tiny"] is True


def test_table_lists_each_figure_and_its_basis():
    pieces = [report.Piece("p", [report.Figure("a ratio", 1.05, "x", "two timings", 1.1),
                                 report.Figure("a rate", 12345.0, "img/s", "a count")],
                           notes=["judged elsewhere"])]
    text = report.format_table(pieces)
    assert "a ratio" in text and "<= 1.10" in text and "yes" in text and "12,345" in text
    assert "[1] two timings" in text and "[2] a count" in text and "judged elsewhere" in text


def test_figure_meets_its_target():
    assert report.Figure("f", 1.2, "x", "b", 1.1, "<=").meets is False
    assert report.Figure("f", 0.95, "x", "b", 0.9, ">=").meets is True
    assert report.Figure("f", 3.0, "s", "b").meets is None
    assert report.Figure("f", float("nan"), "x", "b", 1.0).meets is None


def test_ideal_passes_of_each_method():
    got = {step.label(m, lc): step.ideal_passes(step.run_config("fashion-mnist", m, lc, 1))
           for m, lc in [("baseline", False)] + list(step.METHODS)}
    assert got == {"CE": 1, "OE": 2, "MixOE": 2, "MixOE w/ L_LC": 3, "Logit MixOE": 2,
                   "Logit MixOE w/ L_LC": 3}
    assert step.ideal_passes(step.run_config("fashion-mnist", "oe", False, 2)) == 3


def test_interleaved_times_each_variant_every_round():
    calls = []
    times = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                        rounds=3, warmup=1)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]
    assert set(medians(times)) == {"a", "b"} and all(len(v) == 3 for v in times.values())


def test_torch_threads_are_restored():
    import torch

    from benchmarks.timing import torch_threads
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_machine_slug_is_short_and_hostname_free():
    import socket
    s = report.machine_slug("cpu")
    assert re.fullmatch(r"cpu-[a-z0-9-]+-\d+c", s)
    assert socket.gethostname().lower() not in s


def test_reproduce_failure_names_the_command(tmp_path):
    with pytest.raises(RuntimeError, match="exited with 3"):
        reproduce_piece(command=lambda out: [sys.executable, "-c", "import sys; sys.exit(3)"],
                        workdir=tmp_path)


def test_gpu_cli_writes_its_own_file(tmp_path, monkeypatch):
    """``python -m benchmarks.gpu --tiny --results DIR``; the measuring is covered above."""
    fake = report.Piece("gpu", [report.Figure("CE b4 eager", 10.0, "img/s", "stub")])
    seen = {}

    def stub(**kw):
        seen.update(kw)
        return fake
    monkeypatch.setattr(gpu, "gpu_piece", stub)
    assert gpu.main(["--tiny", "--results", str(tmp_path)]) == 0
    assert seen["tiny"] is True and seen["device"] == "cpu"
    data = json.loads((tmp_path / f"{report.machine_slug('cpu')}-gpu.json").read_text())
    assert data["figures"][0]["name"] == "CE b4 eager"


def test_gpu_cli_without_a_gpu_says_what_to_do(capsys):
    import torch
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    assert gpu.main([]) == 2
    assert "--tiny" in capsys.readouterr().err


def test_make_bench_runs_the_benchmarks_with_its_arguments(tmp_path):
    """``make bench BENCH_ARGS=...`` runs ``python -m benchmarks`` with those arguments
    (make -n: what it would run, nothing run; the install step is stamped done)."""
    stamp = tmp_path / "stamp"
    stamp.touch()
    out = subprocess.run(["make", "-n", "-C", str(ROOT), "bench", f"STAMP={stamp}",
                          "BENCH_ARGS=--only step --tiny"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert re.search(r"-m benchmarks --only step --tiny\s*$", out.stdout, re.M), out.stdout


def test_a_failed_gpu_measurement_is_left_out_and_the_rest_is_reported(monkeypatch):
    """benchmarks.gpu: each figure reaches on_result as measured; one that fails (out of
    memory) is named and left out, the others are kept."""
    from benchmarks import gpu
    real = gpu.measure

    def flaky(cfg, *a, **k):
        if cfg.method == "oe":
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(cfg, *a, **k)
    monkeypatch.setattr(gpu, "measure", flaky)
    seen = []
    piece = gpu.gpu_piece(**gpu.tiny_kwargs(), on_result=lambda name, r: seen.append(name))
    names = [f.name for f in piece.figures]
    assert seen and all(not n.startswith("OE ") for n in seen)
    assert any(n.startswith("CE b4") for n in names) and not any(n.startswith("OE ") for n in names)


def test_gpu_compiles_only_the_named_methods_and_a_failed_compile_keeps_eager(monkeypatch):
    """torch.compile for the two target methods only (COMPILE_METHODS); CE's compiled run
    failing drops its compile figures, not its eager ones nor the other methods' ratios."""
    from benchmarks import gpu
    ran = []

    def fake(cfg, net, batch, device, steps, warmup, blocks=3, compile_model=False):
        k = gpu.label(cfg.method, cfg.lc)
        ran.append((k, compile_model))
        if k == "CE" and compile_model:
            raise RuntimeError("torch._dynamo.exc.BackendCompilerFailed: inductor")
        return {"batch": batch, "step_ms": 10.0, "images_per_s": batch / 0.01, "peak_gib": None,
                "warmup_s": 0.0, "compile": compile_model}
    monkeypatch.setattr(gpu, "measure", fake)
    monkeypatch.setattr(gpu, "supply_rate", lambda tiny, size: 100.0)
    kw = {**gpu.tiny_kwargs(), "compile_modes": (False, True)}
    piece = gpu.gpu_piece(**kw)
    assert sorted(k for k, c in ran if c) == sorted(gpu.COMPILE_METHODS)
    assert len([1 for k, c in ran if not c]) == 1 + len(gpu.METHODS)      # eager: every method
    names = {f.name for f in piece.figures}
    assert "CE b4 eager" in names and "CE b4 compile" not in names
    assert "Logit MixOE w/ L_LC b4 compile" in names and "OE b4 eager" in names
    assert "OE b4 compile" not in names
    assert any(n.startswith("Logit MixOE w/ L_LC / CE /") and n.endswith("b4 eager") for n in names)
    assert not any("/ CE /" in n and n.endswith("compile") for n in names)   # no CE to divide by


def test_gpu_compile_only_measures_the_compiled_methods_in_their_order(monkeypatch):
    """--compile-only (the device check's last step): compiled runs only, the target method
    first, every figure of theirs reported."""
    from benchmarks import gpu
    ran = []

    def fake(cfg, net, batch, device, steps, warmup, blocks=3, compile_model=False):
        ran.append((gpu.label(cfg.method, cfg.lc), compile_model))
        return {"batch": batch, "step_ms": 10.0, "images_per_s": batch / 0.01, "peak_gib": 1.5,
                "warmup_s": 0.0, "compile": compile_model}
    monkeypatch.setattr(gpu, "measure", fake)
    monkeypatch.setattr(gpu, "supply_rate", lambda tiny, size: 100.0)
    piece = gpu.gpu_piece(**{**gpu.tiny_kwargs(), "compile_modes": (True,)},
                          methods=["Logit MixOE w/ L_LC"])
    assert ran == [("Logit MixOE w/ L_LC", True), ("CE", True)]
    names = {f.name for f in piece.figures}
    assert {"Logit MixOE w/ L_LC b4 compile", "CE b4 compile", "CE b4 peak memory"} <= names
    assert any(n.startswith("Logit MixOE w/ L_LC / CE /") and n.endswith("compile") for n in names)


def test_gpu_cli_refuses_an_unknown_compile_method(capsys):
    from benchmarks import gpu
    assert gpu.main(["--tiny", "--compile-methods", "Logit-MixOE"]) == 2
    assert "unknown --compile-methods 'Logit-MixOE'" in capsys.readouterr().err


def test_a_failed_feed_option_is_named_and_the_others_reach_disk_as_measured(monkeypatch, capsys):
    from benchmarks import feed
    monkeypatch.setattr(feed, "write_release", lambda *a, **k: None)
    monkeypatch.setattr(feed, "train", lambda *a, **k: None)            # the pretraining

    def option(cfg, out_dir, batch, workers, steps):
        if cfg.augment == "device":
            raise RuntimeError("CUDA out of memory. Tried to allocate 1.00 GiB")
        return {"cache_build_s": 0.0, "loader_img_s": 50.0, "train_img_s": 25.0, "steps": steps}
    monkeypatch.setattr(feed, "_measure_option", option)
    seen = []
    piece = feed.feed_piece(device="cpu", image_size=32, batch=4, steps=2, workers=0, tiny=True,
                            on_result=lambda tag, d: seen.append(tag))
    assert seen == [f"{d}/{a}" for d, a in feed.OPTIONS if a != "device"]
    assert "[feed] cached/device failed: CUDA out of memory" in capsys.readouterr().err
    assert {f.name for f in piece.figures} >= {"pil/host supply / demand", "cached/host loader"}
    assert not any(f.name.startswith("cached/device") for f in piece.figures)


def test_the_prepared_device_check_fits_8_minutes_and_every_step_parses(monkeypatch):
    """benchmarks/device_check.sh: its limits (plus the grace before SIGKILL) sum to at most
    480 s, in the documented order, and each benchmark step's arguments are accepted."""
    import shlex
    from benchmarks import feed, gpu
    text = (ROOT / "benchmarks" / "device_check.sh").read_text()
    assert subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / "device_check.sh")]).returncode == 0
    grace = int(re.search(r"^GRACE=(\d+)", text, re.M).group(1))
    lines = text.replace("\\\n", " ").splitlines()           # continuation lines joined
    steps = [shlex.split(line)[1:] for line in lines if line.startswith("step ")]
    assert sum(int(s[0]) + grace for s in steps) <= 480
    assert [s[3] if s[2] == "-m" else None for s in steps] == [
        "pytest", "benchmarks.gpu", "benchmarks.feed", "benchmarks.gpu"]
    monkeypatch.setattr(gpu, "gpu_piece", lambda **kw: report.Piece("gpu", []))
    monkeypatch.setattr(gpu, "publish", lambda *a, **k: None)
    for s in steps:
        args = [a.replace("$RESULTS", "/nonexistent") for a in s[4:]]
        if s[3] == "benchmarks.gpu":
            assert gpu.main(["--tiny"] + args) == 0, args     # names known, flags parse
        elif s[3] == "benchmarks.feed":
            feed.get_args_parser().parse_args(args)
        else:
            assert (ROOT / args[-1]).is_file() and "gpu" in args


@pytest.mark.slow
def test_feed_benchmark_runs_every_option_at_a_toy_size():
    """benchmarks.feed (the prepared GPU-feed run) on the CPU: a synthetic release in the
    real layout, each --decode / --augment option's loader and training steps."""
    from benchmarks.feed import OPTIONS, feed_piece
    piece = feed_piece(device="cpu", image_size=32, classes=100, per_class=4, batch=4, steps=2,
                       workers=0, tiny=True)
    names = {f.name for f in piece.figures}
    for decode, augment in OPTIONS:
        assert {f"{decode}/{augment} loader", f"{decode}/{augment} supply / demand"} <= names
        assert piece.details[f"{decode}/{augment}"]["train_img_s"] > 0
