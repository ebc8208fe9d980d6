"""--decode cached (data/imagecache.py): MixOE's pixels exactly, built once, never trusted
half-written, and refused in one line where it cannot be built."""

import re

import pytest
import torch

import fakes
from lmoe_viz.config import RunConfig
from lmoe_viz.data import build_splits
from lmoe_viz.data.build_info import build_info
from lmoe_viz.data.imagecache import ResizedImages
from lmoe_viz.errors import UserError


@pytest.fixture
def tree(tmp_path):
    fakes.aircraft(tmp_path)
    build_info("aircraft", tmp_path)
    fakes.webvision(tmp_path)
    return tmp_path


def _cfg(tree, decode, **kw):
    return RunConfig(preset="aircraft", data_root=str(tree), image_size=32, decode=decode, **kw)


def test_cached_items_equal_pil_items_bit_for_bit(tree):
    pil, cached = (build_splits(_cfg(tree, d).resolved()) for d in ("pil", "cached"))
    for part in ("id_train", "id_val", "id_test", "ood_test"):
        a, b = getattr(pil, part), getattr(cached, part)
        assert len(a) == len(b) and b.decode == "cached"
        for i in (0, len(a) // 2, len(a) - 1):
            torch.manual_seed(i)                 # the random crop, flip and jitter
            xa, ya, ia = a[i]
            torch.manual_seed(i)
            xb, yb, ib = b[i]
            assert torch.equal(xa, xb) and (ya, ia) == (yb, ib), (part, i)
    assert cached.aux.decode == "pil"            # outliers keep their decode path
    assert _cfg(tree, "cached").resolved().identity() == _cfg(tree, "pil").resolved().identity()


def test_training_with_the_cache_is_bit_identical(tree, tmp_path):
    from lmoe_viz.train import train
    kw = dict(epochs=1, limit_batches=2, batch_size=4, num_workers=0, device="cpu", weights="none")
    out = {}
    for d in ("pil", "cached"):
        train(_cfg(tree, d, **kw), tmp_path / d, progress=False)
        out[d] = torch.load(tmp_path / d / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(out["pil"][k], out["cached"][k]) for k in out["pil"])


def test_built_once_and_a_half_written_file_is_not_trusted(tree, monkeypatch, capsys):
    splits = build_splits(_cfg(tree, "cached").resolved())
    cache = splits.id_train.cache
    assert cache.file.is_file() and cache.meta.is_file()
    assert cache.file.stat().st_size == len(cache.paths) * 37 * 37 * 3
    calls = []
    monkeypatch.setattr(ResizedImages, "_build", lambda self, *a: calls.append(1))
    build_splits(_cfg(tree, "cached").resolved())
    assert calls == []                           # found, not rebuilt
    cache.meta.unlink()                          # as if the build had stopped before its end
    build_splits(_cfg(tree, "cached").resolved())
    assert calls == [1]


def test_an_unwritable_or_full_cache_folder_is_one_line(tree, tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "resized").write_text("a file where the folder would go")
    monkeypatch.setenv("LMOE_VIZ_CACHE", str(ro))
    with pytest.raises(UserError, match=r"cache folder .*resized is not writable; it needs .* GiB: set LMOE_VIZ_CACHE"):
        build_splits(_cfg(tree, "cached").resolved())
    monkeypatch.setenv("LMOE_VIZ_CACHE", str(tmp_path / "ok"))
    import shutil
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10, 10, 0))
    with pytest.raises(UserError, match=r"has 0.00 GiB free, the cache needs .* LMOE_VIZ_CACHE"):
        build_splits(_cfg(tree, "cached").resolved())
    assert not list((tmp_path / "ok" / "resized").glob("*.u8"))      # nothing half-written


def test_cached_is_refused_for_the_embedded_presets():
    with pytest.raises(UserError, match="--decode cached applies to the paper presets"):
        RunConfig(preset="digits", decode="cached").resolved()


