"""The edge–cloud split planner (Neurosurgeon, Kang et al. ASPLOS 2017).

A sequential network is cut after layer k: the edge runs layers [0, k), sends the tensor at the cut
over the link, the cloud runs [k, L). For every k the planner predicts

    T_total(k) = slowdown * sum(t_i, i < k)  +  (bytes(k) * 8 / bandwidth + RTT)  +  sum(t_i, i >= k) / speedup

where t_i is layer i's time measured here (PyTorch eager, batch 1, timed per layer submodule),
``slowdown`` says how much slower the edge core is than this host and ``speedup`` how much faster the
cloud is. bytes(k) is the payload actually sent: fp32, int8 (per-tensor affine) or int8 + zstd.
k = 0 is cloud-only (the raw image is sent; the RTT covers the tiny reply), k = L is edge-only (nothing is sent).
"""

from __future__ import annotations

import numpy as np
import torch
import zstandard
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import fx, nn

from lepton.edge.network import Encoding, parse_bandwidth, parse_duration_ms  # noqa: F401 (re-exported for the CLI)
from lepton.errors import ConfigError
from lepton.utils.timing import latency, torch_threads

_HEADER_BYTES = 16  # scale + zero point + shape length sent with an int8 payload


class _Op(nn.Module):
    """One node of a traced chain, as a module of its single tensor input."""

    def __init__(self, owner: fx.GraphModule, node: fx.Node) -> None:
        super().__init__()
        self.kind, self.target = node.op, node.target
        self.args_, self.kwargs_ = node.args, node.kwargs
        self.prev = next(a for a in node.all_input_nodes)
        if node.op == "call_module":
            self.mod = owner.get_submodule(str(node.target))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        args = fx.node.map_arg(self.args_, lambda n: x)
        kwargs = fx.node.map_arg(self.kwargs_, lambda n: x)
        if self.kind == "call_module":
            return self.mod(*args, **kwargs)
        if self.kind == "call_method":
            return getattr(args[0], str(self.target))(*args[1:], **kwargs)
        return self.target(*args, **kwargs)  # type: ignore[operator]


