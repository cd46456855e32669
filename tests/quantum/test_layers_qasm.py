"""QuantumLayer training behaviour and OpenQASM export checked by Qiskit (skipped if Qiskit is absent)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lepton.errors import ConfigError
from lepton.quantum.circuit import variational_circuit
from lepton.quantum.layers import QuantumLayer
from lepton.quantum.qasm import to_qasm
from tests.quantum.reference import dense_expval_z


def test_quantum_layer_forward_backward_and_reference() -> None:
    layer = QuantumLayer(4, 2, seed=0, dtype=torch.complex128)
    x = torch.randn(6, 4, dtype=torch.float64)
    out = layer(x)
    assert out.shape == (6, 4) and out.dtype == torch.float64 and out.abs().max() <= 1
    ref = np.stack([dense_expval_z(layer.circuit, layer.weights.detach().numpy(), xi) for xi in x.numpy()])
    assert np.abs(out.detach().numpy() - ref).max() < 1e-12
    out.sum().backward()
    assert layer.weights.grad is not None and layer.weights.grad.abs().sum() > 0


def test_quantum_layer_learns_a_target() -> None:
    torch.manual_seed(0)
    layer = QuantumLayer(2, 2, seed=1)
    x = torch.rand(32, 2) * torch.pi
    target = torch.cos(x[:, :1]) * torch.ones(1, 2)  # reachable: <Z> of RY(x) alone
    opt = torch.optim.Adam(layer.parameters(), lr=0.2)
    first = None
    for _ in range(60):
        loss = ((layer(x) - target) ** 2).mean()
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.2 * first


@pytest.mark.parametrize("version", [2, 3])
def test_qasm_export_text(version: int) -> None:
    circ = variational_circuit(3, 1, entangler="cz")
    text = to_qasm(circ, torch.zeros(circ.weight_shape), [0.1, 0.2, 0.3], version=version)
    assert (
        text.startswith(f"OPENQASM {version}.0;")
        and "cz q[0], q[1];" in text
        and "ry(0.20000000000000001) q[1];" in text
    )
    with pytest.raises(ConfigError, match="input values"):
        to_qasm(circ, torch.zeros(circ.weight_shape), [0.1], version=version)
    with pytest.raises(ConfigError, match="amplitude"):
        to_qasm(variational_circuit(2, 1, encoding="amplitude"), torch.zeros(1, 2, 3), None)


@pytest.mark.parametrize("entangler", ["cnot", "cz"])
def test_qasm2_simulated_by_qiskit_gives_same_expectations(entangler: str) -> None:
    qasm2 = pytest.importorskip("qiskit.qasm2")
    from qiskit.quantum_info import Pauli, Statevector

    layer = QuantumLayer(5, 3, entangler=entangler, reupload=True, seed=3, dtype=torch.complex128)
    x = torch.randn(3, 5, dtype=torch.float64)
    ours = layer(x).detach().numpy()
    for i, xi in enumerate(x):
        qc = qasm2.loads(to_qasm(layer.circuit, layer.weights, xi))
        sv = Statevector(qc.remove_final_measurements(inplace=False))
        n = qc.num_qubits
        # Qiskit labels are little-endian: the rightmost character acts on q[0]
        theirs = [
            sv.expectation_value(Pauli("".join("Z" if k == q else "I" for k in reversed(range(n))))).real
            for q in range(n)
        ]
        assert np.abs(np.array(theirs) - ours[i]).max() < 1e-6


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_qasm_export_refuses_non_finite_angles(bad: float) -> None:
    c = variational_circuit(2, 1)
    weights = torch.zeros(c.weight_shape)
    weights[0, 1, 2] = bad
    with pytest.raises(ConfigError, match="OpenQASM needs finite angles"):
        to_qasm(c, weights, [0.1, 0.2])
    with pytest.raises(ConfigError, match="OpenQASM needs finite angles"):
        to_qasm(c, torch.zeros(c.weight_shape), [0.1, bad])
