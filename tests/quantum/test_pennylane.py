"""Outputs and gradients against PennyLane default.qubit (an optional extra: `pip install -e .[pennylane]`).

Skipped where PennyLane is not installed; the dense-matrix reference of test_simulator.py covers the
same property there.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lepton.quantum.circuit import Circuit, Param, variational_circuit
from lepton.quantum.simulator import expval_z
from tests.quantum.test_simulator import random_circuit

qml = pytest.importorskip("pennylane")


def pennylane_expval_z(circuit: Circuit, weights: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """<Z> of every measured wire, [batch, n], on default.qubit (torch backprop, batch broadcast)."""
    gates = {
        "RX": qml.RX,
        "RY": qml.RY,
        "RZ": qml.RZ,
        "ROT": qml.Rot,
        "H": qml.Hadamard,
        "CNOT": qml.CNOT,
        "CZ": qml.CZ,
    }
    batch = inputs.shape[0]

    def value(p: Param) -> torch.Tensor:
        if p.kind == "w":
            return (p.scale * weights.reshape(-1)[p.index]).expand(batch)
        if p.kind == "x":
            return p.scale * inputs[:, p.index]
        return torch.full((batch,), p.scale * p.value, dtype=inputs.dtype)

    @qml.qnode(qml.device("default.qubit", wires=circuit.n_qubits), interface="torch", diff_method="backprop")
    def run() -> list:
        for op in circuit.ops:
            gates[op.gate](*(value(p) for p in op.params), wires=list(op.wires))
        return [qml.expval(qml.PauliZ(q)) for q in circuit.measured]

    return torch.stack(list(run()), -1)


def _compare(circuit: Circuit, weights: np.ndarray, inputs: np.ndarray) -> None:
    results = []
    for f in (
        lambda w, x: expval_z(circuit, w, x, dtype=torch.complex128),
        lambda w, x: pennylane_expval_z(circuit, w, x),
    ):
        w = torch.tensor(weights, dtype=torch.float64, requires_grad=True)
        x = torch.tensor(inputs, dtype=torch.float64, requires_grad=True)
        out = f(w, x)
        (out * torch.linspace(-1, 1, out.numel(), dtype=torch.float64).reshape(out.shape)).sum().backward()
        results.append((out.detach(), w.grad, x.grad))
    (o1, gw1, gx1), (o2, gw2, gx2) = results
    assert (o1 - o2).abs().max() < 1e-5
    assert (gw1 - gw2).abs().max() < 1e-5
    assert (gx1 - gx2).abs().max() < 1e-5


@pytest.mark.parametrize("n", [2, 3, 5])
def test_random_circuits_match_pennylane(n: int) -> None:
    rng = np.random.default_rng(10 + n)
    for _ in range(2):
        circuit = random_circuit(n, 20, rng)
        _compare(circuit, rng.normal(size=6), rng.normal(size=(4, 3)))


@pytest.mark.parametrize("n", [4, 8])
def test_variational_ansatz_matches_pennylane(n: int) -> None:
    rng = np.random.default_rng(n)
    circuit = variational_circuit(n, 3, reupload=True)
    _compare(circuit, rng.normal(size=circuit.weight_shape), rng.normal(size=(8, n)))
