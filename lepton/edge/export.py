"""Export a PyTorch model to an fp32 ONNX file (dynamic batch axis, checked) and open it in ONNX Runtime.

The exporter is torch's TorchScript-based one (``dynamo=False``): on torch 2.13 it needs nothing beyond
``onnx`` and handles the LeNet family and user models that trace cleanly. Quantized PyTorch modules do
not export; int8 comes from :mod:`lepton.edge.quantize`, which quantizes the fp32 ONNX file instead.
"""

from __future__ import annotations

import copy
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from lepton.compress.fold import fold_batchnorm
from lepton.errors import ConfigError, FormatError
from lepton.utils.checks import check_int
from lepton.utils.device import module_device
from lepton.utils.io import atomic_path, sha256_file

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


class ExportReport(BaseModel):
    """What :func:`export_onnx` wrote."""

    model_config = ConfigDict(extra="forbid")  # not frozen, unlike lepton.config.StrictModel: kept mutable as it was

    path: str
    bytes: int
    sha256: str
    opset: int
    input_shape: tuple[int, int, int]
    input_name: str = INPUT_NAME
    output_name: str = OUTPUT_NAME
    exporter: str = "torchscript"
    seconds: float


def _check_shape(input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    shape = tuple(input_shape)
    if len(shape) != 3 or any(not isinstance(d, int) or isinstance(d, bool) or d < 1 for d in shape):
        raise ConfigError(
            f"input_shape must be three positive ints (C, H, W), got {input_shape!r}; "
            "pass the spec's input_shape, e.g. (1, 28, 28)."
        )
    return shape  # type: ignore[return-value]


def export_onnx(
    model: nn.Module, path: str | Path, *, input_shape: tuple[int, int, int], opset: int = 17
) -> ExportReport:
    """Write ``model`` (fp32, eval mode) to ``path`` as ONNX with input ``input`` [batch, C, H, W] and
    output ``logits`` [batch, classes]; the batch axis is dynamic. The file is validated with
    ``onnx.checker`` before it replaces ``path``, so a failed export never leaves a file behind.

    BatchNorm layers are first folded into the convs feeding them (:func:`lepton.compress.fold.fold_batchnorm`,
    on a copy), so the graph has no BatchNormalization node; a model torch.fx cannot trace is exported as is.
    A model on a GPU is exported from a CPU copy and left where it is."""
    shape = _check_shape(input_shape)
    if not 13 <= opset <= 20:
        raise ConfigError(f"opset must be in [13, 20], got {opset}; 17 is a safe default for ONNX Runtime.")
    path = Path(path)
    original, was_training = model, model.training
    model = model.eval()
    if module_device(model).type != "cpu":  # export a CPU copy: the file's constants are host tensors either way
        model = copy.deepcopy(model).to("cpu")
    dummy = torch.zeros(1, *shape, dtype=torch.float32)
    try:
        model = fold_batchnorm(model, dummy)
    except ConfigError:
        pass  # not traceable by torch.fx: export it unfolded
    start = time.perf_counter()
    try:
        with atomic_path(path) as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter warns that it is deprecated
            with torch.no_grad():
                torch.onnx.export(
                    model,
                    (dummy,),
                    str(tmp),
                    dynamo=False,
                    opset_version=opset,
                    input_names=[INPUT_NAME],
                    output_names=[OUTPUT_NAME],
                    dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                    do_constant_folding=True,
                )
            try:
                onnx.checker.check_model(str(tmp), full_check=True)
            except onnx.checker.ValidationError as e:
                raise FormatError(f"the ONNX export of {type(model).__name__} failed validation: {e}") from e
    except (RuntimeError, torch.onnx.errors.OnnxExporterError) as e:
        raise ConfigError(
            f"cannot export {type(model).__name__} to ONNX: {e}; the model must be traceable "
            "with a single image tensor input."
        ) from e
    finally:
        original.train(was_training)
    return ExportReport(
        path=str(path),
        bytes=path.stat().st_size,
        sha256=sha256_file(path),
        opset=opset,
        input_shape=shape,
        seconds=time.perf_counter() - start,
    )


def onnx_session(path: str | Path, *, threads: int = 1) -> ort.InferenceSession:
    """An ONNX Runtime CPU session for ``path`` using ``threads`` intra-op threads (1 = one small edge core)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"ONNX file {str(path)!r} does not exist; create it with `lepton edge export`.")
    check_int(threads, "threads", 1, owner="onnx_session")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for unreadable models
        raise FormatError(f"ONNX Runtime cannot load {str(path)!r}: {e}") from e


def image_input(session: ort.InferenceSession, path: str | Path) -> tuple[str, list[int | str | None]]:
    """The name and shape of ``session``'s one image input: a single float32 input of rank 4 (N, C, H, W).

    Args:
        session: an ONNX Runtime session.
        path: the ONNX file, named in errors.

    Returns:
        (input name, [N, C, H, W]) where a dynamic axis is a string or None.
    """
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise FormatError(
            f"{path} has {len(inputs)} inputs ({', '.join(i.name for i in inputs)[:120]}); Lepton benches and serves "
            "models with one image input [N, C, H, W]: export the model with a single input."
        )
    (model_input,) = inputs
    if model_input.type != "tensor(float)" or len(model_input.shape) != 4:
        raise FormatError(
            f"{path}: input {model_input.name!r} is {model_input.type} of shape {model_input.shape}, not an image "
            "batch (float32 [N, C, H, W]); Lepton benches and serves image classifiers only."
        )
    return model_input.name, list(model_input.shape)


def run_session(session: ort.InferenceSession, x: np.ndarray, *, batch_size: int = 1024) -> np.ndarray:
    """Logits of ``session`` on float32 images ``x`` [N, C, H, W], computed in batches."""
    name = session.get_inputs()[0].name
    x = np.ascontiguousarray(x, dtype=np.float32)
    return np.concatenate([session.run(None, {name: x[i : i + batch_size]})[0] for i in range(0, len(x), batch_size)])


def max_abs_diff(model: nn.Module, session: ort.InferenceSession, x: torch.Tensor) -> float:
    """Largest |torch - ONNX Runtime| over the logits of ``x``: the export's numerical agreement."""
    with torch.no_grad():
        ref = model.eval()(x.float()).numpy()
    return float(np.abs(run_session(session, x.numpy()) - ref).max())
