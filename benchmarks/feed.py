"""Feeding a paper preset's training loop: each ``--decode`` / ``--augment`` option on a
synthetic FGVC-Aircraft release in its real layout (photo-like JPEGs at the dataset's
size, 1024 x 700 with the copyright banner) and a small WebVision tree beside it.

For each option: the ID loader alone on this host's cores (images/s of the train stream
with ``--num-workers``, the cache built first where the option has one), then whole
training steps of Logit MixOE w/ L_LC on ``--device`` (``train()`` with
``--limit-batches``; images/s of ID data, pretraining and evaluation excluded), so the two
can be compared: the loader must supply at least 1.2x what the step consumes.

    python -m benchmarks.feed --device cuda            # one prepared run for a lent GPU
    python -m benchmarks.feed --tiny                   # the same code at a toy size (tests)

Writes ``benchmarks/results/<machine>-feed.json`` (``--results``). Each option's figures
are printed and written to ``<machine>-feed.partial.json`` as they are measured, and an
option that fails (out of memory, a decode error) is named and left out, so a run stopped
at a time limit keeps what it measured.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from lmoe_viz.config import RunConfig
from lmoe_viz.data import build_splits
from lmoe_viz.data.build_info import build_info
from lmoe_viz.errors import UserError
from lmoe_viz.train import train

from .gpu import guarded
from .pipeline import write_jpegs
from .report import Figure, Piece, cpu_cores, partial_recorder, publish

#: (decode, augment) of each measured option
OPTIONS = (("pil", "host"), ("tensor", "host"), ("cached", "host"), ("cached", "device"))


def write_release(root: Path, classes: int, per_class: int, size=(1024, 700)) -> None:
    """FGVC-Aircraft 2013b's layout (data/variants.txt, images_variant_*.txt,
    data/images/<id>.jpg) and a WebVision tree of a few queries, under ``root``."""
    data = root / "aircraft" / "data"
    (data / "images").mkdir(parents=True)
    variants = [f"V{c:03d}" for c in range(classes)]
    (data / "variants.txt").write_text("".join(v + "\n" for v in variants))
    shots = write_jpegs(data / "images", *size, count=min(per_class * classes, 64), banner=20)
    rows = {"trainval": [], "test": []}
    k = 0
    for c, v in enumerate(variants):
        for j in range(per_class):
            name = f"{1000000 + k:07d}"
            os.link(shots[k % len(shots)], data / "images" / f"{name}.jpg")
            rows["test" if j == per_class - 1 else "trainval"].append(f"{name} {v}\n")
            k += 1
    for part, lines in rows.items():
        (data / f"images_variant_{part}.txt").write_text("".join(lines))
    wv = root / "webvision"
    (wv / "info").mkdir(parents=True)
    (wv / "info" / "synsets.txt").write_text("".join(f"n0{9000000 + i} concept {i}\n" for i in range(4)))
    (wv / "info" / "queries_synsets_map.txt").write_text("".join(f"{i + 1} {i + 1}\n" for i in range(4)))
    for q in range(1, 5):
        folder = wv / "google" / f"q{q:04d}"
        folder.mkdir(parents=True)
        for i, p in enumerate(shots[:8]):
            os.link(p, folder / f"{i:06d}.jpg")
    build_info("aircraft", root)


def feed_piece(device: str = "cuda", image_size: int = 448, classes: int = 100, per_class: int = 6,
               batch: int = 32, steps: int = 20, workers: int | None = None, tiny: bool = False,
               on_result=None) -> Piece:
    """Every option's figures (module doc); each option's are passed to
    ``on_result(tag, details)`` as soon as measured, and a failed option is left out."""
    workers = workers if workers is not None else max(cpu_cores() - 1, 0)
    on_result = on_result or (lambda tag, d: None)
    figures, details = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_release(root, classes, per_class, (96, 66) if tiny else (1024, 700))
        old = os.environ.get("LMOE_VIZ_CACHE")
        os.environ["LMOE_VIZ_CACHE"] = str(root / "cache")
        try:
            common = dict(preset="aircraft", data_root=str(root), image_size=image_size,
                          batch_size=batch, num_workers=workers, device=device)
            pre = root / "pre"
            train(RunConfig(epochs=1, limit_batches=1, weights="none", **common), pre, progress=False)
            for decode, augment in OPTIONS:
                tag = f"{decode}/{augment}"
                cfg = RunConfig(method="logit_mixoe", lc=True, epochs=1, limit_batches=steps,
                                decode=decode, augment=augment, init=str(pre / "checkpoint.pt"),
                                **common)
                d = guarded(tag, _measure_option, cfg, root / tag.replace("/", "_"), batch,
                            workers, steps, errors=(RuntimeError, OSError, UserError), prefix="feed")
                if d is None:
                    continue
                details[tag] = d
                on_result(tag, d)
                supply, consumed = d["loader_img_s"], d["train_img_s"]
                print(f"[feed] {tag}: loader {supply:.0f} img/s on {workers} workers, training "
                      f"{consumed:.0f} ID img/s", flush=True)
                figures += [
                    Figure(f"{tag} loader", supply, "img/s", f"the ID train stream, {workers} workers, "
                           f"batch {batch}, {steps} batches"),
                    Figure(f"{tag} training", consumed, "img/s", f"Logit MixOE w/ L_LC, {steps} steps "
                           f"on {device}, ID images/s over the epoch's training time (train.py's "
                           "train_seconds: the loader's waits included, evaluation not)"),
                    Figure(f"{tag} supply / demand", supply / max(consumed, 1e-9), "x",
                           "loader images/s over what training consumed", None if tiny else 1.2, ">=")]
        finally:
            if old is None:
                os.environ.pop("LMOE_VIZ_CACHE", None)
            else:
                os.environ["LMOE_VIZ_CACHE"] = old
    settings = {"device": device, "image_size": image_size, "classes": classes,
                "per_class": per_class, "batch": batch, "steps": steps, "workers": workers}
    return Piece("feed", figures, settings, details,
                 ["CPU at a toy size: only shows the code runs"] if tiny else [])


def _measure_option(cfg, out_dir: Path, batch: int, workers: int, steps: int) -> dict:
    """One option: its cache's build time, the ID loader's images/s, the training's."""
    t0 = time.perf_counter()
    splits = build_splits(cfg.resolved())               # builds the cache (timed)
    build_s = time.perf_counter() - t0
    supply = _loader_rate(splits.id_train, batch, workers, steps)
    m = train(cfg, out_dir, progress=False)
    hist = json.loads((out_dir / "metrics.json").read_text())["history"]
    consumed = batch * m["steps"] / max(sum(h["train_seconds"] for h in hist), 1e-9)
    return {"cache_build_s": build_s, "loader_img_s": supply, "train_img_s": consumed,
            "steps": m["steps"]}


