"""The data pipeline: images/s per worker of the paper presets' transforms on JPEGs.

One process (one DataLoader worker: one torch thread) decodes synthetic JPEGs written
at the real datasets' typical sizes and applies MixOE's transforms
(``lmoe_viz.data.finegrained.transforms_for(448, train)``), decoding with
``load_rgb(path, decode, 512)``: ``pil`` (MixOE's full decode, the default) or ``draft``
(libjpeg's DCT scaling first, as far as both sides stay >= the 512 px resize target).
A third path, ``tensor`` (``--decode tensor``), decodes with torchvision and runs the
same transforms as ``torchvision.transforms.v2`` on uint8 tensors
(``transforms_for(..., tensor=True)``). The images are bundled photographs (lmoe_viz.data.outliers) resized
to each size, with Gaussian noise (sigma 6/255) for a realistic file size, JPEG quality 90.

From the per-worker rate of the slowest real size, the workers needed to feed the GPU
targets: CE 1,200 ID images/s, and Logit MixOE w/ L_LC 430 ID images/s plus as many
outliers (860 images/s through the training transform).
"""
from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import torch

from .report import Figure, Piece
from .timing import interleaved, medians, spread, worst

#: (width, height) typical of each dataset; FGVC-Aircraft's 20 px copyright banner included
SIZES = {"nabirds": (1024, 768), "aircraft": (1024, 700), "butterfly200": (800, 600)}
#: a larger original, where draft mode engages (both sides >= 2 x 512): for reference
LARGE = {"large": (2048, 1536)}
#: images/s the GPU must be fed, (ID, outliers): CE (ID only), Logit MixOE w/ L_LC (ID + as
#: many outliers; --decode cached caches the ID images only, outliers keep pil's path)
GPU_NEEDS = {"CE 1,200 img/s": (1200, 0), "Logit MixOE w/ L_LC 430+430 img/s": (430, 430)}
#: images of each release (every split), what --decode cached stores at 512 x 512 x 3 bytes
RELEASE_IMAGES = {"nabirds": 48_562, "aircraft": 10_000, "butterfly200": 25_279,
                  "stanford-cars": 16_185, "cub": 11_788}


def write_jpegs(folder, width: int, height: int, count: int, banner: int = 0,
                seed: int = 0) -> list:
    """``count`` photo-like JPEGs of ``width`` x ``height`` in ``folder`` (a ``banner``
    px dark strip with light marks at the bottom, as FGVC-Aircraft's images have)."""
    from PIL import Image

    from lmoe_viz.data.outliers import load_photos
    photos = [p for p in load_photos() if p.std(axis=2).mean() > 0.02] or list(load_photos())
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        src = Image.fromarray((photos[i % len(photos)] * 255).astype(np.uint8))
        img = np.asarray(src.resize((width, height), Image.BICUBIC), dtype=np.float32)
        img = img + rng.normal(0, 6, img.shape)
        if banner:
            img[-banner:] = 20
            for x0 in range(8, width - 16, 24):
                img[-banner + 5:-5, x0:x0 + 12] = 230
        path = Path(folder) / f"img_{width}x{height}_{i}.jpg"
        Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(path, "JPEG", quality=90)
        paths.append(path)
    return paths


def loaders(image_size: int, with_tensor: bool = True) -> dict:
    """``{(decode, split): fn(path) -> tensor}`` for decode pil, draft (and tensor)."""
    from lmoe_viz.data.finegrained import load_rgb, resize_of, transforms_for
    resize = resize_of(image_size)
    out = {}
    for split in ("train", "test"):
        for decode in ("pil", "draft") + (("tensor",) if with_tensor else ()):
            tf = transforms_for(image_size, split == "train", tensor=decode == "tensor")
            out[(decode, split)] = (lambda p, d=decode, t=tf: t(load_rgb(p, d, resize)))
    return out


