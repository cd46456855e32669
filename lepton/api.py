"""The Python front door: one verb per capability — :func:`train`, :func:`compress`, :func:`load`,
:func:`export_onnx`. Each takes your own ``nn.Module`` (or a model file) and a dataset, and calls the same library
entry points as the CLI and ``lepton run``.

    from lepton.api import compress, load, train
    from lepton.data import load_digits

    data = load_digits()
    model = train(my_module, data, epochs=5).model
    small = compress(model, data)          # prune → share → entropy-code, accuracy measured on the file
    small.save("model.lep")
    restored = load("model.lep")           # no code of yours is imported to rebuild it
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from torch import nn

from lepton.artifacts import load_model_file
from lepton.compress.chain import CompressReport, compress_model
from lepton.compress.config import CompressConfig
from lepton.compress.container import decode_model
from lepton.config import validate
from lepton.data.batches import TensorBatches
from lepton.data.dataset import ImageDataset
from lepton.data.sources import load_dataset
from lepton.data.stats import channel_stats
from lepton.edge.export import ExportReport
from lepton.edge.export import export_onnx as _export_onnx
from lepton.errors import ConfigError
from lepton.models.normalize import attach_input_norm, input_norm_of
from lepton.models.registry import ModelSpec
from lepton.train.config import TrainConfig
from lepton.train.evaluate import EvalReport, evaluate
from lepton.train.loop import TrainReport, fit
from lepton.train.seed import seed_everything
from lepton.utils.io import atomic_path

__all__ = ["Compressed", "Trained", "compress", "export_onnx", "load", "train"]


@dataclass
class Trained:
    """What :func:`train` returns: the trained model (the same object you passed), its history and test score."""

    model: nn.Module
    report: TrainReport
    test: EvalReport


@dataclass
class Compressed:
    """What :func:`compress` returns: the model decoded from the `.lep` bytes, the report measured on it, and the
    file's bytes (:meth:`save` writes them)."""

    model: nn.Module
    report: CompressReport
    data: bytes

    def save(self, path: str | Path) -> Path:
        """Write the `.lep` file atomically; returns its path."""
        path = Path(path)
        if path.suffix != ".lep":
            raise ConfigError(f"Compressed.save({str(path)!r}): a compressed model file must end in .lep.")
        with atomic_path(path) as tmp:
            tmp.write_bytes(self.data)
        return path


def _dataset(data: ImageDataset | str) -> ImageDataset:
    if isinstance(data, ImageDataset):
        return data
    if isinstance(data, str):
        return load_dataset(data)
    raise ConfigError(f"data must be an ImageDataset or a dataset name such as 'mnist', got {type(data).__name__}.")


def _module(model: nn.Module, where: str) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise ConfigError(f"{where} needs a torch nn.Module, got {type(model).__name__}.")
    return model


def train(
    model: nn.Module,
    data: ImageDataset | str,
    config: TrainConfig | None = None,
    *,
    normalize: Literal["none", "auto"] = "none",
    **options: object,
) -> Trained:
    """Train ``model`` in place with Lepton's training loop (seeded and deterministic on CPU).

    Args:
        model: any ``nn.Module`` mapping a ``[batch, C, H, W]`` float batch to class logits.
        data: an :class:`~lepton.data.ImageDataset` or a dataset name (``"mnist"``, ``"digits"``, …).
        config: a :class:`~lepton.train.TrainConfig`; ``options`` override its fields (``epochs=5``, ``lr=0.05``).
        normalize: ``"auto"`` gives ``model`` the per-channel mean and std of the training split
            (:func:`lepton.models.normalize.attach_input_norm`) before training: it normalizes its [0, 1] input
            itself, and :func:`compress` stores that in the file.

    Returns:
        :class:`Trained` with the model, the per-epoch report and the test-split evaluation.
    """
    model, data = _module(model, "lepton.train"), _dataset(data)
    if normalize not in ("none", "auto"):
        raise ConfigError(
            f"The 'normalize' parameter of lepton.train must be 'none' or 'auto'. Got {normalize!r} instead."
        )
    if normalize == "auto":
        attach_input_norm(model, channel_stats(data))
    cfg = validate(TrainConfig, {**(config or TrainConfig()).model_dump(), **options}, source="lepton.api.train")
    seed_everything(cfg.seed, cfg.threads)
    x, y = data.tensors("train")
    xt, yt = data.tensors("test")
    report = fit(model, TensorBatches(x, y, cfg.batch_size, seed=cfg.seed), cfg, eval_data=(xt, yt), progress=False)
    return Trained(model, report, evaluate(model, xt, yt, num_classes=data.num_classes))


