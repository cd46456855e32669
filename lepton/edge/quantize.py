"""int8 static quantization of an fp32 ONNX file with ONNX Runtime (QDQ format, calibrated on training images).

Weights are int8 (per output channel for Conv/Gemm where ``per_channel``), activations uint8 with ranges
from a calibration pass over real training images. ONNX Runtime fuses the QDQ pairs into integer
kernels (QLinearConv, MatMulInteger-style Gemm) when it loads the file.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console
from rich.progress import Progress, TaskID

from lepton.errors import ConfigError, FormatError
from lepton.utils.io import atomic_path, sha256_file
from lepton.utils.progress import progress_bar


class QuantizeConfig(BaseModel):
    """How :func:`quantize_onnx` calibrates and quantizes."""

    model_config = ConfigDict(extra="forbid")  # not frozen, unlike lepton.config.StrictModel: kept mutable as it was

    calibration_images: int = Field(default=512, ge=1, le=60000)
    calibration_batch: int = Field(default=64, ge=1)
    per_channel: bool = True
    method: Literal["minmax", "entropy", "percentile"] = "minmax"
    # 7-bit weights: without VNNI, x86 multiplies u8 x s8 with vpmaddubsw, whose int16 sums saturate
    # on 8-bit weights; "auto" reduces the range exactly when this CPU lacks VNNI.
    reduce_range: bool | Literal["auto"] = "auto"
    seed: int = 0
    # Node names (as in the fp32 file) left in fp32: chosen by lepton.edge.int8plan where their int8 kernel is slower.
    nodes_to_exclude: list[str] = Field(default_factory=list)


class QuantizeReport(BaseModel):
    model_config = ConfigDict(extra="forbid")  # not frozen, unlike lepton.config.StrictModel: kept mutable as it was

    path: str
    bytes: int
    fp32_bytes: int
    size_ratio: float
    sha256: str
    calibration_images: int
    per_channel: bool
    reduce_range: bool
    method: str
    nodes_excluded: list[str] = Field(default_factory=list)
    seconds: float


class _Images(CalibrationDataReader):
    """Feeds calibration batches to ONNX Runtime's calibrator, ticking ``bar``'s ``task`` for each batch handed
    out (the calibrator runs the model on one batch before it asks for the next)."""

    def __init__(self, name: str, images: np.ndarray, batch: int, bar: Progress, task: TaskID) -> None:
        self._batches = iter([{name: images[i : i + batch]} for i in range(0, len(images), batch)])
        self._bar, self._task, self._handed = bar, task, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        self._bar.update(self._task, completed=self._handed)
        batch = next(self._batches, None)
        self._handed += 0 if batch is None else 1
        return batch


_METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}


def cpu_int8_features() -> list[str]:
    """The int8 dot-product instruction sets this x86 CPU advertises (empty on CPUs without VNNI)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = set(re.findall(r"^flags\s*:\s*(.*)$", text, re.M)[0].split()) if "flags" in text else set()
    return sorted(flags & {"avx512_vnni", "avx_vnni", "avx512vnni", "amx_int8", "avx_vnni_int8"})


def calibration_sample(x_train: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` training images drawn without replacement, as float32 [n, C, H, W]."""
    if len(x_train) == 0:
        raise ConfigError("calibration needs at least one training image; the dataset's train split is empty.")
    idx = np.random.default_rng(seed).permutation(len(x_train))[:n]
    return np.ascontiguousarray(x_train[np.sort(idx)], dtype=np.float32)


def quantize_onnx(
    fp32_path: str | Path,
    out_path: str | Path,
    calibration: np.ndarray,
    cfg: QuantizeConfig | None = None,
    *,
    progress: bool = False,
    console: Console | None = None,
) -> QuantizeReport:
    """Write the int8 QDQ version of ``fp32_path`` to ``out_path``, calibrated on ``calibration``
    (float32 [N, C, H, W] images preprocessed as for training). Atomic: ``out_path`` appears only when done.

    Args:
        progress: show the calibration's progress with the time left (a tick per batch) on ``console``.

    Returns:
        The int8 file's size, digest and the settings it was quantized with.
    """
    cfg = cfg or QuantizeConfig()
    fp32_path, out_path = Path(fp32_path), Path(out_path)
    if not fp32_path.is_file():
        raise ConfigError(f"ONNX file {str(fp32_path)!r} does not exist; export it first with `lepton edge export`.")
    try:
        model = onnx.load(str(fp32_path))
    except Exception as e:  # protobuf's DecodeError and friends
        raise FormatError(f"{str(fp32_path)!r} is not a readable ONNX file: {e}") from e
    name = model.graph.input[0].name
    unknown = sorted(set(cfg.nodes_to_exclude) - {n.name for n in model.graph.node})
    if unknown:
        raise ConfigError(
            f"nodes_to_exclude names {unknown[:5]} which {str(fp32_path)!r} does not have; "
            "use node names of that fp32 file (see `lepton edge export --format json`, int8 layers)."
        )
    calibration = np.ascontiguousarray(calibration, dtype=np.float32)
    if calibration.ndim != 4 or len(calibration) == 0:
        raise ConfigError(
            f"calibration images must be a non-empty float array [N, C, H, W], got shape {calibration.shape}."
        )
    reduce_range = not cpu_int8_features() if cfg.reduce_range == "auto" else cfg.reduce_range
    start = time.perf_counter()
    logging.getLogger("root").setLevel(logging.ERROR)  # the quantizer logs advice through the root logger
    batches = -(-len(calibration) // cfg.calibration_batch)
    with atomic_path(out_path) as tmp, progress_bar(console, enabled=progress) as bar:
        task = bar.add_task("int8 calibration", total=batches, status=f"{len(calibration):,} images")
        prep = tmp.with_name(tmp.name + ".prep.onnx")
        try:
            # symbolic shape inference + graph cleanup, as ONNX Runtime recommends before quantizing
            quant_pre_process(str(fp32_path), str(prep), skip_symbolic_shape=False)
            quantize_static(
                str(prep),
                str(tmp),
                _Images(name, calibration, cfg.calibration_batch, bar, task),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                per_channel=cfg.per_channel,
                reduce_range=reduce_range,
                calibrate_method=_METHODS[cfg.method],
                nodes_to_exclude=list(cfg.nodes_to_exclude),
                extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
            )
        finally:
            prep.unlink(missing_ok=True)
            for aux in tmp.parent.glob(tmp.name + ".prep*"):
                aux.unlink(missing_ok=True)
        onnx.checker.check_model(str(tmp))
    fp32_bytes, size = fp32_path.stat().st_size, out_path.stat().st_size
    return QuantizeReport(
        path=str(out_path),
        bytes=size,
        fp32_bytes=fp32_bytes,
        size_ratio=size / fp32_bytes,
        sha256=sha256_file(out_path),
        calibration_images=len(calibration),
        per_channel=cfg.per_channel,
        reduce_range=reduce_range,
        method=cfg.method,
        nodes_excluded=list(cfg.nodes_to_exclude),
        seconds=time.perf_counter() - start,
    )
