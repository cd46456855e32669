"""The edge stage as library calls: export to ONNX and int8, time them against PyTorch eager, plan and run the
edge–cloud split. ``lepton edge export|bench|split`` call one step each; ``lepton run``'s edge stage calls
:func:`deploy_model`, which runs them all and returns the :class:`EdgeReport` that lands in ``metrics.json``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict
from rich.console import Console
from torch import nn

from lepton.data.dataset import ImageDataset
from lepton.edge import splitrun
from lepton.edge.bench import BenchConfig, LatencyReport, bench_onnx, bench_torch, onnx_accuracy
from lepton.edge.config import EdgeConfig
from lepton.edge.export import export_onnx, max_abs_diff, onnx_session
from lepton.edge.int8plan import (
    Int8Choice,
    Int8Tolerance,
    Int8Tuning,
    choose_deploy,
    interleaved_p50,
    spread,
    tune_int8,
)
from lepton.edge.quantize import QuantizeConfig, calibration_sample, cpu_int8_features, quantize_onnx
from lepton.edge.split import CutRow, NetworkProfile, SplitPlan, parse_bandwidth, plan_split, profile_layers
from lepton.edge.splitrun import SplitRun
from lepton.errors import LeptonError
from lepton.models.registry import ModelSpec

ONNX_FILE, ONNX_INT8_FILE = "model.onnx", "model.int8.onnx"  # what deploy_model writes into its folder
PROBE_IMAGES = 1000  # test images on which an ONNX file's outputs are compared with torch's
PROFILE_IMAGES = 8  # images whose per-layer payloads the split planner averages
# The split measured on this host over loopback: no link cost, edge and cloud as fast as this host.
FREE_LINK = {"bandwidth_bps": 1e12, "rtt_ms": 0.0, "edge_slowdown": 1.0, "cloud_speedup": 1.0}


class OnnxFile(BaseModel):
    """One exported ONNX file, checked against the torch model on the test set."""

    model_config = ConfigDict(extra="forbid")

    file: str
    format: str
    bytes: int
    max_abs_diff_vs_torch: float
    test_accuracy: float


class ExportResult(BaseModel):
    """What :func:`export_model` wrote: the fp32 file and, when asked, its int8 (QDQ) version, the layers kept in
    fp32 because their int8 kernel is slower here, and which of the two files to deploy on this machine."""

    model_config = ConfigDict(extra="forbid")

    fp32: OnnxFile
    int8: OnnxFile | None = None
    int8_size_ratio: float | None = None
    int8_tuning: Int8Tuning | None = None
    choice: Int8Choice | None = None

    @property
    def files(self) -> list[OnnxFile]:
        return [self.fp32] if self.int8 is None else [self.fp32, self.int8]


class SplitResult(BaseModel):
    """The planner's table for one network, its prediction for this host over a free link, and the real run."""

    model_config = ConfigDict(extra="forbid")

    plan: SplitPlan
    measured: SplitRun | None
    predicted_loopback_ms: float


class SplitSummary(BaseModel):
    model_config = ConfigDict(extra="forbid")

    best_cut: int
    best_after: str
    predicted_ms: float
    predicted_loopback_ms: float
    measured_ms: float
    measured_edge_ms: float
    measured_transfer_ms: float
    measured_cloud_ms: float
    agreement: float
    network: NetworkProfile
    rows: list[CutRow]


class EdgeReport(BaseModel):
    """The whole edge stage (:func:`deploy_model`); ``lepton run`` writes it under ``stages.edge``."""

    model_config = ConfigDict(extra="forbid")

    source: str
    onnx_fp32_bytes: int
    onnx_int8_bytes: int
    int8_size_ratio: float
    fp32_test_accuracy: float
    int8_test_accuracy: float
    max_abs_diff_fp32: float
    max_abs_diff_int8: float
    eager_p50_ms: float
    fp32_p50_ms: float
    int8_p50_ms: float
    int8_speedup_vs_eager: float
    cpu_int8_features: list[str]
    latency: list[LatencyReport]
    split: SplitSummary
    # Which file to deploy on this machine (None in runs made before Lepton measured it).
    faster: Literal["int8", "fp32"] | None = None
    deploy: str | None = None
    int8_choice: Int8Choice | None = None
    int8_tuning: Int8Tuning | None = None


