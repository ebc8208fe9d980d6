"""The training data streams: ID batches each epoch and an endless outlier stream.

Order. Each pass is ``DistributedSampler``'s order (a permutation seeded with
``seed + pass``, trimmed to a multiple of the world size, every ``world``-th index from
``rank``), so one process and DDP ranks see what they saw with re-created samplers:

* ID: pass = epoch;
* outliers (``endless``): round 0 of epoch ``e`` is pass ``e``, round ``r > 0`` pass
  ``e * 1000 + r`` (seed + 1: the order of the earlier re-created iterators, kept so that
  committed results reproduce), each round trimmed to whole batches, one round after another for as long as the epoch
  asks. One iterator per epoch serves every round, so persistent loader workers are never
  respawned mid-epoch. Known flaw, kept: epoch 0's round ``r > 0`` is pass ``r``, the
  order of epoch ``r``'s round 0, so a stream that needs two rounds an epoch (OE, whose
  outlier batch is twice the ID batch) starts epoch 1 with epoch 0's second round again.
  Every outlier is still seen equally often; only that order repeats. Changing it changes
  every such run's numbers, the committed studies' OE runs among them, so a fix has to
  give those runs a new identity and retrain them.

Augmentation seeds. With loader workers (``num_workers > 0``) each item carries its own
seed, a function of (run seed, stream, pass, position in the global order): the torch and
python RNGs are seeded with it before the item's transform. Augmentations are then the same
whatever the number of workers, whether they persist across epochs, and after a resume,
and every DDP rank draws its own (positions differ across ranks). Without workers the
items draw from the main process's RNG, reseeded each epoch (runtime.epoch_seed).
"""
from __future__ import annotations

import random
from typing import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

#: outlier rounds per epoch never reach this: round r of epoch e is pass e * ROUNDS + r
ROUNDS = 1000


def pass_order(n: int, seed: int, pass_id: int, rank: int, world: int) -> list[int]:
    """This rank's share of pass ``pass_id``: DistributedSampler(shuffle, drop_last)."""
    s = DistributedSampler(range(n), world, rank, shuffle=True, seed=seed, drop_last=True)
    s.set_epoch(pass_id)
    return list(iter(s))


def share(n: int, rank: int, world: int) -> int:
    """Items of one pass on one rank."""
    return DistributedSampler(range(n), world, rank, shuffle=True, drop_last=True).num_samples


def item_seed(seed: int, stream: int, pass_id: int, position: int) -> int:
    """The augmentation seed of one item: a hash of (run seed, stream, pass, position in the
    global order) mod 2**63 (module doc)."""
    return (((seed * 1_000_003 + stream) * 1_000_033 + pass_id) * 1_000_037 + position) % 2**63


class StreamSampler(Sampler):
    """Indices (or ``(index, item seed)`` when ``seeded``) of epoch ``set_epoch(e)``.

    ``endless=False``: one pass (the ID stream). ``endless=True``: rounds of ``batch``-
    aligned passes forever (the outlier stream)."""

    def __init__(self, n: int, seed: int, rank: int, world: int, stream: int = 0,
                 endless: bool = False, batch: int = 1, seeded: bool = False):
        self.n, self.seed, self.rank, self.world = n, seed, rank, world
        self.stream, self.endless, self.batch, self.seeded = stream, endless, batch, seeded
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return share(self.n, self.rank, self.world)

    def _items(self, pass_id: int, limit: int | None = None):
        order = pass_order(self.n, self.seed, pass_id, self.rank, self.world)[:limit]
        if not self.seeded:
            return order
        return [(i, item_seed(self.seed, self.stream, pass_id, self.rank + k * self.world))
                for k, i in enumerate(order)]

    def __iter__(self) -> Iterator:
        if not self.endless:
            yield from self._items(self.epoch)
            return
        r, whole = 0, share(self.n, self.rank, self.world) // self.batch * self.batch
        while True:
            yield from self._items(self.epoch * ROUNDS + r if r else self.epoch, whole)
            r += 1


class SeededItems(Dataset):
    """``dataset[i]`` under the item's own seed (``(i, seed)`` keys; module doc)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        i, seed = key
        torch.manual_seed(seed)
        random.seed(seed)
        return self.dataset[i]


def stream_loader(dataset, batch_size: int, seed: int, rank: int, world: int, num_workers: int,
                  pin_memory: bool, stream: int = 0, endless: bool = False,
                  drop_last: bool = True) -> DataLoader:
    """A DataLoader over a StreamSampler; workers persist across epochs."""
    seeded = num_workers > 0
    sampler = StreamSampler(len(dataset), seed, rank, world, stream, endless, batch_size, seeded)
    return DataLoader(SeededItems(dataset) if seeded else dataset, batch_size=batch_size,
                      sampler=sampler, num_workers=num_workers, pin_memory=pin_memory,
                      drop_last=drop_last, persistent_workers=num_workers > 0)
