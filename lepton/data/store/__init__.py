"""The packed data store (``.lds``): independent checksummed blocks, an index, random access, fsspec URLs."""

from lepton.data.store.dataset import PackedImageDataset, SeededBatchSampler, StoreBatches, store_batches
from lepton.data.store.format import DEFAULT_BLOCK_SAMPLES, Store, StoreWriter, open_store, resolve_codec
from lepton.data.store.pack import VerifyReport, bits_per_pixel, inspect_store, load_packed, pack_dataset, verify_store
from lepton.data.store.source import StoreSource

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
    "inspect_store",
    "load_packed",
    "open_store",
    "pack_dataset",
    "resolve_codec",
    "store_batches",
    "verify_store",
]
