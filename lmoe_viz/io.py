"""Atomic artifact writes and content hashes.

Every checkpoint, logit cache, metrics file and table is written to a temporary file in
the destination folder, flushed and fsynced, then renamed over the destination
(``os.replace`` is atomic on POSIX). A crash or a full disk leaves either the old file or
the new one, never a truncated file that a later run would trust.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import UserError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` on success."""
    path = Path(path)
    ensure_dir(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise UserError(f"cannot write in {path.parent} ({exc.strerror}); choose a writable "
                        "folder (--out)") from None
    os.close(fd)
    tmp = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)   # mkstemp creates 0600; artifacts are ordinary files
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno == errno.ENOSPC:
            raise UserError(f"disk full while writing {path}; the previous version is "
                            "kept: free space and run the same command again") from exc
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def ensure_dir(path: str | os.PathLike) -> Path:
    """Create folder ``path`` (and parents); one line naming it when that is impossible
    (a parent is a file, no permission, read-only filesystem)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create folder {path} ({exc.strerror or type(exc).__name__}); "
                        "choose a writable folder (--out)") from None
    return path


def check_can_create(path: str | os.PathLike) -> None:
    """Fail early, creating nothing, when folder ``path`` could not be made or written:
    its nearest existing ancestor must be a writable folder."""
    path = Path(path).absolute()
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"cannot create folder {path} ({probe} is a file); choose another "
                        "folder (--out)")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"cannot create folder {path} ({probe} is not writable); choose a "
                        "writable folder (--out)")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (atomic_path)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically, UTF-8 encoded."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` to ``path`` atomically as JSON (indent 2, sorted keys, final newline); what
    JSON cannot encode: numpy / torch scalars and size-1 arrays as numbers (``.item()``),
    larger arrays and tensors as lists (``.tolist()``), paths as strings, TypeError for
    anything else."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def atomic_save(path: str | os.PathLike, writer: Callable[[Any], None]) -> None:
    """Call ``writer(buffer)`` and write the buffer atomically (torch.save, np.savez, ...)."""
    buf = io.BytesIO()
    writer(buf)
    atomic_write_bytes(path, buf.getvalue())


def _json_default(obj: Any) -> Any:
    # numpy / torch scalars and size-1 arrays as numbers (as the files written before hold
    # them), larger arrays and tensors as (nested) lists
    if hasattr(obj, "item") and _numel(obj) == 1:
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _numel(obj) -> int:
    n = getattr(obj, "numel", None)               # torch
    return int(n()) if callable(n) else int(getattr(obj, "size", 1))    # numpy


def read_json(path: str | os.PathLike) -> Any:
    """The JSON content of the file ``path`` (UTF-8)."""
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def cache_home() -> Path | None:
    """Where derived data is cached across runs (the WebVision listing, the embedded
    presets' outlier crops): ``$LMOE_VIZ_CACHE``, else ``$XDG_CACHE_HOME/lmoe_viz``, else
    ``~/.cache/lmoe_viz``; ``LMOE_VIZ_CACHE=off`` turns caching off (None)."""
    env = os.environ.get("LMOE_VIZ_CACHE")
    if env is not None:
        return None if env.strip().lower() in ("off", "0", "") else Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lmoe_viz"


def cached_array(name: str, key: Any, build: Callable[[], Any]):
    """``build()`` (a numpy array), cached as ``<cache_home>/<name>/<hash of key>.npy``.

    A missing or unreadable entry is rebuilt (with a warning when unreadable) and written
    atomically; an unwritable cache folder only costs the rebuild next time."""
    import warnings

    import numpy as np
    home = cache_home()
    if home is None:
        return build()
    path = home / name / f"{dict_hash(key)}.npy"
    if path.is_file():
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            warnings.warn(f"cache file {path} is unreadable ({type(exc).__name__}); rebuilding it",
                          stacklevel=2)
    arr = build()
    try:
        atomic_save(path, lambda buf: np.save(buf, arr, allow_pickle=False))
    except (OSError, UserError) as exc:
        warnings.warn(f"could not write cache file {path} ({exc}); set LMOE_VIZ_CACHE to a "
                      "writable folder", stacklevel=2)
    return arr


_SHA_MEMO: dict = {}


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """The file's sha256, remembered per (path, inode, size, mtime): a sweep or study that
    checks many runs against one initial checkpoint reads it once per process. An atomic
    rewrite (io.atomic_path) gives a new inode, so a replaced file is hashed again."""
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _SHA_MEMO:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(chunk), b""):
                h.update(block)
        _SHA_MEMO[key] = h.hexdigest()
    return _SHA_MEMO[key]


def dict_hash(obj: Any) -> str:
    """A short, stable hash of a JSON-serialisable object (configs, splits)."""
    text = json.dumps(obj, sort_keys=True, default=_json_default)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def array_digest(arr) -> str:
    """A short hash of an array's content, dtype and shape (keys of derived caches)."""
    import numpy as np
    a = np.ascontiguousarray(np.asarray(arr))
    h = hashlib.sha256(f"{a.dtype}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()[:16]
