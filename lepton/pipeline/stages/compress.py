"""The compress stage: prune, share and entropy-code the trained model into ``model.lep``."""

from __future__ import annotations

from lepton.compress.chain import CompressReport, compress_model
from lepton.compress.container import load_lep
from lepton.pipeline.config import RunConfig
from lepton.pipeline.state import RunState
from lepton.report import compress_plots as P
from lepton.report import html as H


class CompressStage:
    name = "compress"
    title = "Model compression"
    report_type = CompressReport

    def enabled(self, config: RunConfig) -> bool:
        return config.compress.enabled

    def run(self, state: RunState) -> CompressReport:
        if state.model is None or state.spec is None:
            raise RuntimeError("the compress stage needs the trained model of the train stage")
        path = state.run_dir / "model.lep"
        report = compress_model(
            state.model,
            state.spec,
            state.require_dataset(),
            state.config.compress,
            state.config.train,
            path,
            progress=state.progress,
            console=state.console,
            trust_code=state.trust_code,
        )
        state.artifacts["lep"] = path
        return report

    def outputs(self, report: CompressReport) -> list[str]:  # type: ignore[override]
        return [report.file]

    def restore(self, state: RunState, report: CompressReport) -> None:  # type: ignore[override]
        state.artifacts["lep"] = state.run_dir / report.file

    def summary(self, report: CompressReport) -> str:  # type: ignore[override]
        return (
            f"test accuracy {100 * report.test_accuracy:.2f}% (dense {100 * report.baseline_test_accuracy:.2f}%), "
            f"{report.file_bytes:,} bytes, {report.ratio:.1f}x smaller than fp32"
        )

    def html(self, report: CompressReport, state: RunState) -> str:  # type: ignore[override]
        decoded = load_lep(state.run_dir / report.file).build_model(trust_code=state.trust_code)
        parts = [
            H.kpis(
                {
                    "file": f"{report.file_bytes:,} B",
                    "ratio vs fp32": f"{report.ratio:.1f}x",
                    "test accuracy (decoded file)": f"{100 * report.test_accuracy:.2f}%",
                    "dense accuracy": f"{100 * report.baseline_test_accuracy:.2f}%",
                    "weights kept": f"{report.kept:,} / {report.params:,}",
                    "bit-exact decode": "yes" if report.bit_exact else "NO",
                }
            ),
            H.figure(
                P.accuracy_vs_size([s.model_dump() for s in report.steps]),
                "dense → pruned → shared → coded; 'pruned' and 'shared' are sized by the same container",
            ),
            H.table([s.model_dump() for s in report.steps]),
            "<h3>The file, layer by layer (lepton compress inspect)</h3>",
            H.table(report.layers),
            f"<p class='muted'>Huffman: {report.huffman_bytes:,} B · ANS: {report.ans_bytes:,} B "
            f"(coder used: {report.coder}).</p>",
        ]
        if report.variational is not None:
            v = report.variational
            parts.append("<h3>Sparse variational dropout: the operating points of one posterior</h3>")
            parts.append(
                H.figure(
                    P.operating_points(
                        [p.model_dump() for p in v.frontier],
                        {"bytes": report.file_bytes, "test_error": 1 - report.test_accuracy},
                    ),
                    "each point: weights with log alpha above a threshold removed, dead units removed, weights "
                    "shared at the posterior's bit widths (scaled), then encoded and decoded; the written file's "
                    "codebooks are also fine-tuned. Points are chosen by validation error, never test error.",
                )
            )
            parts.append(
                H.table(
                    [
                        {
                            "params": f"{v.params_before:,} -> {v.params_after:,}",
                            "widths": ", ".join(f"{k} {a}->{b}" for k, (a, b) in v.shrink.widths.items()),
                            "batch-1 latency ms (1 thread)": f"{v.latency_p50_ms_before} -> {v.latency_p50_ms_after}",
                            "log alpha threshold": v.threshold,
                            "bits": ", ".join(f"{k} {b}" for k, b in v.bits.items()),
                        }
                    ]
                )
            )
        if report.channels is not None:
            ch = report.channels
            parts.append("<h3>Channel pruning (batch-1 latency, 1 thread, p50)</h3>")
            parts.append(
                H.table(
                    [
                        {
                            "": "before",
                            "params": ch.params_before,
                            "MACs": ch.macs_before,
                            "latency ms": ch.latency_p50_ms_before,
                        },
                        {
                            "": "after",
                            "params": ch.params_after,
                            "MACs": ch.macs_after,
                            "latency ms": ch.latency_p50_ms_after,
                        },
                    ]
                )
            )
            if ch.pruning.kept_full:
                parts.append(H.table([{"kept at full width": k, "why": v} for k, v in ch.pruning.kept_full.items()]))
        if report.sensitivity is not None:
            scan = report.sensitivity
            curves = {row["layer"]: [(p["rate"], p["accuracy"]) for p in row["points"]] for row in scan["layers"]}
            parts.append(
                H.figure(
                    P.sensitivity_curves(curves, scan["baseline_accuracy"]),
                    f"measured on the last {scan['samples']:,} training images, not on the test set",
                )
            )
        parts.append(H.figure(P.layer_sparsity(report.sparsity)))
        parts.append(H.figure(P.shared_weight_histograms(decoded)))
        return "".join(parts)
