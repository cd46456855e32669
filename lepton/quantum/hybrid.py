"""Hybrid quantum–classical classifiers (PCA or small-CNN front end → QuantumLayer → linear head) and the
experiment that trains one beside classical baselines on the same features, with the shared training loop."""

from __future__ import annotations

import time

import torch
from pydantic import BaseModel, Field
from torch import nn

from lepton.data.dataset import ImageDataset
from lepton.errors import ConfigError
from lepton.quantum.config import HybridConfig
from lepton.quantum.layers import QuantumLayer
from lepton.train import TensorBatches, TrainConfig, evaluate, fit, seed_everything
from lepton.utils.checks import check_int


class PCAFeatures(nn.Module):
    """Flatten, centre and project onto the top ``k`` principal components, scaled to unit variance.

    :meth:`fit` learns the mean and components from training images (an SVD, no labels); they are buffers,
    so they are saved with the model's state dict.
    """

    def __init__(self, in_features: int, k: int) -> None:
        super().__init__()
        check_int(k, "k", 1, in_features, owner="PCAFeatures")
        self.register_buffer("mean", torch.zeros(in_features))
        self.register_buffer("components", torch.zeros(in_features, k))
        self.register_buffer("std", torch.ones(k))

    def fit(self, x: torch.Tensor) -> PCAFeatures:
        flat = x.reshape(len(x), -1).double()
        mean = flat.mean(0)
        _, _, vh = torch.linalg.svd(flat - mean, full_matrices=False)
        comp = vh[: self.components.shape[1]].T
        self.mean.copy_(mean)
        self.components.copy_(comp)
        self.std.copy_(((flat - mean) @ comp).std(0).clamp(min=1e-12))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.reshape(len(x), -1).to(self.mean.dtype) - self.mean) @ self.components / self.std


