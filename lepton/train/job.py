"""A whole training job on an in-memory dataset or a packed store: seed, build, fit, evaluate. Used by ``lepton train``
and by the pipeline's train stage, so both produce the same model from the same config.

With ``cfg.distributed.nproc > 1`` (or several nodes) the job launches its workers through torchrun
(:mod:`lepton.distributed.launch`) and loads rank 0's checkpoint back; inside a worker started by
torchrun (ours or the user's own ``torchrun -m lepton.train``) it joins the process group and trains.
Workers get an in-memory dataset through a temporary ``.npz``; a packed store is handed over by its
location, and each rank reads only its own samples from it.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from rich.console import Console
from torch import nn

from lepton.data.batches import TensorBatches
from lepton.data.dataset import ImageDataset
from lepton.data.stats import channel_stats
from lepton.data.store.dataset import StoreBatches
from lepton.data.store.source import StoreSource
from lepton.distributed.launch import launch
from lepton.distributed.runtime import launched_by_torchrun, restart_count, worker_session
from lepton.errors import ResultOnOtherNode
from lepton.models.registry import ModelSpec
from lepton.train.checkpoint import load_checkpoint
from lepton.train.config import TrainConfig
from lepton.train.evaluate import EvalReport, evaluate
from lepton.train.loop import TrainReport, fit
from lepton.train.seed import seed_everything
from lepton.utils.device import resolve_device


@dataclass
class TrainedModel:
    spec: ModelSpec
    model: nn.Module
    train: TrainReport
    test: EvalReport


def train_model(
    data: ImageDataset | StoreSource,
    model_name: str,
    cfg: TrainConfig,
    *,
    model_kwargs: dict[str, Any] | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    console: Console | None = None,
    trust_code: bool = False,
    normalize: Literal["none", "auto"] = "none",
) -> TrainedModel:
    """Train ``model_name`` on ``data``; a ``package.module:factory`` runs only with ``trust_code=True``.

    With ``normalize="auto"`` the spec stores the per-channel mean and std of the training split
    (:func:`lepton.data.stats.channel_stats`) and the model normalizes its [0, 1] input itself.

    From a :class:`StoreSource` the batches are read from the store's blocks (the same batches, hence the
    same weights, as from the arrays it holds); its test split is read whole for evaluation.

    The returned spec (and every checkpoint) carries a user model's architecture as data, so that files
    saved from it load without the user's code.
    """
    if cfg.distributed.launches and not launched_by_torchrun():
        return _launch_workers(
            data, model_name, cfg, model_kwargs or {}, checkpoint_dir, resume, progress, trust_code, normalize
        )
    resume = resume or restart_count() > 0  # torchrun restarted the group after a failure
    # the device picks the backend; fit() checks cfg.amp once this worker's GPU is current (after set_device)
    with worker_session(cfg.distributed, resolve_device(cfg.device)):
        seed_everything(cfg.seed, cfg.threads)
        norm = channel_stats(data) if normalize == "auto" else None
        spec = ModelSpec(model_name, data.input_shape, data.num_classes, dict(model_kwargs or {}), normalize=norm)
        model = spec.build(trust_code=trust_code)
        spec = spec.with_graph(model)
        x_test, y_test = data.tensors("test")
        if isinstance(data, StoreSource):
            batches: TensorBatches | StoreBatches = data.batches(cfg.batch_size, seed=cfg.seed)
        else:
            batches = TensorBatches(*data.tensors("train"), cfg.batch_size, seed=cfg.seed)
        report = fit(
            model,
            batches,
            cfg,
            spec=spec,
            eval_data=(x_test, y_test),
            checkpoint_dir=checkpoint_dir,
            resume=resume,
            progress=progress,
            console=console,
        )
    return TrainedModel(spec, model, report, evaluate(model, x_test, y_test, num_classes=data.num_classes))


def accuracy_check(
    model_name: str, *, epochs: int = 1, seed: int = 0, trust_code: bool = False
) -> Callable[[ImageDataset], float]:
    """A function giving the test accuracy of ``model_name`` trained ``epochs`` on a dataset's training split:
    the short accuracy check lossy data reduction reports against (``lepton.data.reduce``)."""

    def accuracy(data: ImageDataset) -> float:
        job = train_model(
            data, model_name, TrainConfig(epochs=epochs, seed=seed), progress=False, trust_code=trust_code
        )
        return job.test.accuracy

    return accuracy


def _launch_workers(
    data: ImageDataset | StoreSource,
    model_name: str,
    cfg: TrainConfig,
    model_kwargs: dict[str, Any],
    checkpoint_dir: str | Path | None,
    resume: bool,
    progress: bool,
    trust_code: bool,
    normalize: str,
) -> TrainedModel:
    """Hand the dataset (a store by its location, in-memory arrays in a ``.npz``) and the config to torchrun's
    workers in files; read rank 0's results back."""
    with tempfile.TemporaryDirectory(prefix="lepton-dist-") as tmp:
        out = Path(checkpoint_dir) if checkpoint_dir is not None else Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").unlink(missing_ok=True)
        if isinstance(data, StoreSource):
            source: dict[str, Any] = {"store": data.location, "n_train": data.n_train, "n_test": data.n_test}
        else:
            source = {"data": str(Path(tmp) / "data.npz"), "name": data.name, "classes": list(data.classes)}
            np.savez(source["data"], x_train=data.x_train, y_train=data.y_train, x_test=data.x_test, y_test=data.y_test)
        job = {
            **source,
            "model": model_name,
            "model_kwargs": model_kwargs,
            "train": cfg.model_dump(mode="json"),
            "out": str(out),
            "resume": resume,
            "progress": progress,
            "trust_code": trust_code,
            "normalize": normalize,
        }
        (Path(tmp) / "job.json").write_text(json.dumps(job))
        launch(cfg.distributed, "lepton.train.worker", [str(Path(tmp) / "job.json")], threads=cfg.threads)
        if not (out / "report.json").exists() and cfg.distributed.nnodes > 1:
            where = f"its folder {out}" if checkpoint_dir is not None else "its run folder"
            raise ResultOnOtherNode(
                f"training finished; global rank 0 ran on another node and saved the model in {where} there "
                f"(give every node the same shared -o folder to find it here)."
            )
        report = TrainReport.model_validate_json((out / "report.json").read_text())
        ckpt = load_checkpoint(out / "last")
    model = ckpt.build_model(trust_code=trust_code)
    x_test, y_test = data.tensors("test")
    return TrainedModel(ckpt.spec, model, report, evaluate(model, x_test, y_test, num_classes=data.num_classes))
