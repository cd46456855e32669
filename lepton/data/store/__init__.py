"""The packed data store (``.lds``): independent checksummed blocks, an index, random access, fsspec URLs.

The names below load on first use (:mod:`lepton.utils.lazy`), so packing runs without loading torch."""

from lepton.utils.lazy import lazy_exports

__all__ = [
    "DEFAULT_BLOCK_SAMPLES",
    "PackedImageDataset",
    "SeededBatchSampler",
    "Store",
    "StoreBatches",
    "StoreSource",
    "StoreWriter",
    "VerifyReport",
    "bits_per_pixel",
    "default_block_samples",
    "inspect_store",
    "load_packed",
    "open_store",
    "pack_dataset",
    "pack_image_folder",
    "resolve_codec",
    "store_batches",
    "verify_store",
]

lazy_exports(
    __name__,
    {
        "lepton.data.store.dataset": ("PackedImageDataset", "SeededBatchSampler", "StoreBatches", "store_batches"),
        "lepton.data.store.format": ("DEFAULT_BLOCK_SAMPLES", "Store", "StoreWriter", "open_store", "resolve_codec"),
        "lepton.data.store.pack": (
            "VerifyReport",
            "bits_per_pixel",
            "default_block_samples",
            "inspect_store",
            "load_packed",
            "pack_dataset",
            "pack_image_folder",
            "verify_store",
        ),
        "lepton.data.store.source": ("StoreSource",),
    },
)