class HybridPCA(nn.Module):
    """PCA-k features → per-feature trainable affine map (to angles) → QuantumLayer(k qubits) → linear head.

    ``init_std``: the quantum weights start as small normal angles (near the identity); ``None`` draws them
    uniformly in [0, 2π). At 8 qubits × 3 layers both reach about 96% on MNIST digits 0–3 (docs/quantum.md).
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        n_qubits: int = 8,
        n_layers: int = 3,
        *,
        reupload: bool = False,
        init_std: float | None = 0.1,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.pca = PCAFeatures(in_features, n_qubits)
        self.scale = nn.Parameter(torch.full((n_qubits,), 1.0))
        self.shift = nn.Parameter(torch.zeros(n_qubits))
        self.quantum = QuantumLayer(n_qubits, n_layers, reupload=reupload, init_std=init_std, seed=seed)
        self.head = nn.Linear(n_qubits, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.quantum(self.pca(x) * self.scale + self.shift))


class HybridCNN(nn.Module):
    """A small CNN → ``n_qubits`` angles (tanh · π) → QuantumLayer → linear head, trained end to end."""

    def __init__(
        self, num_classes: int, n_qubits: int = 8, n_layers: int = 2, *, in_channels: int = 1, seed: int = 0
    ) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 8, 5, stride=2),
            nn.ReLU(),
            nn.Conv2d(8, 16, 5, stride=2),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(64, n_qubits),
        )
        self.quantum = QuantumLayer(n_qubits, n_layers, seed=seed)
        self.head = nn.Linear(n_qubits, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.quantum(torch.tanh(self.features(x)) * torch.pi))


class ModelResult(BaseModel):
    model: str
    params: int
    test_accuracy: float
    train_seconds: float
    seconds_per_epoch: float


class HybridReport(BaseModel):
    classes: list[int]
    n_train: int
    n_test: int
    features: str
    results: list[ModelResult]
    circuit: str
    circuit_spec: dict = Field(description="the trained circuit as data (Circuit.to_dict())")
    weights: list[float] = Field(description="its trained weights, flattened")
    sample_angles: list[float] = Field(description="the circuit inputs (angles) of the first test sample")


def _subset(x: torch.Tensor, y: torch.Tensor, classes: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    keep = torch.isin(y, torch.tensor(classes))
    remap = torch.full((int(y.max()) + 1,), -1, dtype=torch.long)
    remap[torch.tensor(classes)] = torch.arange(len(classes))
    return x[keep], remap[y[keep]]


def tiny_mlp(k: int, num_classes: int, target_params: int) -> nn.Module:
    """A one-hidden-layer MLP on the same k features with about ``target_params`` parameters."""
    hidden = max(1, round((target_params - num_classes) / (k + 1 + num_classes)))
    return nn.Sequential(nn.Linear(k, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))


def run_hybrid(dataset: ImageDataset, cfg: HybridConfig, *, progress: bool = False) -> HybridReport:
    """Train the hybrid PCA → quantum model, logistic regression and a tiny MLP on the same PCA features."""
    if any(c < 0 or c >= dataset.num_classes for c in cfg.classes) or len(set(cfg.classes)) != len(cfg.classes):
        raise ConfigError(
            f"quantum classes {cfg.classes} must be distinct labels of {dataset.name} (0..{dataset.num_classes - 1})."
        )
    seed_everything(cfg.seed)
    x_tr, y_tr = _subset(*dataset.tensors("train"), cfg.classes)
    x_te, y_te = _subset(*dataset.tensors("test"), cfg.classes)
    if cfg.train_subset is not None:
        x_tr, y_tr = x_tr[: cfg.train_subset], y_tr[: cfg.train_subset]
    k, n_cls = cfg.n_qubits, len(cfg.classes)
    pca = PCAFeatures(x_tr[0].numel(), k).fit(x_tr)
    with torch.no_grad():
        f_tr, f_te = pca(x_tr).float(), pca(x_te).float()
    tcfg = TrainConfig(
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        optimizer="adam",
        lr=cfg.lr,
        weight_decay=0.0,
        schedule="cosine",
        seed=cfg.seed,
        device=cfg.device,
    )
    hybrid = HybridPCA(
        x_tr[0].numel(), n_cls, k, cfg.n_layers, reupload=cfg.reupload, init_std=cfg.init_std, seed=cfg.seed
    )
    hybrid.pca = nn.Identity()  # type: ignore[assignment]  # features are precomputed once for all three models
    n_q = sum(p.numel() for p in hybrid.parameters())
    models: list[tuple[str, nn.Module]] = [
        (f"hybrid PCA-{k} → {k} qubits × {cfg.n_layers} layers", hybrid),
        (f"logistic regression on PCA-{k}", nn.Linear(k, n_cls)),
        (f"tiny MLP on PCA-{k}", tiny_mlp(k, n_cls, n_q)),
    ]
    results = []
    for name, model in models:
        t0 = time.perf_counter()
        rep = fit(model, TensorBatches(f_tr, y_tr, cfg.batch_size, seed=cfg.seed), tcfg, progress=progress)
        seconds = time.perf_counter() - t0
        acc = evaluate(model, f_te, y_te).accuracy
        results.append(
            ModelResult(
                model=name,
                params=sum(p.numel() for p in model.parameters()),
                test_accuracy=acc,
                train_seconds=seconds,
                seconds_per_epoch=rep.train_seconds / rep.epochs,
            )
        )
    with torch.no_grad():
        angles = (f_te[:1] * hybrid.scale + hybrid.shift)[0]
    return HybridReport(
        classes=cfg.classes,
        n_train=len(y_tr),
        n_test=len(y_te),
        features=f"PCA-{k}",
        results=results,
        circuit=hybrid.quantum.draw(),
        circuit_spec=hybrid.quantum.circuit.to_dict(),
        weights=hybrid.quantum.weights.detach().reshape(-1).tolist(),
        sample_angles=angles.tolist(),
    )
