"""BatchNorm regimes of a training step (``--bn``) and the ``--recalibrate-bn`` diagnostic.

BatchNorm does two things in train mode: it normalises each forward's batch with that
batch's statistics, and it moves its running statistics (what evaluation uses) towards
them with momentum m (0.1). Which samples share a forward, and which forwards move the
running statistics, is the regime. It changes what a model does at test time, so a
comparison between methods is fair only under one regime, named in every row.

==========  ==============================================  =====================================
``--bn``    batch statistics during training                running statistics (evaluation)
==========  ==============================================  =====================================
separate    one forward per batch (ID, mixed, outliers),    updated by every forward: momentum
            each normalised by its own statistics           acts 2-3 times a step, on outlier
            (MixOE's code; default of MixOE)                and mixed batches as much as on ID
joint       one forward of all inputs of the step           updated once a step from all rows
            concatenated (ID, outliers, mixed): shared      (ID, outliers and mixed inputs
            statistics (LogitMix's code; default of         together)
            OE, Energy-OE and Logit MixOE)
id-stats    one forward per batch, as separate: the ID      updated by the ID forward alone; the
            batch is normalised by its own statistics,      other forwards leave them as they
            as it will be at evaluation                     are: evaluation uses ID statistics
==========  ==============================================  =====================================

The defaults are the reference codes' (faithful reproduction); ``id-stats`` is the regime
the Fashion-MNIST study uses for every row (study.py). It keeps every method's
training-time normalisation of ID data and its evaluation-time normalisation the same.
Running statistics taken from the ID rows of a *joint* forward do not: upstream layers
normalised those rows with ID-and-outlier statistics, so their statistics differ from
those of ID data normalised by ID statistics at evaluation, and the error compounds with
depth. Measured on digits (alpha 1, seed 0, results/digits/bn_table_idstats_over_joint.md):
OE 16.8% and Logit MixOE 11.2% accuracy, against 89-96% after recalibration;
hence ``id-stats`` runs separate forwards for every method. ``recalibrate`` recomputes the
running statistics of a trained model on ID training data (a cumulative average over one
pass, train-mode forwards without gradients): evaluated before and after, it shows how
much of a difference between two models is their BatchNorm statistics.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

BN_REGIMES = ("separate", "joint", "id-stats")
# the forward structure of each method in its reference code: methods.METHODS[m].reference_bn


def joint_forward(bn: str) -> bool:
    """Whether the step's inputs go through one concatenated forward under ``bn``."""
    return bn == "joint"


def _bn_layers(model: nn.Module) -> list:
    return [m for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


@contextlib.contextmanager
def frozen_running_stats(model: nn.Module, frozen: bool = True):
    """Within the block (when ``frozen``), train-mode BatchNorm layers of ``model`` still
    normalise with their batch's statistics but leave their running statistics and batch
    counter as they are (momentum 0 for PyTorch's own update; no extra work, no sync)."""
    if not frozen:
        yield
        return
    layers = _bn_layers(model)
    saved = [(layer.momentum, layer.num_batches_tracked.clone()) for layer in layers]
    for layer in layers:
        layer.momentum = 0.0
    try:
        yield
    finally:
        for layer, (momentum, tracked) in zip(layers, saved):
            layer.momentum = momentum
            layer.num_batches_tracked.copy_(tracked)


@torch.no_grad()
def recalibrate(model: nn.Module, dataset, device, batch_size: int = 128, seed: int = 0) -> int:
    """Recompute every BatchNorm layer's running statistics on ``dataset`` (ID training
    images, as the training loader gives them): reset, then one pass in train mode with a
    cumulative average (momentum None), in a seeded order. Returns the number of batches.
    The RNG states of the caller are left as they were."""
    from torch.utils.data import DataLoader
    layers = _bn_layers(model)
    if not layers:
        return 0
    was_training = model.training
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None
    model.train()
    batches = 0
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=True,
                            generator=torch.Generator().manual_seed(seed))
        for x, *_ in loader:
            model(x.to(device))
            batches += 1
    for layer, m in zip(layers, momenta):
        layer.momentum = m
    model.train(was_training)
    return batches
