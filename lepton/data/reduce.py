"""Lossy reduction of an image dataset into a smaller packed store, always reported against accuracy.

Three opt-in methods, each fitted on the training images only:

- ``pca_variance``: PCA keeping that fraction of variance (scikit-learn); each component's coefficients are
  scaled to int8 (per-component scale = max |coefficient| / 127) and entropy-coded by the store's codecs.
- ``bits``: bit-depth reduction, keeping the top ``bits`` bits of every pixel.
- ``select_variance`` / ``select_mi``: feature selection over the flattened pixels (variance threshold, or the
  ``K`` pixels with the highest mutual information with the label); dropped pixels are filled with their
  training mean on reconstruction.

The reduced store records its method in ``attrs["reduction"]``; :func:`reconstruct` turns it back into uint8
images (``lepton.data.store.load_packed`` calls it). The accuracy check is a function the caller passes
(``lepton.train.job.accuracy_check`` trains a model briefly): it runs on the reconstructed training images and
on the original ones (same samples) and both are tested on the original test images. The data layer trains
nothing itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
from pydantic import BaseModel, Field, model_validator

from lepton.config import StrictModel
from lepton.data.dataset import ImageDataset
from lepton.data.store.format import LABELS, Store, StoreWriter
from lepton.errors import FormatError

PCA_FIELD, BITS_FIELD, SELECT_FIELD = "coefficients", "images", "features"


class ReduceConfig(StrictModel):
    """One lossy method (exactly one of the four method fields) and the short accuracy check."""

    pca_variance: float | None = Field(None, gt=0, lt=1, description="PCA variance target")
    bits: int | None = Field(None, ge=1, le=7, description="bits kept per pixel")
    select_variance: float | None = Field(None, ge=0, description="drop pixels whose variance is below this")
    select_mi: int | None = Field(None, ge=1, description="keep the K pixels with the most mutual information")
    train_samples: int = Field(10000, ge=100, description="training images of the accuracy check")
    epochs: int = Field(1, ge=1, le=100, description="epochs of the accuracy check")
    seed: int = Field(0, ge=0)
    model: str = Field("lenet5", description="model of the accuracy check (lenet-300-100 for images under 12x12)")

    @model_validator(mode="after")
    def _one_method(self) -> ReduceConfig:
        chosen = [k for k in ("pca_variance", "bits", "select_variance", "select_mi") if getattr(self, k) is not None]
        if len(chosen) != 1:
            raise ValueError(
                f"choose exactly one lossy method (pca_variance, bits, select_variance, select_mi); "
                f"got {chosen or 'none'}"
            )
        return self

    @property
    def label(self) -> str:
        if self.pca_variance is not None:
            return f"pca {self.pca_variance:g}"
        if self.bits is not None:
            return f"{self.bits}-bit"
        if self.select_variance is not None:
            return f"variance > {self.select_variance:g}"
        return f"mutual information top {self.select_mi}"


class ReduceRow(BaseModel):
    data: str
    bytes: int
    ratio: float
    test_accuracy: float
    accuracy_delta: float


class ReduceReport(BaseModel):
    method: str
    params: dict[str, Any]
    raw_bytes: int
    store_bytes: int
    ratio: float
    rows: list[ReduceRow]
    note: str


def _flat(x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), -1)


def write_reduced(data: ImageDataset, path: str | os.PathLike, cfg: ReduceConfig) -> Store:
    """Fit the method on ``data.x_train``, write the reduced store at ``path`` and open it."""
    shape = list(data.x_train.shape[1:])
    xtr, xte = _flat(data.x_train), _flat(data.x_test)
    attrs: dict[str, Any] = {"name": data.name, "classes": list(data.classes), "source": data.source}
    arrays: dict[str, np.ndarray] = {}
    if cfg.pca_variance is not None:
        from sklearn.decomposition import PCA

        pca = PCA(n_components=cfg.pca_variance, svd_solver="covariance_eigh").fit(xtr.astype(np.float32))
        mean, comps = pca.mean_.astype(np.float32), pca.components_.astype(np.float32)
        ztr, zte = (xtr.astype(np.float32) - mean) @ comps.T, (xte.astype(np.float32) - mean) @ comps.T
        scale = np.maximum(np.abs(ztr).max(axis=0), 1e-6).astype(np.float32) / 127
        field, (ftr, fte) = PCA_FIELD, (_quantize(ztr, scale), _quantize(zte, scale))
        arrays = {"pca.mean": mean, "pca.components": comps, "pca.scale": scale}
        attrs["reduction"] = {
            "method": "pca",
            "variance": cfg.pca_variance,
            "components": int(comps.shape[0]),
            "image_shape": shape,
        }
    elif cfg.bits is not None:
        field, (ftr, fte) = BITS_FIELD, (data.x_train >> (8 - cfg.bits), data.x_test >> (8 - cfg.bits))
        attrs["reduction"] = {"method": "bits", "bits": cfg.bits, "image_shape": shape}
    else:
        keep = _select(xtr, data.y_train, cfg)
        fill = np.rint(xtr.mean(axis=0)).astype(np.uint8)
        field, (ftr, fte) = SELECT_FIELD, (xtr[:, keep], xte[:, keep])
        arrays = {"select.indices": keep.astype(np.int32), "select.fill": fill}
        attrs["reduction"] = {
            "method": "select",
            "features": int(len(keep)),
            "image_shape": shape,
            "rule": "variance" if cfg.select_variance is not None else "mutual_information",
        }
    with StoreWriter(path, attrs=attrs) as w:
        for split, f, y in (("train", ftr, data.y_train), ("test", fte, data.y_test)):
            w.add_split(split, {field: f, LABELS: y}, {field: "auto", LABELS: "general"})
        for name, a in arrays.items():
            w.add_array(name, a)
    return Store(path)


def _quantize(z: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(z / scale), -127, 127).astype(np.int8)


def _select(x: np.ndarray, y: np.ndarray, cfg: ReduceConfig) -> np.ndarray:
    if cfg.select_variance is not None:
        keep = np.nonzero(x.var(axis=0) > cfg.select_variance)[0]
    else:
        from sklearn.feature_selection import mutual_info_classif

        rows = np.random.default_rng(cfg.seed).permutation(len(x))[:10000]  # MI on a 10k sample: plenty for ranking
        mi = mutual_info_classif(x[rows], y[rows], discrete_features=True, random_state=cfg.seed)
        keep = np.sort(np.argsort(-mi, kind="stable")[: min(cfg.select_mi or 1, x.shape[1])])
    if len(keep) == 0:
        raise FormatError(f"{cfg.label} keeps no pixels; lower the threshold.")
    return keep


def reconstruct(store: Store) -> ImageDataset:
    """uint8 images back from a reduced store (lossy: the closest the stored data allows)."""
    red = store.attrs.get("reduction")
    if not isinstance(red, dict) or red.get("method") not in ("pca", "bits", "select"):
        raise FormatError(f"{store.location}: attrs.reduction {red!r} is not a known lossy reduction")
    shape = tuple(int(s) for s in red["image_shape"])
    parts: list[np.ndarray] = []
    for split in ("train", "test"):
        if red["method"] == "pca":
            q = store.read_field(split, PCA_FIELD).astype(np.float32)
            z = q * store.read_array("pca.scale")
            x = z @ store.read_array("pca.components") + store.read_array("pca.mean")
            images = np.clip(np.rint(x), 0, 255).astype(np.uint8)
        elif red["method"] == "bits":
            v = store.read_field(split, BITS_FIELD).astype(np.float32)
            images = np.rint(v * (255 / (2 ** int(red["bits"]) - 1))).astype(np.uint8)
        else:
            fill, keep = store.read_array("select.fill"), store.read_array("select.indices")
            f = store.read_field(split, SELECT_FIELD)
            images = np.repeat(fill[None], len(f), axis=0)
            images[:, keep] = f
        parts += [images.reshape(len(images), *shape), store.read_field(split, LABELS)]
    return ImageDataset(
        str(store.attrs.get("name", "reduced")),
        *parts,
        classes=tuple(store.attrs.get("classes", ())),
        source=store.location,
    )


Accuracy = Callable[[ImageDataset], float]
"""Test accuracy of a model trained on a dataset's training split (see ``lepton.train.job.accuracy_check``)."""


