"""The optional quantum stage: train the hybrid PCA → variational circuit → linear classifier on the run's
dataset beside classical baselines on the same features, and export the trained circuit (JSON + OpenQASM)."""

from __future__ import annotations

import html

from pydantic import BaseModel

from lepton.pipeline.config import QuantumConfig, RunConfig
from lepton.pipeline.state import RunState
from lepton.quantum.experiment import train_circuit
from lepton.quantum.hybrid import ModelResult
from lepton.report import html as H
from lepton.report import quantum_plots as P


class QuantumStageReport(BaseModel):
    classes: list[int]
    n_train: int
    n_test: int
    features: str
    n_qubits: int
    n_layers: int
    hybrid_test_accuracy: float
    best_classical_test_accuracy: float
    hybrid_seconds_per_epoch: float
    results: list[ModelResult]
    circuit: str
    circuit_file: str
    qasm_file: str


class QuantumStage:
    name = "quantum"
    title = "Quantum exploration (simulated)"
    report_type = QuantumStageReport

    def enabled(self, config: RunConfig) -> bool:
        return config.quantum.enabled

    def run(self, state: RunState) -> QuantumStageReport:
        cfg: QuantumConfig = state.config.quantum  # a QuantumConfig is a HybridConfig
        circuit_path, qasm_path = state.run_dir / "circuit.json", state.run_dir / "circuit.qasm"
        report = train_circuit(
            state.require_dataset(),
            cfg,
            circuit_path,
            qasm_file=qasm_path,
            qasm_version=cfg.qasm_version,
            progress=state.progress,
        ).hybrid
        state.artifacts["circuit"], state.artifacts["qasm"] = circuit_path, qasm_path
        hybrid, classical = report.results[0], report.results[1:]
        return QuantumStageReport(
            classes=report.classes,
            n_train=report.n_train,
            n_test=report.n_test,
            features=report.features,
            n_qubits=cfg.n_qubits,
            n_layers=cfg.n_layers,
            hybrid_test_accuracy=hybrid.test_accuracy,
            best_classical_test_accuracy=max(r.test_accuracy for r in classical),
            hybrid_seconds_per_epoch=hybrid.seconds_per_epoch,
            results=report.results,
            circuit=report.circuit,
            circuit_file=circuit_path.name,
            qasm_file=qasm_path.name,
        )

    def outputs(self, report: QuantumStageReport) -> list[str]:  # type: ignore[override]
        return [report.circuit_file, report.qasm_file]

    def restore(self, state: RunState, report: QuantumStageReport) -> None:  # type: ignore[override]
        state.artifacts["circuit"] = state.run_dir / report.circuit_file
        state.artifacts["qasm"] = state.run_dir / report.qasm_file

    def summary(self, report: QuantumStageReport) -> str:  # type: ignore[override]
        return (
            f"hybrid test accuracy {100 * report.hybrid_test_accuracy:.2f}% vs best classical "
            f"{100 * report.best_classical_test_accuracy:.2f}% ({report.n_qubits} qubits x {report.n_layers} layers)"
        )

    def html(self, report: QuantumStageReport, state: RunState) -> str:  # type: ignore[override]
        rows = [r.model_dump() for r in report.results]
        return "".join(
            [
                H.kpis(
                    {
                        "hybrid accuracy": f"{100 * report.hybrid_test_accuracy:.2f}%",
                        "best classical": f"{100 * report.best_classical_test_accuracy:.2f}%",
                        "qubits × layers": f"{report.n_qubits} × {report.n_layers}",
                        "quantum s/epoch": f"{report.hybrid_seconds_per_epoch:.1f} s",
                        "classes": ", ".join(map(str, report.classes)),
                    }
                ),
                H.figure(
                    P.accuracy_bars(rows),
                    f"{report.features} features of {report.n_train:,} training images; "
                    f"test on {report.n_test:,}. A statevector simulation: no speed-up claimed.",
                ),
                H.table(rows),
                f"<h3>The trained circuit</h3><pre>{html.escape(report.circuit)}</pre>"
                f"<p class='muted'>Saved as {html.escape(report.circuit_file)}; OpenQASM with the trained angles and the "
                f"first test sample's inputs bound: {html.escape(report.qasm_file)}.</p>",
            ]
        )