def cached_loaders(paths: list, image_size: int, cache_dir) -> tuple[dict, float]:
    """``{("cached", split): fn(path)}`` reading a ``--decode cached`` cache of ``paths``
    built in ``cache_dir`` (one process), and the build's images/s."""
    import time as _time

    from lmoe_viz.data.finegrained import resize_of, transforms_for
    from lmoe_viz.data.imagecache import ResizedImages
    t0 = _time.perf_counter()
    cache = ResizedImages(paths, resize_of(image_size), workers=1, progress=False, root=cache_dir)
    build = len(paths) / (_time.perf_counter() - t0)
    out = {}
    for split in ("train", "test"):
        tf = transforms_for(image_size, split == "train", resized=True)
        out[("cached", split)] = (lambda p, t=tf: t(cache.image(p)))
    return out, build


def measure_rates(paths: list, image_size: int, rounds: int, with_tensor: bool = True,
                  cache_dir=None) -> dict:
    """Median images/s of one process (one torch thread) per (decode, split); with
    ``cache_dir``, ``cached`` too (and ``cached/build``, the cache's build rate)."""
    fns = loaders(image_size, with_tensor)
    build = None
    if cache_dir is not None:
        extra, build = cached_loaders(paths, image_size, cache_dir)
        fns.update(extra)
    runs = {f"{d}/{s}": (lambda f=f: [f(p) for p in paths]) for (d, s), f in fns.items()}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)              # what a DataLoader worker gets
    try:
        times = interleaved(runs, rounds, warmup=1)
    finally:
        torch.set_num_threads(threads)
    med = medians(times)
    out = {k: {"images_per_s": len(paths) / med[k], "iqr_over_median": spread(times[k])}
           for k in med}
    if build is not None:
        out["cached/build"] = {"images_per_s": build, "iqr_over_median": None}
    return out


def pipeline_piece(image_size: int = 448, count: int = 16, rounds: int = 3,
                   sizes: dict | None = None, large: dict | None = None,
                   with_tensor: bool = True, workdir=None) -> Piece:
    sizes = dict(SIZES if sizes is None else sizes)
    large = dict(LARGE if large is None else large)
    rates, files = {}, {}
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        for name, (w, h) in {**sizes, **large}.items():
            folder = Path(tmp) / name
            folder.mkdir()
            banner = 20 if name == "aircraft" else 0
            paths = write_jpegs(folder, w, h, count, banner=banner)
            files[name] = {"width": w, "height": h, "banner_px": banner, "count": count,
                           "mean_kb": float(np.mean([p.stat().st_size for p in paths]) / 1024)}
            cache = Path(tmp) / f"{name}-cache"
            rates[name] = measure_rates(paths, image_size, rounds, with_tensor, cache_dir=cache)
    figures = []
    for name in {**sizes, **large}:
        figures += _size_figures(name, files[name], rates[name], with_tensor,
                                 _basis(image_size, count, rounds))
    decodes = ["pil", "draft"] + (["tensor"] if with_tensor else []) + ["cached"]
    slowest = {d: min(sizes, key=lambda n: rates[n][f"{d}/train"]["images_per_s"])
               for d in decodes}
    for need_name, (need_id, need_out) in GPU_NEEDS.items():
        for d in decodes:
            rate = rates[slowest[d]][f"{d}/train"]["images_per_s"]
            out_rate = rates[slowest["pil"]]["pil/train"]["images_per_s"] if d == "cached" else rate
            figures.append(Figure(
                f"workers for {need_name} ({d})", math.ceil(need_id / rate + need_out / out_rate),
                "workers", "ID images/s needed / one worker's train images/s (cached: the "
                "outliers at pil's) at the slowest of the datasets' sizes, rounded up"))
    resize = int(round(image_size * 512 / 448))
    for dataset, n in RELEASE_IMAGES.items():
        figures.append(Figure(f"{dataset} cache size", n * resize * resize * 3 / 2**30, "GiB",
                              f"--decode cached: {n:,} release images x {resize} x {resize} x 3 bytes"))
    build = min(rates[n]["cached/build"]["images_per_s"] for n in sizes)
    for dataset, n in RELEASE_IMAGES.items():
        figures.append(Figure(f"{dataset} cache build (estimate)", n / build / 60, "min/worker",
                              f"an estimate, not a build of the release: {n:,} images at one "
                              f"worker's measured build rate ({build:.0f} img/s, the slowest of the "
                              "datasets' sizes); the build runs in parallel, so divide by its workers"))
    settings = {"image_size": image_size, "resize": resize,
                "count": count, "rounds": rounds, "files": files, "torch_threads": 1,
                "jpeg_quality": 90}
    notes = ["draft mode decodes at 1/2, 1/4 or 1/8 scale only while both sides stay >= "
             "the 512 px resize target, so images under 1024 px on a side decode at full "
             "size: at the datasets' typical sizes draft equals pil; the large "
             "rows show what it buys on big originals"]
    return Piece("pipeline", figures, settings, {"rates": rates, "slowest": slowest}, notes)