def _loader_rate(dataset, batch: int, workers: int, batches: int) -> float:
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True,
                                         num_workers=workers, drop_last=True)
    it, n = iter(loader), 0
    next(it)                                    # workers started, first batch out
    t0 = time.perf_counter()
    for _ in range(batches):
        try:
            next(it)
        except StopIteration:
            it = iter(loader)
            next(it)
        n += batch
    return n / (time.perf_counter() - t0)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("python -m benchmarks.feed", description=__doc__.split("\n")[0])
    p.add_argument("--tiny", action="store_true", help="CPU, 32 px, a few images (tests)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--results", default=None)
    return p


def main(argv=None) -> int:
    args = get_args_parser().parse_args(argv)
    kw = dict(device="cpu", image_size=32, classes=100, per_class=4, batch=4, steps=2, workers=0,
              tiny=True) if args.tiny else dict(device=args.device, steps=args.steps, workers=args.workers)
    on_result = partial_recorder(kw["device"], "-feed", args.results or not args.tiny, args.results)
    piece = feed_piece(**kw, on_result=on_result)   # each option on disk as soon as measured
    cmd = "python -m benchmarks.feed " + " ".join(sys.argv[1:] if argv is None else argv)
    publish([piece], kw["device"], cmd, args.results or not args.tiny, args.results, "-feed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
