"""The edge stage: export the (compressed) model to ONNX, quantize it to int8, benchmark it against
PyTorch eager on one thread, and plan + run the edge–cloud split for a default network profile."""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict

from lepton.edge.bench import BenchConfig, LatencyReport, bench_onnx, bench_torch, onnx_accuracy
from lepton.edge.export import export_onnx, max_abs_diff, onnx_session
from lepton.edge.quantize import QuantizeConfig, calibration_sample, cpu_int8_features, quantize_onnx
from lepton.edge.split import (CutRow, NetworkProfile, SplitPlan, parse_bandwidth, plan_split,
                               profile_layers)
from lepton.edge.splitrun import run_split
from lepton.pipeline.config import EdgeConfig, RunConfig
from lepton.pipeline.state import RunState
from lepton.report import html as H
from lepton.report.edge_plots import plan_figure


class SplitSummary(BaseModel):
    model_config = ConfigDict(extra="forbid")  # not frozen, unlike lepton.config.StrictModel: kept mutable as it was

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


class EdgeStageReport(BaseModel):
    model_config = ConfigDict(extra="forbid")  # not frozen, unlike lepton.config.StrictModel: kept mutable as it was

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


class EdgeStage:
    name = "edge"
    title = "Edge deployment"

    def enabled(self, config: RunConfig) -> bool:
        return config.edge.enabled

    def run(self, state: RunState) -> EdgeStageReport:
        from lepton.artifacts import load_model_file

        cfg: EdgeConfig = state.config.edge
        source = state.artifacts.get("lep")  # the compressed model; without compression, the trained one
        if source is not None:
            loaded = load_model_file(source, trust_code=state.trust_code)
            model, spec = loaded.model, loaded.spec
        elif state.model is not None and state.spec is not None:
            model, spec = state.model.eval(), state.spec
        else:
            raise RuntimeError("the edge stage needs a model: run the train stage first")
        data = state.require_dataset()
        x_test, y_test = (t.numpy() for t in data.tensors("test"))
        x_train = data.tensors("train")[0].numpy()
        fp32, int8 = state.run_dir / "model.onnx", state.run_dir / "model.int8.onnx"
        exp = export_onnx(model, fp32, input_shape=spec.input_shape, opset=cfg.opset)
        q = quantize_onnx(fp32, int8, calibration_sample(x_train, cfg.calibration_images),
                          QuantizeConfig(calibration_images=cfg.calibration_images))
        state.artifacts["onnx"], state.artifacts["onnx_int8"] = fp32, int8
        probe = torch.from_numpy(x_test[:1000])
        bcfg = BenchConfig(threads=cfg.threads, iterations=cfg.iterations, throughput_batch=cfg.throughput_batch)
        images = x_test[:cfg.throughput_batch]
        eager = bench_torch(model, images, bcfg)
        ort32 = bench_onnx(fp32, images, bcfg, name="onnx runtime fp32")
        ort8 = bench_onnx(int8, images, bcfg, name="onnx runtime int8")
        net = NetworkProfile(bandwidth_bps=parse_bandwidth(cfg.bandwidth), rtt_ms=cfg.rtt_ms,
                             edge_slowdown=cfg.edge_slowdown, encoding=cfg.encoding)
        profile = profile_layers(model, x_test[:8], threads=cfg.threads)
        plan = plan_split(profile, net)
        local = plan_split(profile, net.model_copy(update={"bandwidth_bps": 1e12, "rtt_ms": 0.0,
                                                           "edge_slowdown": 1.0}))
        split_source = source or state.artifacts.get("checkpoint")  # the cloud process loads the model file
        if split_source is None:
            from lepton.train.checkpoint import save_checkpoint

            split_source = save_checkpoint(state.run_dir / "edge-split-model", model, spec)
        run = run_split(split_source, plan.best_cut, x_test[:cfg.split_requests], encoding=cfg.encoding)
        return EdgeStageReport(
            source=str(source or "trained model"), onnx_fp32_bytes=exp.bytes, onnx_int8_bytes=q.bytes,
            int8_size_ratio=q.size_ratio, fp32_test_accuracy=onnx_accuracy(fp32, x_test, y_test),
            int8_test_accuracy=onnx_accuracy(int8, x_test, y_test),
            max_abs_diff_fp32=max_abs_diff(model, onnx_session(fp32), probe),
            max_abs_diff_int8=max_abs_diff(model, onnx_session(int8), probe),
            eager_p50_ms=eager.p50_ms, fp32_p50_ms=ort32.p50_ms, int8_p50_ms=ort8.p50_ms,
            int8_speedup_vs_eager=eager.p50_ms / ort8.p50_ms, cpu_int8_features=cpu_int8_features(),
            latency=[eager, ort32, ort8],
            split=SplitSummary(best_cut=plan.best_cut, best_after=plan.best_after, predicted_ms=plan.best_ms,
                               predicted_loopback_ms=local.rows[plan.best_cut].total_ms, measured_ms=run.total_ms,
                               measured_edge_ms=run.edge_ms, measured_transfer_ms=run.transfer_ms,
                               measured_cloud_ms=run.cloud_ms, agreement=run.agreement, network=net,
                               rows=plan.rows))

    def html(self, report: EdgeStageReport, state: RunState) -> str:  # type: ignore[override]
        s = report.split
        plan = SplitPlan(network=s.network, rows=s.rows, best_cut=s.best_cut, best_after=s.best_after,
                         best_ms=s.predicted_ms, cloud_only_ms=s.rows[0].total_ms, edge_only_ms=s.rows[-1].total_ms,
                         speedup_vs_cloud_only=s.rows[0].total_ms / s.predicted_ms)
        return "".join([
            H.kpis({"ONNX fp32": f"{report.onnx_fp32_bytes:,} B", "ONNX int8": f"{report.onnx_int8_bytes:,} B",
                    "fp32 accuracy": f"{100 * report.fp32_test_accuracy:.2f}%",
                    "int8 accuracy": f"{100 * report.int8_test_accuracy:.2f}%",
                    "eager p50": f"{report.eager_p50_ms:.3f} ms", "int8 p50": f"{report.int8_p50_ms:.3f} ms",
                    "int8 speedup": f"{report.int8_speedup_vs_eager:.1f}x"}),
            "<h3>Latency at batch 1 and throughput</h3>", H.table([r.model_dump() for r in report.latency]),
            f"<p class='muted'>CPU int8 dot-product instructions: "
            f"{', '.join(report.cpu_int8_features) or 'none (AVX2 only)'}.</p><h3>Edge–cloud split (predicted)</h3>",
            H.figure(plan_figure(plan), f"{s.network.bandwidth_bps / 1e6:g} Mbit/s, RTT {s.network.rtt_ms:g} ms, "
                                        f"edge {s.network.edge_slowdown:g}x slower, payload {s.network.encoding}"),
            H.table([r.model_dump() for r in s.rows]),
            f"<p>Best cut after <b>{s.best_after}</b>: predicted {s.predicted_ms:.3f} ms. Run for real over "
            f"127.0.0.1: measured {s.measured_ms:.3f} ms beside {s.predicted_loopback_ms:.3f} ms predicted for this "
            f"host with a free link.</p>",
        ])
