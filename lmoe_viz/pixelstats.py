"""Detectors that look only at pixels: how far low-level statistics alone get.

Two uses (the claims study, study.py):

* the **shortcut check**: can intensity statistics tell the ID training images from the
  training outliers? If they can, outlier exposure may learn "background not black ->
  uniform", which held-out clothing on black never triggers. A clean outlier set keeps the
  pixel-statistics detector at AUROC <= ``SHORTCUT_MAX`` (0.75);
* **reference rows** beside every trained model and OOD test set, so a reader sees what a
  model adds over a trivial detector.

Detectors (AUROC with the first set as the positive class, as metrics.auroc):

* ``pixel-stats``: a logistic regression on ``pixel_features`` (a 16-bin intensity
  histogram on [0, 1], mean, contrast = standard deviation, background fraction = share of
  pixels <= 5/255), standardised, scored out of fold by 5-fold stratified cross-validation
  (seed 0). Against a test set it is fitted on that test set's own folds: an upper
  reference of what these statistics can do, not a detector one could deploy;
* ``background``: the background fraction alone, no fitting but its direction (the one that
  suits the two sets: the larger of AUROC and 1 - AUROC, a trivial detector's best case);
* ``small-cnn``: a two-layer CNN trained to tell the two sets apart (3 epochs, Adam) on a
  stratified 80% and scored on the other 20%: shape and texture cues, which the
  statistics above cannot see.

Images are (N, 1, H, W) arrays in [0, 1], before any normalisation.
"""
from __future__ import annotations

import numpy as np

from .metrics import auroc

#: a pixel at or below this value counts as background (data/outliers.BACKGROUND)
BACKGROUND = 5 / 255
HIST_BINS = 16
FOLDS = 5
#: the shortcut check passes when the pixel-statistics detector stays at or below this
SHORTCUT_MAX = 0.75
DETECTORS = ("pixel-stats", "background", "small-cnn")


def pixel_features(images) -> np.ndarray:
    """(N, 19): 16-bin histogram (fractions), mean, contrast, background fraction."""
    x = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
    edges = np.linspace(0.0, 1.0, HIST_BINS + 1)
    idx = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, HIST_BINS - 1)
    hist = np.stack([(idx == b).mean(1) for b in range(HIST_BINS)], axis=1)
    return np.column_stack([hist, x.mean(1), x.std(1), (x <= BACKGROUND).mean(1)])


def background_fraction(images) -> np.ndarray:
    """Per image, the share of pixels <= BACKGROUND (5/255): the ``background`` detector's score."""
    x = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
    return (x <= BACKGROUND).mean(1)


def pixel_stats_auroc(pos, neg, folds: int = FOLDS, seed: int = 0) -> float:
    """Cross-validated AUROC of the logistic regression on ``pixel_features``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    f = np.concatenate([pixel_features(pos), pixel_features(neg)])
    y = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    p = cross_val_predict(model, f, y, cv=cv, method="predict_proba")[:, 1]
    return auroc(p[y == 1], p[y == 0])


def background_auroc(pos, neg) -> float:
    """AUROC of the background fraction in the direction that suits the two sets (the
    larger of AUROC and 1 - AUROC): a trivial detector's best case."""
    a = auroc(background_fraction(pos), background_fraction(neg))
    return max(a, 1.0 - a)


def small_cnn_auroc(pos, neg, epochs: int = 3, seed: int = 0, limit: int = 6000) -> float:
    """Held-out AUROC of a small CNN trained to tell ``pos`` from ``neg`` (module doc);
    at most ``limit`` images of each (a seeded sample)."""
    import torch
    from torch import nn
    rng = np.random.RandomState(seed)
    a = np.asarray(pos, np.float32)[np.sort(rng.permutation(len(pos))[:limit])]
    b = np.asarray(neg, np.float32)[np.sort(rng.permutation(len(neg))[:limit])]
    x = torch.from_numpy(np.concatenate([a, b]))
    y = torch.from_numpy(np.concatenate([np.ones(len(a)), np.zeros(len(b))]).astype(np.float32))
    test = np.zeros(len(y), bool)
    for cls in (0, 1):                              # stratified 20% held out
        rows = np.flatnonzero(y.numpy() == cls)
        test[rng.permutation(rows)[: len(rows) // 5]] = True
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(32, 1))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    train_rows = torch.from_numpy(np.flatnonzero(~test))
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for batch in train_rows[torch.randperm(len(train_rows), generator=gen)].split(128):
            loss = nn.functional.binary_cross_entropy_with_logits(net(x[batch])[:, 0], y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        s = net(x[torch.from_numpy(test)])[:, 0].numpy()
    t = y.numpy()[test]
    return auroc(s[t == 1], s[t == 0])


def detector_aurocs(pos, neg, detectors=DETECTORS) -> dict:
    """{detector: AUROC} of ``pos`` (positive) against ``neg``."""
    fns = {"pixel-stats": pixel_stats_auroc, "background": background_auroc,
           "small-cnn": small_cnn_auroc}
    return {d: float(fns[d](pos, neg)) for d in detectors}


def raw_images(dataset, splits) -> np.ndarray:
    """The images of an embedded preset's dataset in [0, 1] (its normalisation undone)."""
    mean, std = splits.info["pixel_norm"]
    return (dataset.images.numpy() * std + mean).clip(0, 1)
