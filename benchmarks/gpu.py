"""ResNet-50 at 448 px on one GPU: images/s of each method, memory, compile, data supply.

For CE and each method (benchmarks.step.METHODS), full training steps as train.py runs
them (``lmoe_viz.methods.objective``, backward, fused SGD Nesterov; bf16 autocast,
channels_last) of the paper presets' network (``build_model("resnet50", 200, 3)``, the
bird preset's head, random weights: ``--weights none``) on random 448 px inputs:

* images/s of ID data at batch 32 (MixOE's), eager and under ``torch.compile``; targets
  on one H100: CE >= 1,200 img/s, Logit MixOE w/ L_LC >= 430 img/s;
* each method's step over CE's per ideal pass (target <= 1.10, as benchmarks.step);
* peak memory (``torch.cuda.max_memory_allocated``) at batch 32;
* the largest batch that fits (doubling from 32 until out of memory, eager) and its images/s;
* the data pipeline's supply: images/s of one worker (benchmarks.pipeline, MixOE's train
  transform, ``pil`` decode, NABirds-size JPEGs) x the workers this machine has (cores
  - 1, one core left to the training process) / the images/s the step consumes (ID plus
  outliers); >= 1 means the loaders keep up.

``python -m benchmarks.gpu`` on a GPU machine writes ``benchmarks/results/<machine>-gpu.json``;
each measurement is printed and written to ``<machine>-gpu.partial.json`` as it is taken,
and a failed one (out of memory, a compile error) is named and left out, so a run stopped
at a time limit keeps its figures. Device order for a lent machine's 8 minutes, each step
under its own limit in ``bash benchmarks/device_check.sh``: ``pytest -m gpu
tests/test_gpu.py``, then ``python -m benchmarks.gpu --no-compile --no-max-batch`` (eager,
every method), then ``python -m benchmarks.feed --device cuda`` (each --decode / --augment
option's loader against the training step), then ``python -m benchmarks.gpu --compile-only
--no-max-batch --methods "Logit MixOE w/ L_LC"`` (``torch.compile`` for
``--compile-methods``, by default the two target methods, Logit MixOE w/ L_LC first;
``--methods`` limits what is measured at all, CE always).
``--tiny`` runs the same code on the CPU at a toy size (small ResNet, 32 px, batch 4,
2 steps, no compile, no batch search): the tests run it so that the code cannot rot.
"""
from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time

import torch

from .report import Figure, Piece, cpu_cores, partial_recorder, publish
from .step import METHODS, cuda_sync, ideal_passes, label, make_step, run_config

TARGETS = {"CE": 1200.0, "Logit MixOE w/ L_LC": 430.0}
#: the methods run under torch.compile by default, in this order: the two with targets, the
#: method of the paper first (a run stopped at its limit keeps its figure)
COMPILE_METHODS = ("Logit MixOE w/ L_LC", "CE")
#: CE (the baseline every figure is read against) and the methods
VARIANTS = (("baseline", False),) + tuple(METHODS)


def _free(compiled: bool) -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if compiled:
        torch._dynamo.reset()


def measure(cfg, net: dict, batch: int, device, steps: int, warmup: int, blocks: int = 3,
            compile_model: bool = False) -> dict:
    """images/s of ID data (median of ``blocks`` blocks of ``steps`` steps after
    ``warmup`` steps), the step time and the peak memory of one method at one batch."""
    device = torch.device(device)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    step = make_step(cfg, net["arch"], net["num_classes"], net["channels"], batch, net["size"],
                     device, compile_model=compile_model)
    sync = cuda_sync(device) or (lambda: None)
    t0 = time.perf_counter()
    for _ in range(warmup):
        step()
    sync()
    warm_s = time.perf_counter() - t0
    times = []
    for _ in range(blocks):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        sync()
        times.append((time.perf_counter() - t0) / steps)
    step_s = statistics.median(times)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None
    del step
    _free(compile_model)
    return {"batch": batch, "step_ms": 1000 * step_s, "images_per_s": batch / step_s,
            "peak_gib": peak, "warmup_s": warm_s, "compile": compile_model}


