"""Datasets: verified loaders for MNIST, Fashion-MNIST, digits and user data (IDX or .npz)."""

from lepton.data.batches import TensorBatches
from lepton.data.dataset import ImageDataset, images_to_tensor
from lepton.data.idx import idx_bytes, parse_idx, read_idx, write_idx
from lepton.data.mnist import load_fashion_mnist, load_mnist
from lepton.data.sources import DATASETS, load_dataset, load_digits, load_npz

__all__ = [
    "DATASETS",
    "ImageDataset",
    "TensorBatches",
    "idx_bytes",
    "images_to_tensor",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "load_mnist",
    "load_npz",
    "parse_idx",
    "read_idx",
    "write_idx",
]