def _built(tree):
    """One cache built on the fake tree, and its files moved aside (as if still to build)."""
    cache = build_splits(_cfg(tree, "cached").resolved()).id_train.cache
    aside = {f: f.read_bytes() for f in (cache.file, cache.meta)}
    for f in aside:
        f.unlink()
    return cache, aside


def test_a_second_builder_waits_for_the_first_and_reads_its_cache(tree, monkeypatch, capsys):
    """Builders take turns under the lock and re-check after it: one waiting while another
    builds (the test holds the lock, then writes the finished files) builds nothing."""
    import fcntl
    import threading
    import time
    cache, aside = _built(tree)
    calls, errors, said = [], [], []
    monkeypatch.setattr(ResizedImages, "_build", lambda self, *a: calls.append(1))
    monkeypatch.setattr("builtins.print", lambda *a, **k: said.append(" ".join(map(str, a))))

    def second():
        try:
            ResizedImages(cache.paths, cache.resize, progress=False, root=cache.folder.parent)
        except BaseException as exc:            # seen by the test, not lost in the thread
            errors.append(exc)
    with open(cache.folder / f"{cache.key}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        t = threading.Thread(target=second)
        t.start()
        deadline = time.monotonic() + 60
        while not any("another process is building" in m for m in said) and t.is_alive() \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        assert t.is_alive() and calls == [] and not errors, errors     # waiting, not building
        for f, data in aside.items():           # the other builder finishes
            f.write_bytes(data)
        fcntl.flock(lock, fcntl.LOCK_UN)
    t.join(60)
    assert not t.is_alive() and calls == [] and not errors, errors


def test_a_full_disk_or_a_killed_worker_is_one_line_and_leaves_nothing(tree, monkeypatch):
    import errno
    import os
    from concurrent.futures.process import BrokenProcessPool
    from lmoe_viz.data import imagecache
    cache, _ = _built(tree)

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    with monkeypatch.context() as m:
        m.setattr(os, "posix_fallocate", full)
        with pytest.raises(UserError, match=r"could not build the image cache in .*No space left on "
                                            r"device.*it needs .* GiB: free space there or set LMOE_VIZ_CACHE"):
            ResizedImages(cache.paths, cache.resize, progress=False, root=cache.folder.parent)

    class Killed:                               # a worker dead of SIGBUS or the OOM killer
        def __init__(self, *a):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

        def map(self, *a):
            raise BrokenProcessPool("A process in the process pool was terminated abruptly")
    monkeypatch.setattr(imagecache, "ProcessPoolExecutor", Killed)
    with pytest.raises(UserError, match=r"could not build .*terminated abruptly"):
        ResizedImages(cache.paths, cache.resize, workers=2, progress=False, root=cache.folder.parent)
    left = sorted(p.name for p in cache.folder.glob(f"{cache.key}*") if p.suffix != ".lock")
    assert left == []                            # no .partial, no .u8, no .json


def test_a_cache_file_that_cannot_be_read_is_rebuilt(tree, monkeypatch):
    import builtins
    from lmoe_viz.data import imagecache
    cache = build_splits(_cfg(tree, "cached").resolved()).id_train.cache

    def unreadable(path, mode="r", *a, **k):
        if str(path) == str(cache.file) and "r" in mode:
            raise PermissionError(13, "Permission denied")
        return builtins.open(path, mode, *a, **k)
    monkeypatch.setattr(imagecache, "open", unreadable, raising=False)
    calls = []
    monkeypatch.setattr(ResizedImages, "_build", lambda self, *a: calls.append(1))
    ResizedImages(cache.paths, cache.resize, progress=False, root=cache.folder.parent)
    assert calls == [1]


def test_the_cli_refuses_an_unwritable_cache_folder_in_one_line_exit_2(tree, tmp_path, monkeypatch,
                                                                        capsys):
    """``lmoe-viz pretrain --decode cached`` where the cache cannot go: exit 2, one line
    naming the folder, the size and $LMOE_VIZ_CACHE, and no run folder written."""
    from lmoe_viz.cli import main
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "resized").write_text("a file where the folder would go")
    monkeypatch.setenv("LMOE_VIZ_CACHE", str(ro))
    out = tmp_path / "run"
    assert main(["pretrain", "--preset", "aircraft", "--data-root", str(tree), "--image-size", "32",
                 "--decode", "cached", "--weights", "none", "--device", "cpu", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(rf"{re.escape(str(ro))}/resized is not writable; it needs "
                                       r"\d+\.\d\d GiB: set LMOE_VIZ_CACHE", err[0]), err
    assert not (out / "checkpoint.pt").exists()


def test_the_build_prints_its_size_before_it_starts(tree, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LMOE_VIZ_CACHE", str(tmp_path / "fresh"))      # nothing built there yet
    cache = build_splits(_cfg(tree, "cached").resolved()).id_train.cache
    first = [l for l in capsys.readouterr().out.splitlines() if l.startswith("--decode cached")]
    assert first and f"resizing {len(cache.paths):,} ID images to 37 px once" in first[0]
    assert f"{cache.nbytes / 2**30:.2f} GiB in {cache.folder}" in first[0]


def test_an_interrupted_build_leaves_no_partial_and_the_next_removes_a_killed_ones(tree, monkeypatch):
    """Ctrl-C (or timeout's SIGINT) mid-build removes its reserved partial; a partial left by
    a builder killed outright is removed by the next one, which holds the lock."""
    from lmoe_viz.data import imagecache
    cache, _ = _built(tree)
    real = imagecache._fill

    def interrupted(args):
        raise KeyboardInterrupt
    with monkeypatch.context() as m:
        m.setattr(imagecache, "_fill", interrupted)
        with pytest.raises(KeyboardInterrupt):
            ResizedImages(cache.paths, cache.resize, workers=1, progress=False, root=cache.folder.parent)
    assert not list(cache.folder.glob(f"{cache.key}.partial-*")) and not cache.file.exists()
    killed = cache.folder / f"{cache.key}.partial-deadbeef"
    killed.write_bytes(b"\0" * 16)                   # SIGKILL: no finally ran
    monkeypatch.setattr(imagecache, "_fill", real)
    ResizedImages(cache.paths, cache.resize, workers=1, progress=False, root=cache.folder.parent)
    assert not killed.exists() and cache.file.is_file() and cache.meta.is_file()


def test_a_folder_that_refuses_the_lock_warns_and_builds(tree, monkeypatch):
    from lmoe_viz.data import imagecache
    cache, _ = _built(tree)

    def no_locks(fd, op):
        raise OSError(37, "No locks available")
    monkeypatch.setattr(imagecache.fcntl, "flock", no_locks)
    with pytest.warns(UserWarning, match=r"cannot be locked here \(No locks available\); building"):
        ResizedImages(cache.paths, cache.resize, workers=1, progress=False, root=cache.folder.parent)
    assert cache.file.is_file() and cache.meta.is_file()


def test_publishing_keeps_a_readable_cache_another_builder_linked_first(tree):
    """An unlocked folder: a second builder finishing after the first keeps the first's
    file (its readers' maps stay valid); an unreadable one is replaced."""
    cache = build_splits(_cfg(tree, "cached").resolved()).id_train.cache
    before = cache.file.stat().st_ino
    partial = cache.folder / f"{cache.key}.partial-test"
    partial.write_bytes(cache.file.read_bytes())
    cache._publish(partial)
    assert cache.file.stat().st_ino == before
    partial.unlink()
    cache.file.write_bytes(b"short")                   # unreadable as a cache
    partial.write_bytes(b"\0" * cache.nbytes)
    cache._publish(partial)
    assert cache.file.stat().st_size == cache.nbytes and cache.file.stat().st_ino != before
