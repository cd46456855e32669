"""An independent dense-matrix reference: full 2**n x 2**n gate matrices built with numpy kron, in complex128."""

from __future__ import annotations

import numpy as np

from lepton.quantum.circuit import Circuit

I2 = np.eye(2)


def _angle(p, weights: np.ndarray, inputs: np.ndarray) -> float:
    if p.kind == "w":
        return p.scale * weights.reshape(-1)[p.index]
    if p.kind == "x":
        return p.scale * inputs[p.index]
    return p.scale * p.value


def _one(gate: str, a: list[float]) -> np.ndarray:
    if gate == "H":
        return np.array([[1, 1], [1, -1]]) / np.sqrt(2)
    if gate == "RX":
        c, s = np.cos(a[0] / 2), np.sin(a[0] / 2)
        return np.array([[c, -1j * s], [-1j * s, c]])
    if gate == "RY":
        c, s = np.cos(a[0] / 2), np.sin(a[0] / 2)
        return np.array([[c, -s], [s, c]])
    if gate == "RZ":
        return np.diag([np.exp(-0.5j * a[0]), np.exp(0.5j * a[0])])
    phi, theta, omega = a  # ROT = RZ(omega) RY(theta) RZ(phi)
    return _one("RZ", [omega]) @ _one("RY", [theta]) @ _one("RZ", [phi])


def _embed(n: int, wire: int, m: np.ndarray) -> np.ndarray:
    out = np.ones((1, 1))
    for q in range(n):
        out = np.kron(out, m if q == wire else I2)
    return out


def _two(gate: str, n: int, a: int, b: int) -> np.ndarray:
    p0, p1 = np.diag([1, 0]), np.diag([0, 1])
    other = np.array([[0, 1], [1, 0]]) if gate == "CNOT" else np.diag([1, -1])

    def k(ma, mb):
        out = np.ones((1, 1))
        for q in range(n):
            out = np.kron(out, ma if q == a else (mb if q == b else I2))
        return out

    return k(p0, I2) + k(p1, other)


def dense_state(circuit: Circuit, weights: np.ndarray, inputs: np.ndarray | None) -> np.ndarray:
    n = circuit.n_qubits
    if circuit.encoding == "amplitude":
        v = np.zeros(2**n, dtype=complex)
        v[: len(inputs)] = inputs
        state = v / np.linalg.norm(v)
    else:
        state = np.zeros(2**n, dtype=complex)
        state[0] = 1
    for op in circuit.ops:
        if len(op.wires) == 1:
            u = _embed(n, op.wires[0], _one(op.gate, [_angle(p, weights, inputs) for p in op.params]))
        else:
            u = _two(op.gate, n, *op.wires)
        state = u @ state
    return state


def dense_expval_z(circuit: Circuit, weights: np.ndarray, inputs: np.ndarray | None) -> np.ndarray:
    n = circuit.n_qubits
    probs = np.abs(dense_state(circuit, weights, inputs)) ** 2
    idx = np.arange(2**n)
    return np.array([(probs * (1 - 2 * ((idx >> (n - 1 - q)) & 1))).sum() for q in circuit.measured])