def export_model(
    model: nn.Module,
    spec: ModelSpec,
    data: ImageDataset,
    out: Path,
    int8_out: Path | None = None,
    *,
    opset: int = 17,
    calibration_images: int = 1024,
    choice_iterations: int = 300,
    tolerance: Int8Tolerance | None = None,
    tune_layers: bool = True,
    progress: bool = False,
    console: Console | None = None,
) -> ExportResult:
    """Export ``model`` to ONNX at ``out`` (and int8 QDQ at ``int8_out``, calibrated on training images), each
    compared with torch on the first test images and scored on the whole test set.

    With ``int8_out``, the int8 file keeps in fp32 the layers whose int8 kernel is slower on this machine when
    that measurably speeds up the whole model (:func:`lepton.edge.int8plan.tune_int8`), then fp32 and int8 are
    timed in turn (``choice_iterations`` batch-1 calls per round, 5 rounds, one thread) and
    :func:`lepton.edge.int8plan.choose_deploy` says which to deploy under ``tolerance``.

    Args:
        tune_layers: False skips the per-layer tuning (the int8 file stays fully quantized; no tuning reported).
        progress: show the calibration's progress on ``console``.

    Returns:
        Both files' sizes, agreement with torch and accuracy; the per-layer tuning and the deploy choice."""
    qcfg = QuantizeConfig(calibration_images=calibration_images) if int8_out is not None else None
    x_test, y_test = (t.numpy() for t in data.tensors("test"))
    probe = torch.from_numpy(x_test[:PROBE_IMAGES])

    def checked(path: Path, fmt: str, size: int) -> OnnxFile:
        return OnnxFile(
            file=str(path),
            format=fmt,
            bytes=size,
            max_abs_diff_vs_torch=max_abs_diff(model, onnx_session(path), probe),
            test_accuracy=onnx_accuracy(path, x_test, y_test),
        )

    fp32 = checked(out, "onnx fp32", export_onnx(model, out, input_shape=spec.input_shape, opset=opset).bytes)
    if int8_out is None or qcfg is None:
        return ExportResult(fp32=fp32)
    cal = calibration_sample(data.tensors("train")[0].numpy(), calibration_images)
    quantize_onnx(out, int8_out, cal, qcfg, progress=progress, console=console)
    tuning = (
        tune_int8(out, int8_out, cal, x_test, y_test, qcfg, iterations=choice_iterations, tolerance=tolerance)
        if tune_layers
        else None
    )
    fmt = "onnx int8 QDQ" + (f", {len(tuning.excluded)} layer(s) kept fp32" if tuning and tuning.excluded else "")
    int8 = checked(int8_out, fmt, int8_out.stat().st_size)
    p32, p8 = interleaved_p50([out, int8_out], x_test[:1], iterations=choice_iterations)
    choice = choose_deploy(
        float(np.median(p32)),
        float(np.median(p8)),
        fp32.test_accuracy,
        int8.test_accuracy,
        noise=spread([p32, p8]),
        tolerance=tolerance,
    )
    return ExportResult(
        fp32=fp32, int8=int8, int8_size_ratio=int8.bytes / fp32.bytes, int8_tuning=tuning, choice=choice
    )


def bench_models(
    images: np.ndarray,
    cfg: BenchConfig,
    onnx_files: Sequence[tuple[Path, str | None]] = (),
    *,
    torch_model: nn.Module | None = None,
) -> list[LatencyReport]:
    """Batch-1 latency and throughput of ``torch_model`` in PyTorch eager (first, when given) and of each
    ``(path, name)`` ONNX file (name None: the file's name), all on the same ``images``."""
    reports = [bench_torch(torch_model, images, cfg)] if torch_model is not None else []
    return reports + [bench_onnx(path, images, cfg, name=name) for path, name in onnx_files]


def split_model(
    model: nn.Module,
    model_file: Path,
    images: np.ndarray,
    net: NetworkProfile,
    *,
    requests: int,
    threads: int = 1,
    run: bool = True,
    trust_code: bool = False,
) -> SplitResult:
    """Plan the edge–cloud split of ``model`` for ``net`` (layers profiled on ``images``) and, with ``run``, run the
    best cut for real: this process the head, a child process loading ``model_file`` the tail, ``requests`` images."""
    profile = profile_layers(model, images[:PROFILE_IMAGES], threads=threads)
    plan = plan_split(profile, net)
    local = plan_split(profile, net.model_copy(update=FREE_LINK))
    measured = (
        splitrun.run_split(model_file, plan.best_cut, images[:requests], encoding=net.encoding, trust_code=trust_code)
        if run
        else None
    )
    if measured is not None and measured.after != plan.best_after:
        raise LeptonError(
            f"{model_file} cuts differently from the model that was planned (cut {plan.best_cut} is after "
            f"{measured.after!r} there, after {plan.best_after!r} in the plan); plan on the model saved in that file."
        )
    return SplitResult(plan=plan, measured=measured, predicted_loopback_ms=local.rows[plan.best_cut].total_ms)


