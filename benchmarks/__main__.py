"""``python -m benchmarks`` (``make bench``): every benchmark in one run, one table, one file.

Runs the pieces in order (step, extract, pipeline, epoch, study, gpu where a CUDA GPU is
visible, reproduce), prints the table and writes ``benchmarks/results/<machine>.json``
(the machine: ``cpu-<model>-<cores>c`` or ``cuda-<gpu>``, with torch's version, the
device, the date and every piece's settings). ``--tiny`` runs each piece at a toy size
and writes nothing unless ``--results`` is given (tests/test_bench.py). A piece that
fails is reported in the table and the JSON and the exit status is 1.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import traceback

from .report import Figure, Piece, format_table, payload, write_results

PIECES = ("step", "extract", "pipeline", "epoch", "study", "gpu", "reproduce")

#: each piece's keyword arguments at its toy size (--tiny)
TINY = {
    "step": dict(batch=8, size=28, rounds=2, warmup=1),
    "extract": dict(n=64, batch=32, rounds=2),
    "pipeline": dict(image_size=32, count=2, rounds=1, large={"large": (192, 144)},
                     sizes={"nabirds": (96, 72), "aircraft": (96, 66), "butterfly200": (80, 60)}),
    "epoch": dict(epochs=1, limit_batches=2, runs=("eval_every=1",)),
    "study": dict(preset="digits", short=1, long=2),
}


def run_piece(name: str, args, device: str) -> Piece:
    tiny = TINY.get(name, {}) if args.tiny else {}
    threads = {"threads": args.timing_threads} if args.timing_threads else {}
    if name == "step":
        from .step import step_piece
        return step_piece(device=device, **tiny, **threads)
    if name == "extract":
        from .extract import extract_piece
        return extract_piece(device=device, **tiny, **threads)
    if name == "pipeline":
        from .pipeline import pipeline_piece
        return pipeline_piece(**tiny)
    if name == "epoch":
        from .epoch import epoch_piece
        return epoch_piece(device=device, **tiny)
    if name == "study":
        from .study import study_piece
        return study_piece(**tiny)
    if name == "gpu":
        from .gpu import gpu_piece, tiny_kwargs
        return gpu_piece(**tiny_kwargs()) if args.tiny else gpu_piece(device="cuda")
    if name == "reproduce":
        from .reproduce import reproduce_piece
        if args.tiny:           # a stand-in subprocess: the real one trains for minutes
            return reproduce_piece(command=lambda out: [sys.executable, "-c",
                                                        "import lmoe_viz.reproduce"])
        return reproduce_piece(preset=args.preset)
    raise ValueError(f"unknown piece {name!r}; choose from {', '.join(PIECES)}")


def selected(args, cuda: bool) -> list:
    names = list(args.only or PIECES)
    if args.skip_reproduce and "reproduce" in names:
        names.remove("reproduce")
    if "gpu" in names and not (cuda or args.tiny) and not args.only:
        names.remove("gpu")      # python -m benchmarks.gpu --tiny checks it on a CPU
    return names


def _load() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("python -m benchmarks", add_help=add_help,
                                description="lmoe_viz speed and cost, as ratios measured "
                                            "in one run.")
    p.add_argument("--tiny", action="store_true", help="every piece at a toy size (tests)")
    p.add_argument("--skip-reproduce", action="store_true",
                   help="leave out the two `lmoe-viz reproduce` runs (minutes on 2 cores)")
    p.add_argument("--only", nargs="+", choices=PIECES, help="run these pieces only")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="device of the step, extract and epoch pieces (auto: cuda if visible)")
    p.add_argument("--preset", default="digits", help="preset of the reproduce piece")
    p.add_argument("--timing-threads", type=int, default=None,
                   help="torch threads of the CPU step and extract timings (default 1: stable "
                        "on a shared machine; see benchmarks/timing.py)")
    p.add_argument("--results", default=None,
                   help="folder for <machine>.json (default benchmarks/results; --tiny writes "
                        "only when this is given)")
    return p


def main(argv=None) -> int:
    import torch
    args = get_args_parser().parse_args(argv)
    cuda = torch.cuda.is_available() and args.device != "cpu" and not args.tiny
    device = "cuda" if cuda else "cpu"
    names = selected(args, cuda)
    load0 = _load()
    pieces, failed = [], []
    for name in names:
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            piece = run_piece(name, args, device)
        except Exception as exc:  # noqa: BLE001 - one failing piece must not hide the others
            traceback.print_exc()
            failed.append(name)
            piece = Piece(name, [Figure("error", None, "", f"{type(exc).__name__}: {exc}")])
        piece.settings["wall_s"] = round(time.perf_counter() - t0, 1)
        pieces.append(piece)
    cmd = "python -m benchmarks " + " ".join(sys.argv[1:] if argv is None else argv)
    data = payload(pieces, device, cmd.strip())
    data["load_avg_1m"] = [load0, _load()]       # other work on the machine, start and end
    table = format_table(pieces, data)
    print(table)
    if args.results or not args.tiny:
        kwargs = {"results_dir": args.results} if args.results else {}
        print(f"\nwrote {write_results(data, table=table, **kwargs)}")
    if failed:
        print(f"[bench] failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
