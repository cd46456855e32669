"""Datasets in and out of the packed store: ``pack_dataset``, ``pack_image_folder`` (streaming), ``load_packed``,
``verify_store``, ``inspect_store``."""

from __future__ import annotations

import lzma
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel

from lepton.data.codecs import Codec
from lepton.data.dataset import ImageDataset
from lepton.data.store.format import DEFAULT_BLOCK_SAMPLES, IMAGES, LABELS, Store, StoreWriter
from lepton.errors import DataError, FormatError

if TYPE_CHECKING:
    from lepton.data.folder import FolderPlan

SPLITS = ("train", "test")


MAX_DEFAULT_BLOCK_BYTES = 8 << 20


def default_block_samples(sample_bytes: int) -> int:
    """Samples per block when none are asked for: :data:`DEFAULT_BLOCK_SAMPLES`, or fewer for large samples so
    a block holds at most :data:`MAX_DEFAULT_BLOCK_BYTES` (8 MiB) of raw pixels. MNIST (784 B) and CIFAR (3,072 B)
    keep 1,000 per block; 96x96 RGB (27,648 B) get 303. What a streaming pack holds is a few blocks per encoding
    thread and each encoder's working memory, so smaller blocks of large images bound it (measured:
    benchmarks/pack_memory.py)."""
    return max(1, min(DEFAULT_BLOCK_SAMPLES, MAX_DEFAULT_BLOCK_BYTES // max(1, sample_bytes)))


def pack_dataset(
    data: ImageDataset,
    path: str | os.PathLike,
    *,
    image_codec: str | Codec = "auto",
    label_codec: str | Codec = "general",
    block_samples: int = DEFAULT_BLOCK_SAMPLES,
    splits: tuple[str, ...] = SPLITS,
    attrs: dict[str, Any] | None = None,
    progress: Callable[[str, int], None] | None = None,
    fit_progress: Callable[[str, float, float], None] | None = None,
) -> Path:
    """Write ``data``'s splits (fields ``images`` and ``labels``) to a store at ``path``, losslessly.
    ``progress(split, samples_done)`` after each block; ``fit_progress(field, done, total)`` while a learned
    codec (``lepton-cm``) is fitted to a field (on the first split; see :func:`lepton.data.codecs.fit_codec`)."""
    meta = {"name": data.name, "classes": list(data.classes), "source": data.source, **(attrs or {})}
    with StoreWriter(path, attrs=meta, block_samples=block_samples) as w:
        for split in splits:
            x, y = (data.x_train, data.y_train) if split == "train" else (data.x_test, data.y_test)
            specs = w.add_split(
                split,
                {IMAGES: x, LABELS: y},
                {IMAGES: image_codec, LABELS: label_codec},
                progress=None if progress is None else (lambda done, s=split: progress(s, done)),
                fit_progress=fit_progress,
            )
            # the next split reuses the codecs as chosen and fitted here (a learned model is fitted once, on
            # the first split, and stored once: a later split's fields point at the same bytes)
            image_codec, label_codec = specs[IMAGES].codec, specs[LABELS].codec
    return Path(path)


def pack_image_folder(
    plan: FolderPlan,
    path: str | os.PathLike,
    *,
    image_codec: str | Codec = "auto",
    label_codec: str | Codec = "general",
    block_samples: int | None = None,
    progress: Callable[[str, int], None] | None = None,
    fit_progress: Callable[[str, float, float], None] | None = None,
) -> Path:
    """Write an image folder (``plan``, from :func:`lepton.data.folder.plan_image_folder`) to a store at ``path``,
    streaming: images are decoded and encoded one block at a time, so memory holds a few blocks, never the
    dataset. Codecs are chosen (and a learned codec fitted) on the first block of the training split.
    ``block_samples`` None: :func:`default_block_samples` of the folder's image size."""
    meta = {"name": plan.root.name, "classes": list(plan.classes), "source": f"{plan.root} (image folder)"}
    if block_samples is None:
        block_samples = default_block_samples((3 if plan.rgb else 1) * plan.size[0] * plan.size[1])
    with StoreWriter(path, attrs={**meta, "notes": plan.notes}, block_samples=block_samples) as w:
        for split in SPLITS:
            specs = w.add_split_blocks(
                split,
                plan.blocks(split, block_samples),
                {IMAGES: image_codec, LABELS: label_codec},
                progress=None if progress is None else (lambda done, s=split: progress(s, done)),
                fit_progress=fit_progress,
            )
            image_codec, label_codec = specs[IMAGES].codec, specs[LABELS].codec
    return Path(path)


def load_packed(location: str | os.PathLike | Store, **store_options: Any) -> ImageDataset:
    """The :class:`ImageDataset` a store holds (reduced stores are reconstructed by ``lepton.data.reduce``)."""
    store = location if isinstance(location, Store) else Store(location, **store_options)
    if "reduction" in store.attrs:
        from lepton.data.reduce import reconstruct

        return reconstruct(store)
    parts = []
    for split in SPLITS:
        if split not in store.splits:
            raise DataError(f"{store.location}: needs splits 'train' and 'test', has {', '.join(store.splits)}")
        parts += [store.read_field(split, IMAGES), store.read_field(split, LABELS)]
    return ImageDataset(
        str(store.attrs.get("name", "packed")),
        *parts,
        classes=tuple(store.attrs.get("classes", ())),
        source=store.location,
    )


class VerifyReport(BaseModel):
    location: str
    file_bytes: int
    blocks: int
    arrays: int
    samples: dict[str, int]
    decoded_bytes: int
    seconds: float
    errors: list[str]

    @property
    def ok(self) -> bool:
        return not self.errors


def verify_store(
    location: str | os.PathLike | Store, *, reference: ImageDataset | FolderPlan | None = None, **store_options: Any
) -> VerifyReport:
    """Check the index, every block's checksum and decode; with ``reference`` (the arrays, or an image folder's
    plan, decoded again block by block), compare every sample too."""
    t0 = time.perf_counter()
    store = location if isinstance(location, Store) else Store(location, cache_bytes=0, **store_options)
    errors: list[str] = []
    blocks = decoded = 0
    for name, info in store.splits.items():
        for field in info.fields:
            for i in range(len(info.blocks)):
                blocks += 1
                try:
                    out = store.read_block(name, field, i)
                except FormatError as e:
                    errors.append(str(e))
                    continue
                decoded += out.nbytes
                if reference is not None and name in SPLITS and field in (IMAGES, LABELS):
                    ref = _reference(reference, name, field, *info.block_range(i))
                    if ref.dtype != out.dtype or not np.array_equal(ref, out):
                        errors.append(f"block {i} of split {name!r}, field {field!r} differs from the source data")
    for name in store.arrays:
        try:
            decoded += store.read_array(name).nbytes
        except FormatError as e:
            errors.append(str(e))
    return VerifyReport(
        location=store.location,
        file_bytes=store.file_bytes,
        blocks=blocks,
        arrays=len(store.arrays),
        samples={k: s.samples for k, s in store.splits.items()},
        decoded_bytes=decoded,
        seconds=time.perf_counter() - t0,
        errors=errors,
    )


def _reference(reference: ImageDataset | FolderPlan, split: str, field: str, start: int, stop: int) -> np.ndarray:
    """Samples ``start:stop`` of ``field`` in ``split`` of the source a store was packed from."""
    if isinstance(reference, ImageDataset):
        return getattr(reference, f"{'x' if field == IMAGES else 'y'}_{split}")[start:stop]
    if field == LABELS:
        return np.array([label for _, label in reference.items(split)[start:stop]], dtype=np.int64)
    return reference.decode(split, start, stop)[0]


def xz_bytes(array: np.ndarray) -> int:
    """Size of ``xz -9e`` of the array's raw bytes as one stream (the general-purpose reference)."""
    return len(lzma.compress(np.ascontiguousarray(array).tobytes(), preset=9 | lzma.PRESET_EXTREME))


def inspect_store(
    location: str | os.PathLike | Store, *, xz: bool = False, **store_options: Any
) -> list[dict[str, Any]]:
    """One row per split and field: codec, samples, raw and stored bytes, bits per value, ratios; then the
    store's overhead (header, index, footer) and the whole file. ``xz`` adds the xz -9e size of each field.
    A field with a learned model also has ``model_bytes`` (counted in its ``stored_bytes``) and ``model``:
    its size ("183,452 B"), or "shared with split 'train'" when it reuses a model counted under that split."""
    store = location if isinstance(location, Store) else Store(location, **store_options)
    rows: list[dict[str, Any]] = []
    raw_total = 0
    for name, info in store.splits.items():
        for field, spec in info.fields.items():
            raw = info.samples * spec.sample_bytes
            stored = store.field_bytes(name, field)
            raw_total += raw
            values = info.samples * max(1, int(np.prod(spec.shape)))
            owner = store.model_owner(name, field)
            row = {
                "split": name,
                "field": field,
                "dtype": spec.dtype.name,
                "shape": str(list(spec.shape)),
                "codec": spec.codec.name,
                "samples": info.samples,
                "blocks": len(info.blocks),
                "raw_bytes": raw,
                "stored_bytes": stored,
                "bits_per_value": 8 * stored / values if info.samples else 0.0,
                "ratio_vs_raw": raw / stored if stored else 0.0,
            }
            if owner is not None:
                row["model_bytes"] = spec.model[1] if owner == (name, field) else 0
                row["model"] = f"{spec.model[1]:,} B" if owner == (name, field) else _shared_with(owner, name)
            if xz:
                ref = xz_bytes(store.read_field(name, field))
                row |= {"xz_bytes": ref, "ratio_vs_xz": ref / stored if stored else 0.0}
            rows.append(row)
    for name, (spec, (_, length, _)) in store.arrays.items():
        raw_total += spec.sample_bytes
        rows.append(
            {
                "split": "(array)",
                "field": name,
                "dtype": spec.dtype.name,
                "shape": str(list(spec.shape)),
                "codec": spec.codec.name,
                "raw_bytes": spec.sample_bytes,
                "stored_bytes": length,
            }
        )
    overhead = store.file_bytes - sum(r["stored_bytes"] for r in rows)
    rows.append({"split": "(store)", "field": "header+index+footer", "stored_bytes": overhead})
    total = {
        "split": "(store)",
        "field": "total",
        "raw_bytes": raw_total,
        "stored_bytes": store.file_bytes,
        "ratio_vs_raw": raw_total / store.file_bytes,
    }
    if xz:
        total["xz_bytes"] = sum(r.get("xz_bytes", 0) for r in rows)
        total["ratio_vs_xz"] = total["xz_bytes"] / store.file_bytes
    rows.append(total)
    return rows


def _shared_with(owner: tuple[str, str], split: str) -> str:
    """How an inspect row names the field that holds (and is counted for) a model it reuses."""
    return f"shared with split {owner[0]!r}" + ("" if owner[0] != split else f", field {owner[1]!r}")


def bits_per_pixel(store: Store) -> float:
    """Every byte of the file (images, labels, index, header, footer) in bits, per image pixel stored."""
    reduced = store.attrs.get("reduction")
    if isinstance(reduced, dict) and isinstance(reduced.get("image_shape"), list):
        pixels = sum(info.samples for info in store.splits.values()) * int(np.prod(reduced["image_shape"]))
    else:
        pixels = sum(
            info.samples * int(np.prod(info.fields[IMAGES].shape))
            for info in store.splits.values()
            if IMAGES in info.fields
        )
    return 8 * store.file_bytes / pixels if pixels else 0.0