def _size_figures(name: str, f: dict, r: dict, with_tensor: bool, basis: str) -> list:
    """images/s of pil and draft, draft's speedup (and the tensor path's) at one size."""
    out, tag = [], f"{name} {f['width']}x{f['height']}"
    for split in ("train", "test"):
        pil, draft = r[f"pil/{split}"]["images_per_s"], r[f"draft/{split}"]["images_per_s"]
        n_pil = r[f"pil/{split}"]["iqr_over_median"]
        n_draft = r[f"draft/{split}"]["iqr_over_median"]
        out.append(Figure(f"{tag} {split} pil", pil, "img/s/worker", basis, noise=n_pil))
        out.append(Figure(f"{tag} {split} draft", draft, "img/s/worker",
                          basis.replace("'pil'", "'draft', 512"), noise=n_draft))
        out.append(Figure(f"{tag} {split} draft / pil", draft / pil, "x",
                          "draft's images/s over pil's: same files, same transform",
                          noise=worst(n_pil, n_draft)))
        c = r[f"cached/{split}"]
        out.append(Figure(f"{tag} {split} cached", c["images_per_s"], "img/s/worker",
                          basis.replace("load_rgb(path, 'pil') + ", "the cache's 512 px row + the rest of "),
                          noise=c["iqr_over_median"]))
        out.append(Figure(f"{tag} {split} cached / pil", c["images_per_s"] / pil, "x",
                          "--decode cached (the resized image read from the cache, then crop, "
                          "flip and jitter) over pil's images/s: the same pixels",
                          noise=worst(n_pil, c["iqr_over_median"])))
        if with_tensor:
            t = r[f"tensor/{split}"]
            out.append(Figure(f"{tag} {split} tensor", t["images_per_s"], "img/s/worker",
                              basis.replace("load_rgb(path, 'pil') + transforms_for",
                                            "torchvision decode_jpeg + the uint8 transforms.v2 of transforms_for"),
                              noise=t["iqr_over_median"]))
            out.append(Figure(f"{tag} {split} tensor / pil", t["images_per_s"] / pil, "x",
                              "--decode tensor (torchvision decode + transforms.v2 on uint8) over pil's "
                              "images/s: same files, same transform",
                              noise=worst(n_pil, t["iqr_over_median"])))
    return out


def _basis(image_size: int, count: int, rounds: int) -> str:
    return (f"one process, one torch thread: load_rgb(path, 'pil') + "
            f"transforms_for({image_size}, train or test), median of {rounds} interleaved "
            f"passes over {count} JPEGs")


def worker_rate(image_size: int = 448, count: int = 8, rounds: int = 2,
                size=SIZES["nabirds"], decode: str = "pil") -> float:
    """images/s of one worker, train transform, at one size (used by benchmarks.gpu)."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_jpegs(tmp, *size, count)
        rates = measure_rates(paths, image_size, rounds, with_tensor=False)
    return rates[f"{decode}/train"]["images_per_s"]
