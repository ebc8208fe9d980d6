"""Interleaved timing: medians of repeated runs, variants alternated to cancel drift.

On a shared machine the speed drifts (other work, frequency scaling, caches). Timing
variant A for a while and then variant B puts that drift into the ratio A/B; alternating
them round by round, in forward then reverse order, and taking each variant's median
leaves it out. ``sync`` (``torch.cuda.synchronize`` on a GPU) ends every timed call.
"""
from __future__ import annotations

import contextlib
import statistics
import time
from typing import Callable


def interleaved(fns: dict, rounds: int, warmup: int = 1, sync: Callable | None = None) -> dict:
    """``{name: [seconds of each round]}`` for ``fns`` (``{name: callable}``): ``warmup``
    untimed calls of each, then ``rounds`` rounds calling each once."""
    sync = sync or (lambda: None)
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    sync()
    times = {k: [] for k in fns}
    names = list(fns)
    for r in range(rounds):
        for k in (names if r % 2 == 0 else names[::-1]):
            t0 = time.perf_counter()
            fns[k]()
            sync()
            times[k].append(time.perf_counter() - t0)
    return times


def medians(times: dict) -> dict:
    return {k: statistics.median(v) for k, v in times.items()}


def spread(values: list) -> float | None:
    """Interquartile range over the median: how noisy a timing was (0 = steady); with
    fewer than 4 values the full range over the median; None for one value."""
    if len(values) < 2:
        return None
    if len(values) < 4:
        return (max(values) - min(values)) / statistics.median(values)
    q = statistics.quantiles(values, n=4)
    return (q[2] - q[0]) / statistics.median(values)


def worst(*noises) -> float | None:
    """The larger noise of the timings behind a ratio (None where none is known)."""
    known = [n for n in noises if n is not None]
    return max(known) if known else None


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run the block with ``n`` torch threads (None: leave torch's setting as it is).

    The CPU step and extraction timings default to one thread: on a shared machine a
    second thread waits at every op's barrier for a core another process holds, which
    made their timings vary by several times (noise > 1 with 2 threads on 2 busy
    cores, ~0.15 with one)."""
    import torch
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
