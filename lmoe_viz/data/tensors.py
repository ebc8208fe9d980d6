"""In-memory datasets for the embedded presets (digits, Fashion-MNIST, photo outliers)."""
from __future__ import annotations

import torch
from torch.utils.data import Dataset


class TensorImages(Dataset):
    """Images held as one tensor; items are ``(image, label, sample_id)``.

    ``augment`` is ``None``, ``"shift"`` (pad 1-2 px and crop back, torch RNG) or
    ``"shift_flip"`` (the same plus a horizontal flip with probability 1/2). The image
    size never changes: small presets train at their native size.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, ids: torch.Tensor,
                 augment: str | None = None, pad: int = 2):
        assert len(images) == len(labels) == len(ids)
        self.images, self.labels, self.ids = images.float(), labels.long(), ids.long()
        self.augment, self.pad = augment, pad

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        x = self.images[i]
        if self.augment:
            p = self.pad
            h, w = x.shape[-2:]
            padded = torch.nn.functional.pad(x[None], (p, p, p, p), mode="replicate")[0]
            dy, dx = torch.randint(0, 2 * p + 1, (2,)).tolist()
            x = padded[:, dy:dy + h, dx:dx + w]
            if self.augment == "shift_flip" and torch.rand(()) < 0.5:
                x = x.flip(-1)
        return x, self.labels[i], self.ids[i]
