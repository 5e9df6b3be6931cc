"""Datasets held as uint8 tensors, seeded batching and sharding, and on-device augmentation."""

from __future__ import annotations

from maelab.data.augment import augment, eval_transform, resized_crop, to_float
from maelab.data.batching import epoch_batches, epoch_permutation, steps_per_epoch
from maelab.data.cifar10 import find_cifar10, load_cifar10
from maelab.data.datasets import Dataset, balanced_subset, channel_stats, load_dataset
from maelab.data.download import download_folder
from maelab.data.pickles import restricted_load
from maelab.data.synthetic import make_synthetic

__all__ = [
    "Dataset",
    "augment",
    "balanced_subset",
    "channel_stats",
    "download_folder",
    "epoch_batches",
    "epoch_permutation",
    "eval_transform",
    "find_cifar10",
    "load_cifar10",
    "load_dataset",
    "make_synthetic",
    "resized_crop",
    "restricted_load",
    "steps_per_epoch",
    "to_float",
]
