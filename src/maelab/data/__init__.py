"""Datasets held as uint8 tensors, seeded batching and sharding, and on-device augmentation."""

from __future__ import annotations

from maelab.data.augment import augment, eval_transform, resized_crop, to_float
from maelab.data.batching import epoch_batches, epoch_permutation, steps_per_epoch
from maelab.data.cifar10 import find_cifar10, load_cifar10
from maelab.data.datasets import (
    Dataset,
    channel_stats,
    find_files,
    load_dataset,
    on_disk,
    require_labels,
)
from maelab.data.download import download_folder
from maelab.data.folder import FolderImages, load_folder, load_image_folder, load_unlabeled_folder
from maelab.data.locate import find_data
from maelab.data.pickles import restricted_load
from maelab.data.props import find_props, load_props
from maelab.data.subsets import balanced_subset, subset_index
from maelab.data.synthetic import make_synthetic

__all__ = [
    "Dataset",
    "FolderImages",
    "augment",
    "balanced_subset",
    "channel_stats",
    "download_folder",
    "epoch_batches",
    "epoch_permutation",
    "eval_transform",
    "find_cifar10",
    "find_data",
    "find_files",
    "find_props",
    "load_cifar10",
    "load_dataset",
    "load_folder",
    "load_image_folder",
    "load_props",
    "load_unlabeled_folder",
    "make_synthetic",
    "on_disk",
    "require_labels",
    "resized_crop",
    "restricted_load",
    "steps_per_epoch",
    "subset_index",
    "to_float",
]