def short_accuracy(data: ImageDataset, train_x: np.ndarray, cfg: ReduceConfig, accuracy: Accuracy) -> float:
    """``accuracy`` of ``train_x[:train_samples]`` with the original labels and test split."""
    n = min(cfg.train_samples, len(train_x))
    return accuracy(ImageDataset(data.name, train_x[:n], data.y_train[:n], data.x_test, data.y_test, data.classes))


def reduce_dataset(
    data: ImageDataset,
    path: str | os.PathLike,
    cfg: ReduceConfig,
    *,
    accuracy: Accuracy,
    baseline_accuracy: float | None = None,
) -> ReduceReport:
    """Write the reduced store and measure what it costs: bytes, ratio to raw, and ``accuracy`` on the
    reconstructed training images against the original ones (``baseline_accuracy`` if already known)."""
    store = write_reduced(data, path, cfg)
    recon = reconstruct(store)
    raw = data.x_train.nbytes + data.y_train.nbytes + data.x_test.nbytes + data.y_test.nbytes
    base = short_accuracy(data, data.x_train, cfg, accuracy) if baseline_accuracy is None else baseline_accuracy
    acc = short_accuracy(data, recon.x_train, cfg, accuracy)
    rows = [
        ReduceRow(data="original (raw uint8)", bytes=raw, ratio=1.0, test_accuracy=base, accuracy_delta=0.0),
        ReduceRow(
            data=cfg.label,
            bytes=store.file_bytes,
            ratio=raw / store.file_bytes,
            test_accuracy=acc,
            accuracy_delta=acc - base,
        ),
    ]
    note = (
        f"accuracy: {cfg.model} trained {cfg.epochs} epoch(s) on the first {min(cfg.train_samples, len(data.x_train)):,} "
        "training images, tested on the original test set — a short check, not a full training run"
    )
    return ReduceReport(
        method=store.attrs["reduction"]["method"],
        params=store.attrs["reduction"],
        raw_bytes=raw,
        store_bytes=store.file_bytes,
        ratio=raw / store.file_bytes,
        rows=rows,
        note=note,
    )
