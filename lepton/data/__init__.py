"""Datasets: verified loaders for MNIST, Fashion-MNIST, digits, CIFAR (binary), image folders and user arrays.

The names below load on first use (:mod:`lepton.utils.lazy`), so ``lepton.data.options`` imports without torch.
"""

from lepton.utils.lazy import lazy_exports

__all__ = [
    "DATASETS",
    "ImageDataset",
    "SourceOptions",
    "TensorBatches",
    "channel_stats",
    "idx_bytes",
    "images_to_tensor",
    "load_cifar",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "load_image_folder",
    "load_mnist",
    "load_npz",
    "load_training_data",
    "parse_idx",
    "read_idx",
    "write_idx",
]

lazy_exports(
    __name__,
    {
        "lepton.data.batches": ("TensorBatches",),
        "lepton.data.cifar": ("load_cifar",),
        "lepton.data.dataset": ("ImageDataset", "images_to_tensor"),
        "lepton.data.folder": ("load_image_folder",),
        "lepton.data.idx": ("idx_bytes", "parse_idx", "read_idx", "write_idx"),
        "lepton.data.mnist": ("load_fashion_mnist", "load_mnist"),
        "lepton.data.options": ("SourceOptions",),
        "lepton.data.sources": ("DATASETS", "load_dataset", "load_digits", "load_npz", "load_training_data"),
        "lepton.data.stats": ("channel_stats",),
    },
)
