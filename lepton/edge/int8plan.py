"""Which ONNX file to deploy on this machine, fp32 or int8, and which layers of the int8 file to keep in fp32.

Whether int8 pays depends on the CPU: with AVX-512 VNNI most int8 kernels beat fp32, with AVX2 alone
they may not, and even with VNNI a conv with one input channel runs slower as QLinearConv than as the
fp32 Conv it replaces. So nothing here is assumed; everything is measured on the host that runs it:

1. :func:`node_times` profiles a session (``SessionOptions.enable_profiling``) and gives each node's
   median kernel time, keyed by the node's name in the file.
2. :func:`slow_int8_nodes` compares, layer by layer, the int8 kernel of each quantized Conv/Gemm/MatMul
   with the fp32 kernel of the same layer; those slower in int8 are candidates to keep in fp32.
3. :func:`tune_int8` quantizes again with the candidates excluded (``nodes_to_exclude``), times both int8
   files interleaved, and keeps the mixed one only when it is faster beyond the measured noise.
4. :func:`choose_deploy` (pure) picks the file to deploy from measured p50s and accuracies: int8 only
   when it is not slower beyond noise and loses at most ``accuracy_tolerance`` of test accuracy.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
import onnxruntime as ort
from pydantic import BaseModel, ConfigDict, Field

from lepton.edge.bench import onnx_accuracy
from lepton.edge.quantize import QuantizeConfig, quantize_onnx
from lepton.errors import ConfigError
from lepton.utils.io import temp_beside
from lepton.utils.timing import time_calls

QUANTIZABLE = ("Conv", "Gemm", "MatMul")  # the ops whose int8 kernels carry the model's MACs
NOISE_FLOOR = 0.03  # relative: two p50s closer than 3% are a tie even when the repeats agree better
_TOKEN = re.compile(r"_token_\d+$")  # ORT's suffix on nodes its QDQ fusion creates (QLinearConv, ...)


class Int8Tolerance(BaseModel):
    """When int8 is deployed: not slower than fp32 beyond the noise, and at most this much less accurate."""

    model_config = ConfigDict(extra="forbid")

    accuracy_tolerance: float = Field(default=0.005, ge=0, le=1)  # absolute test accuracy (0.005 = 0.5 pp)
    noise_floor: float = Field(default=NOISE_FLOOR, ge=0, le=1)


class NodeTiming(BaseModel):
    """One quantizable layer: its fp32 and int8 kernel times (median µs, batch 1) on this machine."""

    model_config = ConfigDict(extra="forbid")

    node: str
    op_type: str
    fp32_us: float
    int8_us: float


class Int8Tuning(BaseModel):
    """What per-layer tuning tried and bought: the full int8 file against the one keeping ``excluded`` in fp32."""

    model_config = ConfigDict(extra="forbid")

    layers: list[NodeTiming]
    candidates: list[str]
    excluded: list[str]
    full_int8_p50_ms: float
    mixed_p50_ms: float | None
    mixed_accuracy: float | None
    noise: float
    kept: Literal["full int8", "mixed"]


class Int8Choice(BaseModel):
    """Which file to deploy here, from the measured numbers, and why."""

    model_config = ConfigDict(extra="forbid")

    faster: Literal["int8", "fp32"]
    deploy: Literal["int8", "fp32"]
    fp32_p50_ms: float
    int8_p50_ms: float
    fp32_accuracy: float
    int8_accuracy: float
    noise: float
    accuracy_tolerance: float
    reason: str


def choose_deploy(
    fp32_p50_ms: float,
    int8_p50_ms: float,
    fp32_accuracy: float,
    int8_accuracy: float,
    *,
    noise: float,
    tolerance: Int8Tolerance | None = None,
) -> Int8Choice:
    """Pick fp32 or int8 from measured batch-1 p50s and test accuracies.

    Args:
        noise: the relative spread of the latency measurement (e.g. 0.04 = 4%); the tolerance's noise floor
            applies when it is smaller.
        tolerance: how much accuracy int8 may lose; defaults to :class:`Int8Tolerance`'s.

    Returns:
        ``faster`` (the lower p50), ``deploy`` (int8 when it is not slower than fp32 by more than the noise
        and loses at most ``accuracy_tolerance``; fp32 otherwise) and the reason in words.
    """
    tol = tolerance or Int8Tolerance()
    for name, v in (("fp32_p50_ms", fp32_p50_ms), ("int8_p50_ms", int8_p50_ms)):
        if not np.isfinite(v) or v <= 0:
            raise ConfigError(f"{name} must be a positive latency in ms, got {v!r}.")
    noise = max(float(noise), tol.noise_floor)
    faster: Literal["int8", "fp32"] = "int8" if int8_p50_ms < fp32_p50_ms else "fp32"
    drop = fp32_accuracy - int8_accuracy
    ratio = int8_p50_ms / fp32_p50_ms
    if ratio > 1 + noise:
        deploy, reason = "fp32", f"int8 is {ratio:.2f}x the fp32 latency, slower beyond the {noise:.0%} noise"
    elif drop > tol.accuracy_tolerance:
        deploy, reason = (
            "fp32",
            (
                f"int8 loses {100 * drop:.2f} pp of accuracy, more than the {100 * tol.accuracy_tolerance:.2f} pp allowed"
            ),
        )
    else:
        deploy = "int8"
        speed = "faster" if ratio < 1 - noise else "as fast within noise"
        reason = f"int8 is {speed} ({ratio:.2f}x fp32's latency) and within {100 * tol.accuracy_tolerance:.2f} pp"
    return Int8Choice(
        faster=faster,
        deploy=deploy,  # type: ignore[arg-type]
        fp32_p50_ms=fp32_p50_ms,
        int8_p50_ms=int8_p50_ms,
        fp32_accuracy=fp32_accuracy,
        int8_accuracy=int8_accuracy,
        noise=noise,
        accuracy_tolerance=tol.accuracy_tolerance,
        reason=reason,
    )


def _session(path: Path, *, profile_prefix: str | None, optimize: bool) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
    opts.log_severity_level = 3
    opts.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    )
    if profile_prefix is not None:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def node_times(path: str | Path, image: np.ndarray, *, runs: int = 100, optimize: bool = True) -> dict[str, float]:
    """Median kernel time (µs) per node of ``path`` at batch 1 on one thread, from ONNX Runtime's profiler.

    Args:
        image: one input, float32 [1, C, H, W].
        optimize: all graph optimisations (the int8 file's QDQ fusion needs them); False keeps the fp32
            file's node names (the full level renames convs it converts to the NCHWc layout).

    Returns:
        node name (ORT's ``_token_N`` suffix removed, so a fused QLinearConv carries its Conv's name) -> µs.
    """
    with tempfile.TemporaryDirectory(prefix="lepton-prof-") as tmp:
        session = _session(Path(path), profile_prefix=str(Path(tmp) / "p"), optimize=optimize)
        feed = {session.get_inputs()[0].name: np.ascontiguousarray(image, dtype=np.float32)}
        for _ in range(runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    times: dict[str, list[float]] = defaultdict(list)
    for e in events:
        name = e.get("name", "")
        if e.get("cat") == "Node" and name.endswith("_kernel_time"):
            times[_TOKEN.sub("", name.removesuffix("_kernel_time"))].append(float(e["dur"]))
    return {k: float(np.median(v)) for k, v in times.items()}


def slow_int8_nodes(
    fp32_path: str | Path, int8_path: str | Path, image: np.ndarray, *, runs: int = 100, margin: float = 0.2
) -> tuple[list[NodeTiming], list[str]]:
    """Per quantizable layer of ``fp32_path``: its fp32 and int8 kernel times, and the layers whose int8
    kernel is slower than the fp32 one by more than ``margin`` (relative), slowest-to-fastest gap first."""
    fp32 = node_times(fp32_path, image, runs=runs, optimize=False)
    int8 = node_times(int8_path, image, runs=runs, optimize=True)
    rows = [
        NodeTiming(node=n.name, op_type=n.op_type, fp32_us=fp32[n.name], int8_us=int8[n.name])
        for n in onnx.load(str(fp32_path)).graph.node
        if n.op_type in QUANTIZABLE and n.name in fp32 and n.name in int8
    ]
    slow = sorted((r for r in rows if r.int8_us > (1 + margin) * r.fp32_us), key=lambda r: r.fp32_us - r.int8_us)
    return rows, [r.node for r in slow]


def interleaved_p50(paths: Sequence[Path], image: np.ndarray, *, iterations: int, rounds: int = 5) -> list[list[float]]:
    """Batch-1 p50 (ms) of each file, ``rounds`` times in turn (A B A B ...) so drifts in machine load hit all
    alike; one list of ``rounds`` p50s per file."""
    sessions = [_session(Path(p), profile_prefix=None, optimize=True) for p in paths]
    feeds = [{s.get_inputs()[0].name: np.ascontiguousarray(image, dtype=np.float32)} for s in sessions]
    out: list[list[float]] = [[] for _ in paths]
    for _ in range(rounds):
        for i, (s, f) in enumerate(zip(sessions, feeds)):
            t = time_calls(lambda s=s, f=f: s.run(None, f), warmup=max(iterations // 10, 5), iterations=iterations)
            out[i].append(float(np.median(t)) * 1e3)
    return out


def spread(p50s: Sequence[Sequence[float]]) -> float:
    """The measurement's noise: the largest relative range (max - min) / median among repeats of one file, the
    fastest and slowest repeat left out when there are five or more (one burst of load on a shared host
    should not make every difference a tie)."""

    def one(r: Sequence[float]) -> float:
        v = sorted(r)[1:-1] if len(r) >= 5 else sorted(r)
        return (v[-1] - v[0]) / float(np.median(r))

    return max(one(r) for r in p50s)


def tune_int8(
    fp32_path: str | Path,
    int8_path: str | Path,
    calibration: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    cfg: QuantizeConfig,
    *,
    iterations: int = 300,
    tolerance: Int8Tolerance | None = None,
) -> Int8Tuning:
    """Keep in fp32 the layers whose int8 kernel is slower here, when that makes the whole model faster.

    ``int8_path`` holds the fully quantized file (from :func:`quantize_onnx` with ``cfg``). Layers whose int8
    kernel profiles slower than their fp32 kernel are excluded from a second quantization; that mixed file
    replaces ``int8_path`` only when its batch-1 p50 beats the full int8 file's beyond the measured noise and
    its test accuracy is within ``tolerance`` of the full int8 file's.

    Args:
        calibration: the images ``int8_path`` was calibrated on (the mixed file is calibrated on them too).
        x_test, y_test: images and labels scoring the mixed file.
        iterations: timed batch-1 calls per file per round (5 rounds, interleaved).

    Returns:
        Every layer's fp32 and int8 kernel times, the candidates, what was excluded and both p50s.
    """
    tol = tolerance or Int8Tolerance()
    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    image = np.ascontiguousarray(x_test[:1], dtype=np.float32)
    layers, candidates = slow_int8_nodes(fp32_path, int8_path, image)
    if not candidates:
        (full,) = interleaved_p50([int8_path], image, iterations=iterations)
        return Int8Tuning(
            layers=layers,
            candidates=[],
            excluded=[],
            full_int8_p50_ms=float(np.median(full)),
            mixed_p50_ms=None,
            mixed_accuracy=None,
            noise=max(spread([full]), tol.noise_floor),
            kept="full int8",
        )
    with temp_beside(int8_path) as mixed:  # removed on the way out unless it replaced the full int8 file
        quantize_onnx(fp32_path, mixed, calibration, cfg.model_copy(update={"nodes_to_exclude": candidates}))
        full, mix = interleaved_p50([int8_path, mixed], image, iterations=iterations)
        noise = max(spread([full, mix]), tol.noise_floor)
        full_p50, mixed_p50 = float(np.median(full)), float(np.median(mix))
        full_acc, mixed_acc = onnx_accuracy(int8_path, x_test, y_test), onnx_accuracy(mixed, x_test, y_test)
        keep = mixed_p50 < (1 - noise) * full_p50 and full_acc - mixed_acc <= tol.accuracy_tolerance
        if keep:
            mixed.replace(int8_path)
    return Int8Tuning(
        layers=layers,
        candidates=candidates,
        excluded=candidates if keep else [],
        full_int8_p50_ms=full_p50,
        mixed_p50_ms=mixed_p50,
        mixed_accuracy=mixed_acc,
        noise=noise,
        kept="mixed" if keep else "full int8",
    )
