"""The training streams (streams.py): the order the earlier re-created samplers gave, one
endless outlier iterator, and per-item augmentation seeds with loader workers."""
import torch
from torch.utils.data import Dataset

from lmoe_viz.streams import StreamSampler, stream_loader


def _shard(n, seed, pass_id, rank, world):
    """Oracle written from DistributedSampler's documented rule, not with it: a
    permutation seeded with seed + pass, trimmed to a multiple of world, rank::world."""
    g = torch.Generator()
    g.manual_seed(seed + pass_id)
    perm = torch.randperm(n, generator=g).tolist()
    total = n // world * world
    return perm[:total][rank:total:world]


def test_one_pass_is_distributed_samplers_order():
    for rank, world in ((0, 1), (0, 3), (2, 3)):
        s = StreamSampler(50, seed=7, rank=rank, world=world)
        s.set_epoch(4)
        assert list(s) == _shard(50, 7, 4, rank, world)
        assert len(s) == 50 // world


def test_endless_outlier_rounds_are_whole_batches_in_the_old_pass_order():
    s = StreamSampler(23, seed=3, rank=0, world=1, endless=True, batch=5)
    s.set_epoch(2)
    it = iter(s)
    got = [next(it) for _ in range(3 * 20)]
    # round 0 is pass 2 (the epoch), round r > 0 is pass 2 * 1000 + r; 23 -> 20 items a round
    expect = _shard(23, 3, 2, 0, 1)[:20] + _shard(23, 3, 2001, 0, 1)[:20] + _shard(23, 3, 2002, 0, 1)[:20]
    assert got == expect


class RandomItems(Dataset):
    """Items that are nothing but a draw of the torch RNG (what an augmentation sees)."""

    def __len__(self):
        return 40

    def __getitem__(self, i):
        return torch.rand(3), torch.tensor(i), torch.tensor(i)


def _epoch(loader, epoch):
    loader.sampler.set_epoch(epoch)
    return torch.cat([x for x, _, _ in loader])


def test_worker_augmentations_do_not_depend_on_the_number_of_workers_or_persistence():
    one = stream_loader(RandomItems(), 4, seed=0, rank=0, world=1, num_workers=1, pin_memory=False)
    two = stream_loader(RandomItems(), 4, seed=0, rank=0, world=1, num_workers=2, pin_memory=False)
    assert two.persistent_workers
    e0, e1 = _epoch(two, 0), _epoch(two, 1)      # the same persistent workers serve both epochs
    assert torch.equal(_epoch(one, 0), e0) and torch.equal(_epoch(one, 1), e1)
    assert not torch.equal(e0, e1)


def test_each_ddp_rank_draws_its_own_augmentations():
    """Ranks of one run share a seed; the workers of each must still draw differently."""
    r0 = stream_loader(RandomItems(), 4, seed=0, rank=0, world=2, num_workers=1, pin_memory=False)
    r1 = stream_loader(RandomItems(), 4, seed=0, rank=1, world=2, num_workers=1, pin_memory=False)
    torch.manual_seed(0)            # every DDP process seeds its main RNG alike (train.py)
    a = _epoch(r0, 0)
    torch.manual_seed(0)
    b = _epoch(r1, 0)
    assert len(a) == len(b) == 20
    assert not torch.isclose(a[:, None], b[None]).any()
