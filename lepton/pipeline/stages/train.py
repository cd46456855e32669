"""The baseline stage: build the model, train it with the shared loop, evaluate it, save the checkpoint."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from lepton.distributed.hooks import CommReport
from lepton.models.registry import count_macs, count_params, layer_table
from lepton.pipeline.config import RunConfig
from lepton.pipeline.state import RunState
from lepton.report import html as H
from lepton.report import plots
from lepton.train import EpochRecord, load_checkpoint, save_checkpoint
from lepton.train.job import train_model

EPOCHS_DIR = "train"
"""The run folder's sub-folder for the epoch checkpoint ``last.*`` (as ``lepton train -o``'s OUT/last.*)."""


class TrainStageReport(BaseModel):
    model: str
    params: int
    macs: int
    fp32_bytes: int
    layers: list[dict]
    epochs: int
    batch_size: int
    train_seconds: float
    images_per_second: float
    train_accuracy: float
    test_accuracy: float
    test_loss: float
    test_samples: int
    per_class_accuracy: list[float]
    confusion: list[list[int]]
    checkpoint: str
    world_size: int = 1
    communication: CommReport | None = None
    history: list[EpochRecord]
    normalize: dict[str, list[float]] | None = None
    """The input normalization stored with the model (``data.normalize: auto``): per-channel mean and std."""


class TrainStage:
    name = "train"
    title = "Baseline training"
    report_type = TrainStageReport

    def enabled(self, config: RunConfig) -> bool:
        return True

    def run(self, state: RunState) -> TrainStageReport:
        cfg, data = state.config, state.require_dataset()
        job = train_model(
            state.training_source or data,
            cfg.model.name,
            cfg.train,
            model_kwargs=cfg.model.kwargs,
            checkpoint_dir=state.run_dir / EPOCHS_DIR,  # last.* after each epoch: what a resumed run continues from
            resume=state.resume,
            progress=state.progress,
            console=state.console,
            trust_code=state.trust_code,
            normalize=cfg.data.normalize,
        )
        spec, model, report, ev = job.spec, job.model, job.train, job.test
        ckpt = save_checkpoint(
            state.run_dir / "model", model, spec, extra={"dataset": data.summary(), "test_accuracy": ev.accuracy}
        )
        state.spec, state.model = spec, model
        state.artifacts["checkpoint"] = ckpt
        n = count_params(model)
        return TrainStageReport(
            model=spec.name,
            params=n,
            macs=count_macs(model, spec.input_shape),
            fp32_bytes=4 * n,
            layers=layer_table(model),
            epochs=cfg.train.epochs,
            batch_size=cfg.train.batch_size,
            train_seconds=report.train_seconds,
            images_per_second=report.images_per_second,
            train_accuracy=report.final_train_accuracy,
            test_accuracy=ev.accuracy,
            test_loss=ev.loss,
            test_samples=ev.samples,
            per_class_accuracy=ev.per_class_accuracy,
            confusion=ev.confusion,
            checkpoint=ckpt.name,
            world_size=report.world_size,
            communication=report.communication,
            history=report.history,
            normalize=spec.to_dict().get("normalize"),
        )

    def outputs(self, report: TrainStageReport) -> list[str]:  # type: ignore[override]
        return [report.checkpoint, str(Path(report.checkpoint).with_suffix(".json"))]

    def restore(self, state: RunState, report: TrainStageReport) -> None:  # type: ignore[override]
        path = state.run_dir / report.checkpoint
        ckpt = load_checkpoint(path)
        state.spec, state.model = ckpt.spec, ckpt.build_model(trust_code=state.trust_code)
        state.artifacts["checkpoint"] = path

    def summary(self, report: TrainStageReport) -> str:  # type: ignore[override]
        return (
            f"test accuracy {100 * report.test_accuracy:.2f}%, {report.params:,} parameters, "
            f"{report.epochs} epoch{'s' if report.epochs != 1 else ''}"
        )

    def html(self, report: TrainStageReport, state: RunState) -> str:  # type: ignore[override]
        classes = state.require_dataset().classes
        return "".join(
            [
                H.kpis(
                    {
                        "test accuracy": f"{100 * report.test_accuracy:.2f}%",
                        "parameters": report.params,
                        "MACs / image": report.macs,
                        "fp32 size": f"{report.fp32_bytes / 1024:,.1f} KiB",
                        "train time": f"{report.train_seconds:.0f} s",
                        "throughput": f"{report.images_per_second:,.0f} img/s",
                        "workers": report.world_size,
                    }
                ),
                "" if report.communication is None else H.table([report.communication.model_dump()]),
                H.figure(
                    plots.training_curves([r.model_dump() for r in report.history]),
                    "Training curves (test measured after each epoch; the final model is the last epoch's)",
                ),
                H.figure(plots.per_class_accuracy(report.per_class_accuracy, classes)),
                H.figure(plots.confusion_matrix(report.confusion, classes)),
                "<h3>Model size</h3>",
                H.table(
                    report.layers
                    + [{"layer": "total", "type": "", "params": report.params, "fp32_bytes": report.fp32_bytes}]
                ),
            ]
        )