def compress(
    model: nn.Module,
    data: ImageDataset | str,
    config: CompressConfig | None = None,
    *,
    train_config: TrainConfig | None = None,
    spec: ModelSpec | None = None,
    trust_code: bool = False,
) -> Compressed:
    """Prune, share weights and entropy-code a trained ``model`` into `.lep` bytes; ``model`` is left unchanged.

    Args:
        model: the trained ``nn.Module``. Its architecture is stored as data (a traced graph), so
            :func:`load` rebuilds it without your code.
        data: the dataset it was trained on (fine-tuning and the accuracy checks use it).
        config: a :class:`~lepton.compress.config.CompressConfig` (default: sensitivity-based automatic rates).
        train_config: the fine-tuning settings (default :class:`~lepton.train.TrainConfig`).
        spec: a :class:`~lepton.models.ModelSpec` to record instead (a registry name such as ``"lenet5"``).
        trust_code: needed only when ``spec`` names your ``package.module:factory`` and the model cannot be traced.

    Returns:
        :class:`Compressed`: the model decoded from the bytes (what a user of the file gets), the report measured
        on it (size, ratio, accuracy against the dense model) and the bytes.
    """
    model, data = _module(model, "lepton.compress"), _dataset(data)
    if spec is None:
        norm = input_norm_of(model)  # a model that normalizes its input keeps doing so in the file
        spec = ModelSpec(
            type(model).__name__, data.input_shape, data.num_classes, normalize=norm.stats() if norm else None
        ).with_graph(model)
        if spec.graph is None:
            raise ConfigError(
                f"lepton.compress: the architecture of {type(model).__name__} cannot be stored as data (see the "
                "note above); pass spec=ModelSpec('package.module:factory', ...) and trust_code=True."
            )
    with tempfile.TemporaryDirectory(prefix="lepton-compress-") as tmp:
        out = Path(tmp) / "model.lep"
        report = compress_model(
            model, spec, data, config or CompressConfig(), train_config or TrainConfig(), out,
            progress=False, trust_code=trust_code,
        )  # fmt: skip
        blob = out.read_bytes()
    return Compressed(decode_model(blob).build_model(trust_code=trust_code).eval(), report, blob)


def load(path: str | Path, *, trust_code: bool = False) -> nn.Module:
    """The model in a `.lep` file or a checkpoint (``.safetensors`` + ``.json``), verified, in eval mode.

    Args:
        path: the file.
        trust_code: allow a file that names a ``package.module:factory`` without a stored graph to import it.

    Returns:
        the ``nn.Module`` with the file's weights, bit for bit.
    """
    return load_model_file(path, trust_code=trust_code).model


def export_onnx(
    model: nn.Module | str | Path, path: str | Path, *, input_shape: tuple[int, int, int] | None = None, opset: int = 17
) -> ExportReport:
    """Export ``model`` (a module, or a model file) to ONNX with a dynamic batch axis.

    Args:
        model: an ``nn.Module``, or the path of a `.lep` / checkpoint (its input shape is then read from it).
        path: the ``.onnx`` file to write.
        input_shape: ``(C, H, W)``; required for a module.
        opset: the ONNX opset.

    Returns:
        the export report (bytes, opset, input and output names).
    """
    if isinstance(model, (str, Path)):
        loaded = load_model_file(model)
        model, input_shape = loaded.model, input_shape or loaded.spec.input_shape
    if input_shape is None:
        raise ConfigError("lepton.export_onnx needs input_shape=(C, H, W) for a module (e.g. data.input_shape).")
    return _export_onnx(_module(model, "lepton.export_onnx"), path, input_shape=tuple(input_shape), opset=opset)
