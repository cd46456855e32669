"""The quantum stage as one library call: train the hybrid PCA → variational circuit → linear classifier beside
classical baselines, and save the trained circuit (JSON, optionally OpenQASM). ``lepton quantum train`` and
``lepton run``'s quantum stage both call :func:`train_circuit`."""

from __future__ import annotations

from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict

from lepton.data.dataset import ImageDataset
from lepton.quantum import hybrid
from lepton.quantum.circuit import Circuit
from lepton.quantum.circuit_file import TrainedCircuit, save_circuit
from lepton.quantum.config import HybridConfig
from lepton.quantum.hybrid import HybridReport
from lepton.quantum.qasm import to_qasm
from lepton.utils.io import atomic_write_text


class QuantumRun(BaseModel):
    """What :func:`train_circuit` measured (the hybrid experiment's report) and the files it wrote."""

    model_config = ConfigDict(extra="forbid")

    hybrid: HybridReport
    circuit_file: Path
    qasm_file: Path | None = None


def train_circuit(
    data: ImageDataset,
    cfg: HybridConfig,
    circuit_file: Path,
    *,
    qasm_file: Path | None = None,
    qasm_version: int = 2,
    dataset_label: str | None = None,
    progress: bool = False,
) -> QuantumRun:
    """Run the hybrid experiment on ``data`` and save the trained circuit, with the first test sample's input
    angles, to ``circuit_file`` (and as OpenQASM ``qasm_version`` to ``qasm_file``). ``dataset_label`` names the
    data in the file's metadata (default: ``data.name``)."""
    report = hybrid.run_hybrid(data, cfg, progress=progress)
    circuit = Circuit.from_dict(report.circuit_spec)
    weights = torch.tensor(report.weights, dtype=torch.float64).reshape(circuit.weight_shape)
    save_circuit(
        circuit_file,
        TrainedCircuit(
            circuit, weights, report.sample_angles, {"dataset": dataset_label or data.name, "classes": cfg.classes}
        ),
    )
    if qasm_file is not None:
        atomic_write_text(qasm_file, to_qasm(circuit, weights, report.sample_angles, version=qasm_version))
    return QuantumRun(hybrid=report, circuit_file=circuit_file, qasm_file=qasm_file)