def fits(cfg, net: dict, batch: int, device) -> bool:
    """Whether two training steps at ``batch`` run: out of memory, or another runtime
    error of a too-large batch (cuDNN, 32-bit indexing), says no. The failed step's
    tensors are dropped before memory is freed (its closure and the exception's frame
    hold them)."""
    failed, step = False, None
    try:
        step = make_step(cfg, net["arch"], net["num_classes"], net["channels"], batch,
                         net["size"], device)
        step()
        step()
        torch.cuda.synchronize(device)
    except RuntimeError as exc:     # torch.OutOfMemoryError is a RuntimeError
        print(f"[bench] batch {batch} does not fit: {str(exc).splitlines()[0][:120]}",
              file=sys.stderr)
        failed = True               # leave the except block first: its frame holds tensors
    step = None
    _free(False)
    return not failed


def guarded(what: str, fn, *args, errors=(RuntimeError,), prefix: str = "bench", **kwargs):
    """``fn(*args)``, or None when it fails at run time with one of ``errors`` (out of
    memory, a compile error): one line names it and the benchmark goes on to the next
    figure (benchmarks.feed too, with its own errors and prefix)."""
    try:
        return fn(*args, **kwargs)
    except errors as exc:
        print(f"[{prefix}] {what} failed: {str(exc).splitlines()[0][:160]}", file=sys.stderr)
    _free(True)                     # outside the except block: its frame holds the tensors;
    return None                     # dynamo reset too (a failed compile skips measure's)


def largest_batch(cfg, net: dict, device, start: int, cap: int) -> int | None:
    """The largest of start, 2 start, 4 start, ... <= cap that fits (None: not even start)."""
    best, b = None, start
    while b <= cap and fits(cfg, net, b, device):
        best, b = b, 2 * b
    return best


def supply_rate(tiny: bool, image_size: int) -> float:
    """images/s of one data-loading worker on this machine (benchmarks.pipeline)."""
    from .pipeline import SIZES, worker_rate
    if tiny:
        return worker_rate(image_size=32, count=2, rounds=1, size=(96, 72))
    return worker_rate(image_size=image_size, count=8, rounds=2, size=SIZES["nabirds"])


