"""The config of the edge stage's library entry point (:func:`lepton.edge.deploy.deploy_model`), which is
also the ``edge`` section of ``lepton run``'s YAML. Light on purpose: validating a run config imports no
ONNX Runtime, ONNX or matplotlib."""

from __future__ import annotations

from pydantic import Field, field_validator

from lepton.config import StrictModel
from lepton.edge.network import Encoding, parse_bandwidth


class EdgeConfig(StrictModel):
    """The ``edge`` section (the edge stage): ONNX export, int8, latency, the split plan and its measured run."""

    enabled: bool = True
    opset: int = Field(default=17, ge=13, le=20)
    calibration_images: int = Field(default=1024, ge=1, le=60000)
    threads: int = Field(default=1, ge=1)
    iterations: int = Field(default=1000, ge=10)
    throughput_batch: int = Field(default=256, ge=1)
    bandwidth: str = "10Mbit"
    rtt_ms: float = Field(default=20.0, ge=0)
    edge_slowdown: float = Field(default=8.0, gt=0)
    encoding: Encoding = "int8+zstd"
    split_requests: int = Field(default=100, ge=1)
    # fp32 or int8: timed in turn, choice_iterations batch-1 calls x 5 rounds each; int8 is deployed when it is
    # not slower beyond the measured noise and loses at most int8_accuracy_tolerance of test accuracy.
    choice_iterations: int = Field(default=300, ge=10, le=100_000)
    int8_accuracy_tolerance: float = Field(default=0.005, ge=0, le=1)
    tune_layers: bool = Field(
        default=True,
        description="keep in fp32 the layers whose int8 kernel profiles slower here, when that makes the whole "
        "int8 model measurably faster; false: the int8 file is always fully quantized (the same file on any "
        "machine and in any run)",
    )

    @field_validator("bandwidth")
    @classmethod
    def _rate(cls, v: str) -> str:
        parse_bandwidth(v)  # raises ConfigError naming the accepted forms
        return v