def deploy_model(
    model: nn.Module,
    spec: ModelSpec,
    data: ImageDataset,
    cfg: EdgeConfig,
    out_dir: Path,
    *,
    model_file: Path | None = None,
    source: str = "trained model",
    trust_code: bool = False,
    progress: bool = False,
    console: Console | None = None,
) -> EdgeReport:
    """Export ``model`` to ``out_dir``/model.onnx and model.int8.onnx, benchmark both against PyTorch eager, and
    plan + run the split for ``cfg``'s network. ``model_file`` is the file the split's cloud process loads
    (default: a checkpoint of ``model`` saved to ``out_dir``/edge-split-model); ``source`` names it in the report;
    ``progress`` shows the int8 calibration's progress on ``console``."""
    fp32, int8 = out_dir / ONNX_FILE, out_dir / ONNX_INT8_FILE
    exported = export_model(
        model,
        spec,
        data,
        fp32,
        int8,
        opset=cfg.opset,
        calibration_images=cfg.calibration_images,
        choice_iterations=cfg.choice_iterations,
        tolerance=Int8Tolerance(accuracy_tolerance=cfg.int8_accuracy_tolerance),
        tune_layers=cfg.tune_layers,
        progress=progress,
        console=console,
    )
    assert exported.int8 is not None and exported.int8_size_ratio is not None  # int8_out was given
    assert exported.choice is not None  # made whenever int8_out is given
    x_test = data.tensors("test")[0].numpy()
    bcfg = BenchConfig(threads=cfg.threads, iterations=cfg.iterations, throughput_batch=cfg.throughput_batch)
    eager, ort32, ort8 = bench_models(
        x_test[: cfg.throughput_batch],
        bcfg,
        [(fp32, "onnx runtime fp32"), (int8, "onnx runtime int8")],
        torch_model=model,
    )
    if model_file is None:
        from lepton.train.checkpoint import save_checkpoint

        model_file = save_checkpoint(out_dir / "edge-split-model", model, spec)
    net = NetworkProfile(
        bandwidth_bps=parse_bandwidth(cfg.bandwidth),
        rtt_ms=cfg.rtt_ms,
        edge_slowdown=cfg.edge_slowdown,
        encoding=cfg.encoding,
    )
    split = split_model(
        model,
        model_file,
        x_test[: max(cfg.split_requests, PROFILE_IMAGES)],
        net,
        requests=cfg.split_requests,
        threads=cfg.threads,
        trust_code=trust_code,
    )
    plan, run = split.plan, split.measured
    assert run is not None  # run=True
    return EdgeReport(
        source=source,
        onnx_fp32_bytes=exported.fp32.bytes,
        onnx_int8_bytes=exported.int8.bytes,
        int8_size_ratio=exported.int8_size_ratio,
        fp32_test_accuracy=exported.fp32.test_accuracy,
        int8_test_accuracy=exported.int8.test_accuracy,
        max_abs_diff_fp32=exported.fp32.max_abs_diff_vs_torch,
        max_abs_diff_int8=exported.int8.max_abs_diff_vs_torch,
        eager_p50_ms=eager.p50_ms,
        fp32_p50_ms=ort32.p50_ms,
        int8_p50_ms=ort8.p50_ms,
        int8_speedup_vs_eager=eager.p50_ms / ort8.p50_ms,
        cpu_int8_features=cpu_int8_features(),
        latency=[eager, ort32, ort8],
        faster=exported.choice.faster,
        deploy=ONNX_INT8_FILE if exported.choice.deploy == "int8" else ONNX_FILE,
        int8_choice=exported.choice,
        int8_tuning=exported.int8_tuning,
        split=SplitSummary(
            best_cut=plan.best_cut,
            best_after=plan.best_after,
            predicted_ms=plan.best_ms,
            predicted_loopback_ms=split.predicted_loopback_ms,
            measured_ms=run.total_ms,
            measured_edge_ms=run.edge_ms,
            measured_transfer_ms=run.transfer_ms,
            measured_cloud_ms=run.cloud_ms,
            agreement=run.agreement,
            network=net,
            rows=plan.rows,
        ),
    )