def gpu_piece(device="cuda", arch: str = "resnet50", preset: str = "bird", size: int = 448,
              batch: int = 32, steps: int = 20, warmup: int = 5, blocks: int = 3,
              compile_modes=(False, True), find_max: bool = True, max_cap: int = 1024,
              workers: int | None = None, oe_aux_ratio: int = 1, tiny: bool = False,
              on_result=None, compile_methods=COMPILE_METHODS, methods=None) -> Piece:
    """The GPU piece. Every measurement is guarded (a failed one is left out, named on
    stderr) and reported to ``on_result(name, result)`` as soon as it is taken, so a run
    stopped at a time limit keeps what it measured (main writes a partial file). Eager runs
    every method of ``methods`` (None: CE and benchmarks.step.METHODS; CE always, every
    figure is read against it); ``torch.compile`` only ``compile_methods`` (None: all), and
    a method whose compiled run fails keeps its eager figures."""
    on_result = on_result or (lambda name, result: None)
    from lmoe_viz.data import get_preset
    p = get_preset(preset)
    net = {"arch": arch, "num_classes": p.num_id, "channels": 3, "size": size}
    cfgs = {label(m, lc): run_config(preset, m, lc, oe_aux_ratio) for m, lc in VARIANTS
            if methods is None or label(m, lc) in methods or m == "baseline"}
    if torch.device(device).type == "cuda":
        torch.backends.cudnn.benchmark = True
    results = {}
    for compiled in compile_modes:
        order = [k for k in compile_methods if k in cfgs] if compiled and compile_methods else cfgs
        for k in order:             # compiled: in compile_methods' order (the target first)
            cfg = cfgs[k]
            name = f"{k} b{batch} {'compile' if compiled else 'eager'}"
            r = guarded(name, measure, cfg, net, batch, device, steps, warmup, blocks, compiled)
            if r is not None:
                results[(k, compiled)] = r
                on_result(name, r)
    largest = {}
    if find_max and torch.device(device).type == "cuda":
        for k, cfg in cfgs.items():
            b = guarded(f"{k} batch search", largest_batch, cfg, net, device, 2 * batch, max_cap)
            m = None if b is None else guarded(f"{k} b{b} eager", measure, cfg, net, b, device,
                                                max(steps // 2, 2), warmup, 1)
            if m is not None:
                largest[k] = m
                on_result(f"{k} largest batch", m)
    cfgs = {k: c for k, c in cfgs.items() if any((k, m) in results for m in compile_modes)}
    if not cfgs:
        raise RuntimeError("no step could be measured; see the lines above")
    workers = workers or max(cpu_cores() - 1, 1)
    per_worker = supply_rate(tiny, size)
    figures, supply = [], {}
    for k, cfg in cfgs.items():
        f, supply[k] = _method_figures(k, cfg, results, largest.get(k), compile_modes, batch,
                                       f"{arch} {size} px, {device}",
                                       f"median of {blocks} blocks of {steps} full training "
                                       f"steps after {warmup}", max_cap, per_worker, workers, tiny)
        figures += f
    settings = {"device": str(device), "arch": arch, "preset": preset,
                "num_classes": p.num_id, "size": size, "batch": batch, "steps": steps,
                "warmup": warmup, "blocks": blocks, "compile_modes": list(compile_modes),
                "find_max": find_max, "max_cap": max_cap, "workers": workers,
                "compile_methods": None if compile_methods is None else list(compile_methods),
                "oe_aux_ratio": oe_aux_ratio, "autocast": "bf16 on CUDA",
                "channels_last": torch.device(device).type == "cuda", "tiny": tiny}
    named = {f"{k} {'compile' if c else 'eager'}": v for (k, c), v in results.items()}
    details = {"results": named,
               "largest": largest, "supply": supply}
    notes = [] if torch.device(device).type == "cuda" else [
        "measured on the CPU at a toy size: these numbers only show the code runs"]
    return Piece("gpu", figures, settings, details, notes)


def _method_figures(k, cfg, results, largest, compile_modes, batch, where, timing, max_cap,
                    per_worker, workers, tiny) -> tuple[list, dict]:
    """The figures of method ``k``: img/s per mode, its step time over CE's per ideal pass,
    peak memory, the largest batch (``largest``: its measurement, or None) and the data
    supply over the images/s the GPU consumes; and the supply's numbers."""
    targets = {} if tiny else TARGETS           # a toy size on a CPU is judged by nothing
    bound = None if tiny else 1.10
    figures = []
    for compiled in compile_modes:
        mode = "compile" if compiled else "eager"
        if (k, compiled) not in results:        # not compiled, or its compiled run failed
            continue
        r = results[(k, compiled)]
        figures.append(Figure(f"{k} b{batch} {mode}", r["images_per_s"], "img/s",
                              f"ID images/s, {timing}; {where}; {cfg.bn} forwards",
                              targets.get(k), ">="))
        if k != "CE" and ("CE", compiled) in results:
            passes = ideal_passes(cfg)
            ce = results[("CE", compiled)]["step_ms"]
            figures.append(Figure(f"{k} / CE / {passes} passes b{batch} {mode}",
                                  r["step_ms"] / ce / passes, "x",
                                  f"step time over CE's ({mode}), per ideal pass", bound, "<="))
    first = next(c for c in compile_modes if (k, c) in results)
    r = results[(k, first)]
    if r["peak_gib"] is not None:
        figures.append(Figure(f"{k} b{batch} peak memory", r["peak_gib"], "GiB",
                              "torch.cuda.max_memory_allocated over the measured steps "
                              f"({'compile' if first else 'eager'})"))
    if largest is not None:
        m = largest
        figures.append(Figure(f"{k} largest batch", m["batch"], "images",
                              f"doubling from {2 * batch} until out of memory "
                              f"(cap {max_cap}), eager"))
        figures.append(Figure(f"{k} b{m['batch']} eager", m["images_per_s"], "img/s",
                              "ID images/s at the largest batch "
                              f"(peak {m['peak_gib']:.1f} GiB)"))
    best = max(results[(k, c)]["images_per_s"] for c in compile_modes if (k, c) in results)
    rows_per_id = 1 + (cfg.aux_ratio if cfg.method != "baseline" else 0)
    need = best * rows_per_id
    supply = {"per_worker": per_worker, "workers": workers, "id_images_per_s": best,
              "images_per_id": rows_per_id, "needed": need}
    figures.append(Figure(f"{k} data supply", per_worker * workers / need, "x",
                          f"one worker's images/s ({per_worker:.0f}: pil, train transform, "
                          f"NABirds-size JPEGs) x {workers} workers / images/s needed (ID "
                          f"images/s at b{batch}, best mode, x (1 + outliers per ID image))",
                          None if tiny else 1.0, ">="))
    return figures, supply


def tiny_kwargs() -> dict:
    return dict(device="cpu", arch="small", size=32, batch=4, steps=2, warmup=1, blocks=1,
                compile_modes=(False,), find_max=False, tiny=True)


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("python -m benchmarks.gpu", add_help=add_help,
                                description="ResNet-50 training throughput on one GPU.")
    p.add_argument("--tiny", action="store_true",
                   help="CPU, small ResNet, 32 px, batch 4, 2 steps (checks the code runs)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=448)
    p.add_argument("--steps", type=int, default=20, help="timed steps per block")
    p.add_argument("--no-compile", action="store_true", help="eager mode only")
    p.add_argument("--compile-only", action="store_true",
                   help="torch.compile only (no eager runs; with --methods, a short device step)")
    p.add_argument("--no-max-batch", action="store_true", help="skip the largest-batch search")
    p.add_argument("--compile-methods", nargs="+", default=list(COMPILE_METHODS), metavar="M",
                   help="methods measured under torch.compile too (labels as in the table; "
                        "'all' for every one; default: %(default)s)")
    p.add_argument("--methods", nargs="+", default=["all"], metavar="M",
                   help="methods measured at all (CE always; default: all)")
    p.add_argument("--workers", type=int, default=None,
                   help="data-loading workers available (default: cores - 1)")
    p.add_argument("--oe-aux-ratio", type=int, default=1,
                   help="OE's outlier batch / ID batch (1: the issue's 2 passes; MixOE uses 2)")
    p.add_argument("--results", default=None,
                   help="folder for <machine>-gpu.json (default benchmarks/results; "
                        "--tiny writes only when this is given)")
    return p


def main(argv=None) -> int:
    args = get_args_parser().parse_args(argv)
    if args.tiny:
        kw = tiny_kwargs()
    else:
        if not torch.cuda.is_available():
            print("python -m benchmarks.gpu: no CUDA GPU visible; run on a GPU machine or "
                  "pass --tiny", file=sys.stderr)
            return 2
        if args.no_compile and args.compile_only:
            print("python -m benchmarks.gpu: --no-compile and --compile-only exclude each other; "
                  "give one", file=sys.stderr)
            return 2
        modes = (False,) if args.no_compile else (True,) if args.compile_only else (False, True)
        kw = dict(device="cuda", size=args.size, batch=args.batch, steps=args.steps,
                  compile_modes=modes, find_max=not args.no_max_batch)
    record = partial_recorder(kw["device"], "-gpu", args.results or not args.tiny, args.results)

    def on_result(name, result):           # each figure on disk as soon as it is measured
        print(f"[bench] {name}: {result['images_per_s']:.0f} img/s, {result['step_ms']:.1f} ms/step",
              flush=True)
        record(name, result)
    known = [label(m, lc) for m, lc in VARIANTS]
    chosen = {}
    for flag in ("compile_methods", "methods"):
        names = getattr(args, flag)
        bad = [m for m in names if m not in known + ["all"]]
        if bad:
            print(f"python -m benchmarks.gpu: unknown --{flag.replace('_', '-')} {bad[0]!r}; "
                  f"choose from {', '.join(map(repr, known))} or 'all'", file=sys.stderr)
            return 2
        chosen[flag] = None if "all" in names else names
    skipped = [m for m in chosen["compile_methods"] or []
               if chosen["methods"] is not None and m not in chosen["methods"] and m != "CE"]
    if skipped or (args.no_compile and args.compile_methods != list(COMPILE_METHODS)):
        print(f"[bench] not compiled: {', '.join(skipped) or '--compile-methods'} "
              f"({'not in --methods' if skipped else '--no-compile'})", file=sys.stderr)
    piece = gpu_piece(workers=args.workers, oe_aux_ratio=args.oe_aux_ratio, on_result=on_result,
                      **chosen, **kw)
    cmd = "python -m benchmarks.gpu " + " ".join(sys.argv[1:] if argv is None else argv)
    publish([piece], kw["device"], cmd, args.results or not args.tiny, args.results, "-gpu")
    return 0


if __name__ == "__main__":
    sys.exit(main())
