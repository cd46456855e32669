"""The edge stage: export the (compressed) model to ONNX, quantize it to int8, benchmark it against
PyTorch eager on one thread, and plan + run the edge–cloud split for a default network profile."""

from __future__ import annotations

from html import escape

from lepton.edge.deploy import ONNX_FILE, ONNX_INT8_FILE, EdgeReport, deploy_model
from lepton.edge.split import SplitPlan
from lepton.pipeline.config import RunConfig
from lepton.pipeline.state import RunState
from lepton.report import html as H
from lepton.report.edge_plots import plan_figure

EdgeStageReport = EdgeReport  # the stage's report is the library's (the name other modules import)


def _choice_html(report: EdgeReport) -> str:
    """The fp32-or-int8 decision and the per-layer tuning behind it (nothing for runs made before both existed)."""
    c, t = report.int8_choice, report.int8_tuning
    if c is None:
        return ""
    parts = [
        "<h3>fp32 or int8 on this machine</h3>",
        H.table(
            [
                {"file": ONNX_FILE, "p50_ms": c.fp32_p50_ms, "test_accuracy": c.fp32_accuracy},
                {"file": ONNX_INT8_FILE, "p50_ms": c.int8_p50_ms, "test_accuracy": c.int8_accuracy},
            ]
        ),
        f"<p>Faster here: <b>{c.faster}</b>. Deploy <b>{escape(report.deploy or '')}</b>: "
        f"{escape(c.reason)} (timed in turn, 5 rounds; noise {c.noise:.1%}).</p>",
    ]
    if t is not None:
        kept = ", ".join(t.excluded) or "none"
        tried = (
            f"keeping {', '.join(t.candidates)} in fp32 gave {t.mixed_p50_ms:.4f} ms against {t.full_int8_p50_ms:.4f} ms"
            if t.mixed_p50_ms is not None
            else "no layer's int8 kernel profiled slower than its fp32 kernel"
        )
        parts += [
            "<h4>Per-layer kernel time (µs, batch 1, ONNX Runtime profiler)</h4>",
            H.table([r.model_dump() for r in t.layers]),
            f"<p class='muted'>Layers kept in fp32: {escape(kept)}; {escape(tried)}.</p>",
        ]
    return "".join(parts)


class EdgeStage:
    name = "edge"
    title = "Edge deployment"
    report_type = EdgeReport

    def enabled(self, config: RunConfig) -> bool:
        return config.edge.enabled

    def run(self, state: RunState) -> EdgeReport:
        from lepton.artifacts import load_model_file

        source = state.artifacts.get("lep")  # the compressed model; without compression, the trained one
        if source is not None:
            loaded = load_model_file(source, trust_code=state.trust_code)
            model, spec = loaded.model, loaded.spec
        elif state.model is not None and state.spec is not None:
            model, spec = state.model.eval(), state.spec
        else:
            raise RuntimeError("the edge stage needs a model: run the train stage first")
        report = deploy_model(
            model,
            spec,
            state.require_dataset(),
            state.config.edge,
            state.run_dir,
            model_file=source or state.artifacts.get("checkpoint"),  # what the cloud process loads
            source=source.name if source is not None else "trained model",  # the run folder's file: portable
            trust_code=state.trust_code,
            progress=state.progress,
            console=state.console,
        )
        state.artifacts["onnx"] = state.run_dir / ONNX_FILE
        state.artifacts["onnx_int8"] = state.run_dir / ONNX_INT8_FILE
        return report

    def outputs(self, report: EdgeReport) -> list[str]:  # type: ignore[override]
        return [ONNX_FILE, ONNX_INT8_FILE]

    def restore(self, state: RunState, report: EdgeReport) -> None:  # type: ignore[override]
        state.artifacts["onnx"] = state.run_dir / ONNX_FILE
        state.artifacts["onnx_int8"] = state.run_dir / ONNX_INT8_FILE

    def summary(self, report: EdgeReport) -> str:  # type: ignore[override]
        return (
            f"int8 accuracy {100 * report.int8_test_accuracy:.2f}% (fp32 {100 * report.fp32_test_accuracy:.2f}%), "
            f"int8 {report.onnx_int8_bytes:,} bytes, p50 {report.int8_p50_ms:.3f} ms "
            f"({report.int8_speedup_vs_eager:.1f}x eager), fp32 p50 {report.fp32_p50_ms:.3f} ms; "
            f"deploy {report.deploy or 'not measured'}; split after {report.split.best_after}: "
            f"{report.split.predicted_ms:.3f} ms predicted, {report.split.measured_ms:.3f} ms measured"
        )

    def html(self, report: EdgeReport, state: RunState) -> str:  # type: ignore[override]
        s = report.split
        plan = SplitPlan(
            network=s.network,
            rows=s.rows,
            best_cut=s.best_cut,
            best_after=s.best_after,
            best_ms=s.predicted_ms,
            cloud_only_ms=s.rows[0].total_ms,
            edge_only_ms=s.rows[-1].total_ms,
            speedup_vs_cloud_only=s.rows[0].total_ms / s.predicted_ms,
        )
        return "".join(
            [
                H.kpis(
                    {
                        "ONNX fp32": f"{report.onnx_fp32_bytes:,} B",
                        "ONNX int8": f"{report.onnx_int8_bytes:,} B",
                        "fp32 accuracy": f"{100 * report.fp32_test_accuracy:.2f}%",
                        "int8 accuracy": f"{100 * report.int8_test_accuracy:.2f}%",
                        "eager p50": f"{report.eager_p50_ms:.3f} ms",
                        "fp32 p50": f"{report.fp32_p50_ms:.3f} ms",
                        "int8 p50": f"{report.int8_p50_ms:.3f} ms",
                        "int8 speedup": f"{report.int8_speedup_vs_eager:.1f}x",
                        "deploy": report.deploy or "not measured",
                    }
                ),
                _choice_html(report),
                "<h3>Latency at batch 1 and throughput</h3>",
                H.table([r.model_dump() for r in report.latency]),
                f"<p class='muted'>CPU int8 dot-product instructions: "
                f"{', '.join(report.cpu_int8_features) or 'none (AVX2 only)'}.</p><h3>Edge–cloud split (predicted)</h3>",
                H.figure(
                    plan_figure(plan),
                    f"{s.network.bandwidth_bps / 1e6:g} Mbit/s, RTT {s.network.rtt_ms:g} ms, "
                    f"edge {s.network.edge_slowdown:g}x slower, payload {s.network.encoding}",
                ),
                H.table([r.model_dump() for r in s.rows]),
                f"<p>Best cut after <b>{s.best_after}</b>: predicted {s.predicted_ms:.3f} ms. Run for real over "
                f"127.0.0.1: measured {s.measured_ms:.3f} ms beside {s.predicted_loopback_ms:.3f} ms predicted for this "
                f"host with a free link.</p>",
            ]
        )