def layer_chain(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``model`` as a list of (name, layer) applied one after another; refuses models whose traced graph
    is not a chain (skip connections, several inputs), which have no single tensor to cut at."""
    try:
        gm = fx.symbolic_trace(model)
    except Exception as e:  # fx raises TraceError and assorted errors for data-dependent control flow
        raise ConfigError(
            f"cannot trace {type(model).__name__} with torch.fx ({e}); the split planner needs a "
            "model whose forward is a plain sequence of layers."
        ) from e
    nodes = [n for n in gm.graph.nodes if n.op not in ("placeholder", "output")]
    chain: list[tuple[str, nn.Module]] = []
    prev = next(n for n in gm.graph.nodes if n.op == "placeholder")
    for node in nodes:
        if node.all_input_nodes != [prev] or len(prev.users) != 1:
            raise ConfigError(
                f"{type(model).__name__} is not a chain at {node.name!r} (it reads "
                f"{[n.name for n in node.all_input_nodes]}); only sequential models can be split."
            )
        chain.append((node.name, _Op(gm, node)))
        prev = node
    return chain


def head_tail(chain: list[tuple[str, nn.Module]], cut: int) -> tuple[nn.Sequential, nn.Sequential]:
    """The modules the edge (layers before ``cut``) and the cloud (the rest) run."""
    if not 0 <= cut <= len(chain):
        raise ConfigError(f"cut must be in [0, {len(chain)}], got {cut}.")
    return nn.Sequential(*[m for _, m in chain[:cut]]).eval(), nn.Sequential(*[m for _, m in chain[cut:]]).eval()


# ------------------------------------------------------------------ payloads


def encode_tensor(x: np.ndarray, encoding: Encoding) -> bytes:
    """The bytes sent over the link for ``x`` (float32): raw, or per-tensor affine uint8, optionally zstd'd."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if encoding == "fp32":
        return x.tobytes()
    lo, hi = float(x.min()), float(x.max())
    scale = (hi - lo) / 255.0 or 1.0
    q = np.clip(np.rint((x - lo) / scale), 0, 255).astype(np.uint8)
    body = np.array([scale, lo], dtype=np.float64).tobytes() + q.tobytes()
    return zstandard.ZstdCompressor(level=3).compress(body) if encoding == "int8+zstd" else body


def decode_tensor(data: bytes, shape: tuple[int, ...], encoding: Encoding) -> np.ndarray:
    """Inverse of :func:`encode_tensor` (int8 payloads come back dequantized)."""
    if encoding not in ("fp32", "int8", "int8+zstd"):
        raise ValueError(f"unknown tensor encoding {encoding!r}; use fp32, int8 or int8+zstd")
    if encoding == "fp32":
        return np.frombuffer(data, dtype=np.float32).reshape(shape)
    if encoding == "int8+zstd":
        data = zstandard.ZstdDecompressor().decompress(data, max_output_size=16 + int(np.prod(shape)))
    scale, lo = np.frombuffer(data[:16], dtype=np.float64)
    q = np.frombuffer(data[16:], dtype=np.uint8).reshape(shape)
    return (q.astype(np.float32) * np.float32(scale) + np.float32(lo)).astype(np.float32)


# ------------------------------------------------------------------ profile


class LayerTime(BaseModel):
    model_config = ConfigDict(extra="forbid")  # not frozen, unlike lepton.config.StrictModel: kept mutable as it was

    name: str
    ms: float
    out_shape: list[int]
    out_bytes: dict[str, float]  # payload bytes of this layer's output per encoding


class ModelProfile(BaseModel):
    """Per-layer batch-1 times on this host and the payload size of every cut."""

    model_config = ConfigDict(extra="forbid")  # not frozen, unlike lepton.config.StrictModel: kept mutable as it was

    input_shape: list[int]
    input_bytes: dict[str, float]
    layers: list[LayerTime]
    method: str = "pytorch eager, per layer submodule, batch 1, median"


def _payload_sizes(xs: list[np.ndarray]) -> dict[str, float]:
    return {enc: float(np.mean([len(encode_tensor(x, enc)) for x in xs])) for enc in ("fp32", "int8", "int8+zstd")}


def profile_layers(
    model: nn.Module, images: np.ndarray, *, threads: int = 1, warmup: int = 50, iterations: int = 300
) -> ModelProfile:
    """Median batch-1 time of each layer of ``model`` on real ``images`` (the first is timed; payload
    sizes average over all of them, since zstd's ratio depends on the data)."""
    chain = layer_chain(model.eval())
    xs = [torch.from_numpy(np.ascontiguousarray(images[i : i + 1], dtype=np.float32)) for i in range(len(images))]
    if not xs:
        raise ConfigError("profiling needs at least one image.")
    layers: list[LayerTime] = []
    input_bytes = _payload_sizes([x.numpy() for x in xs])
    with torch_threads(threads), torch.inference_mode():
        for name, layer in chain:
            x0 = xs[0]
            ms = latency(lambda: layer(x0), iterations, warmup=warmup).p50_ms
            xs = [layer(x) for x in xs]
            layers.append(
                LayerTime(
                    name=name, ms=ms, out_shape=list(xs[0].shape), out_bytes=_payload_sizes([x.numpy() for x in xs])
                )
            )
    return ModelProfile(input_shape=list(images.shape[1:]), input_bytes=input_bytes, layers=layers)


# ------------------------------------------------------------------ planner


class NetworkProfile(BaseModel):
    """The link and the two machines the planner assumes."""

    model_config = ConfigDict(extra="forbid")  # not frozen, unlike lepton.config.StrictModel: kept mutable as it was

    bandwidth_bps: float = Field(default=10e6, gt=0)
    rtt_ms: float = Field(default=20.0, ge=0)
    edge_slowdown: float = Field(default=8.0, gt=0)
    cloud_speedup: float = Field(default=1.0, gt=0)
    encoding: Encoding = "fp32"

    @field_validator("bandwidth_bps", mode="before")
    @classmethod
    def _rate(cls, v: object) -> object:
        return parse_bandwidth(v) if isinstance(v, str) else v


class CutRow(BaseModel):
    model_config = ConfigDict(extra="forbid")  # not frozen, unlike lepton.config.StrictModel: kept mutable as it was

    cut: int
    after: str
    edge_ms: float
    transfer_bytes: float
    transfer_ms: float
    cloud_ms: float
    total_ms: float


class SplitPlan(BaseModel):
    model_config = ConfigDict(extra="forbid")  # not frozen, unlike lepton.config.StrictModel: kept mutable as it was

    network: NetworkProfile
    rows: list[CutRow]
    best_cut: int
    best_after: str
    best_ms: float
    cloud_only_ms: float
    edge_only_ms: float
    speedup_vs_cloud_only: float


def plan_split(profile: ModelProfile, net: NetworkProfile) -> SplitPlan:
    """Predicted latency of every cut of ``profile`` under ``net``; the best is the smallest total."""
    times = [layer.ms for layer in profile.layers]
    rows: list[CutRow] = []
    for k in range(len(times) + 1):
        sent = profile.input_bytes if k == 0 else profile.layers[k - 1].out_bytes
        nbytes = 0.0 if k == len(times) else sent[net.encoding]  # edge-only: the result stays on the device
        transfer = 0.0 if k == len(times) else nbytes * 8 / net.bandwidth_bps * 1e3 + net.rtt_ms
        edge, cloud = sum(times[:k]) * net.edge_slowdown, sum(times[k:]) / net.cloud_speedup
        rows.append(
            CutRow(
                cut=k,
                after="input" if k == 0 else profile.layers[k - 1].name,
                edge_ms=edge,
                transfer_bytes=nbytes,
                transfer_ms=transfer,
                cloud_ms=cloud,
                total_ms=edge + transfer + cloud,
            )
        )
    best = min(rows, key=lambda r: r.total_ms)
    return SplitPlan(
        network=net,
        rows=rows,
        best_cut=best.cut,
        best_after=best.after,
        best_ms=best.total_ms,
        cloud_only_ms=rows[0].total_ms,
        edge_only_ms=rows[-1].total_ms,
        speedup_vs_cloud_only=rows[0].total_ms / best.total_ms,
    )
