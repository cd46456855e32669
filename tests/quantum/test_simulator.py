"""The simulator against an independent dense-matrix reference (numpy kron, complex128)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lepton.errors import ConfigError
from lepton.quantum.circuit import Circuit, Op, c, draw, variational_circuit, w, x
from lepton.quantum.simulator import compile_circuit, expval_z, expval_z_from_samples, sample, simulate
from tests.quantum.reference import dense_expval_z, dense_state


def random_circuit(n: int, depth: int, rng: np.random.Generator) -> Circuit:
    """Random gates of every kind; angles mix weights, inputs (with scales) and constants."""
    ops = []
    for _ in range(depth):
        gate = rng.choice(["RX", "RY", "RZ", "ROT", "H", "CNOT", "CZ"]) if n > 1 else rng.choice(["RX", "ROT", "H"])
        if gate in ("CNOT", "CZ"):
            a, b = rng.choice(n, 2, replace=False)
            ops.append(Op(str(gate), (int(a), int(b))))
            continue
        k = {"ROT": 3, "H": 0}.get(str(gate), 1)
        params = []
        for _ in range(k):
            kind = rng.integers(3)
            params.append(
                w(int(rng.integers(6)), float(rng.normal()))
                if kind == 0
                else x(int(rng.integers(3)), float(rng.normal()))
                if kind == 1
                else c(float(rng.normal()))
            )
        ops.append(Op(str(gate), (int(rng.integers(n)),), tuple(params)))
    return Circuit(n, tuple(ops), (6,), 3)


def numeric_grad(f, v: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    g = np.zeros_like(v)
    for i in range(v.size):
        d = np.zeros_like(v)
        d.flat[i] = eps
        g.flat[i] = (f(v + d) - f(v - d)) / (2 * eps)
    return g


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_random_circuits_match_dense_reference(n: int) -> None:
    rng = np.random.default_rng(n)
    for _ in range(2):
        circ = random_circuit(n, 20, rng)
        wts = torch.tensor(rng.normal(size=6), requires_grad=True)
        xs = torch.tensor(rng.normal(size=(4, 3)), requires_grad=True)
        state = simulate(circ, wts, xs, dtype=torch.complex128)
        ref = np.stack([dense_state(circ, wts.detach().numpy(), xi) for xi in xs.detach().numpy()])
        assert np.abs(state.detach().numpy() - ref).max() < 1e-10
        # gradients of a random linear read-out of <Z>, against finite differences of the reference
        coef = rng.normal(size=(4, n))
        z = expval_z(circ, wts, xs, dtype=torch.complex128)
        (z * torch.tensor(coef)).sum().backward()
        wn, xn = wts.detach().numpy(), xs.detach().numpy()
        loss_w = lambda v: sum((dense_expval_z(circ, v, xi) * ci).sum() for xi, ci in zip(xn, coef))  # noqa: E731
        loss_x = lambda v: sum((dense_expval_z(circ, wn, xi) * ci).sum() for xi, ci in zip(v, coef))  # noqa: E731
        assert np.abs(wts.grad.numpy() - numeric_grad(loss_w, wn)).max() < 1e-5
        assert np.abs(xs.grad.numpy() - numeric_grad(loss_x, xn)).max() < 1e-5


@pytest.mark.parametrize("n", [2, 4, 8])
def test_complex64_ansatz_matches_reference(n: int) -> None:
    rng = np.random.default_rng(0)
    circ = variational_circuit(n, 3, reupload=True)
    wts = torch.tensor(rng.normal(size=circ.weight_shape), dtype=torch.float32)
    xs = torch.tensor(rng.normal(size=(5, n)), dtype=torch.float32)
    z = expval_z(circ, wts, xs)
    assert z.dtype == torch.float32 and z.shape == (5, n)
    ref = np.stack([dense_expval_z(circ, wts.double().numpy(), xi) for xi in xs.double().numpy()])
    assert np.abs(z.numpy() - ref).max() < 1e-5


def test_amplitude_encoding_and_unbatched_input() -> None:
    circ = variational_circuit(3, 2, encoding="amplitude", n_inputs=6, entangler="cz")
    rng = np.random.default_rng(1)
    wts = torch.tensor(rng.normal(size=circ.weight_shape))
    v = torch.tensor(rng.normal(size=6))
    z = expval_z(circ, wts, v, dtype=torch.complex128)
    assert z.shape == (3,)
    assert np.abs(z.numpy() - dense_expval_z(circ, wts.numpy(), v.numpy())).max() < 1e-12
    with pytest.raises(ConfigError, match="non-zero"):
        expval_z(circ, wts, torch.zeros(6, dtype=torch.float64))


def test_sampling_estimates_expectations() -> None:
    circ = variational_circuit(3, 2)
    wts = torch.randn(circ.weight_shape, generator=torch.Generator().manual_seed(0))
    xs = torch.randn(2, 3, generator=torch.Generator().manual_seed(1))
    state = simulate(circ, wts, xs, dtype=torch.complex128)
    bits = sample(state, 20000, generator=torch.Generator().manual_seed(2))
    assert bits.shape == (2, 20000, 3) and set(bits.unique().tolist()) <= {0, 1}
    est = expval_z_from_samples(bits)
    exact = expval_z(circ, wts, xs, dtype=torch.complex128)
    assert (est - exact).abs().max() < 4 / np.sqrt(20000) * 2  # well within 8 standard errors (sigma <= 1)


def test_bad_circuits_and_inputs_are_refused() -> None:
    with pytest.raises(ConfigError, match="out of range"):
        Circuit(2, (Op("CNOT", (0, 2)),))
    with pytest.raises(ConfigError, match="weight index"):
        Circuit(2, (Op("RX", (0,), (w(4),)),), (3,))
    with pytest.raises(ConfigError, match="takes 1 angle"):
        Circuit(2, (Op("RY", (0,)),))
    with pytest.raises(ConfigError, match="unknown gate"):
        Circuit(2, (Op("T", (0,)),))
    circ = variational_circuit(3, 2)
    with pytest.raises(ConfigError, match=r"shape \(2, 3, 3\)"):
        expval_z(circ, torch.zeros(2, 3), torch.zeros(4, 3))
    with pytest.raises(ConfigError, match=r"\[batch, 3\]"):
        expval_z(circ, torch.zeros(2, 3, 3), torch.zeros(4, 5))
    with pytest.raises(ConfigError, match="complex64 or"):
        compile_circuit(circ, dtype=torch.float32)


def test_forty_qubits_refused_before_allocation() -> None:
    circ = variational_circuit(40, 1)  # describing (drawing, exporting) 40 qubits is fine ...
    assert "39: ─" in draw(circ)
    with pytest.raises(ConfigError, match="40 qubits"):  # ... simulating it is refused up front
        expval_z(circ, torch.zeros(circ.weight_shape), torch.zeros(2, 40))


def test_circuit_round_trips_through_json_and_draws() -> None:
    circ = variational_circuit(3, 2, entangler="cz", reupload=True)
    assert Circuit.from_dict(circ.to_dict()) == circ
    text = draw(circ, torch.zeros(circ.weight_shape))
    assert len(text.splitlines()) == 3 and "RY(x0)" in text and "Rot(0.000,0.000,0.000)" in text
    with pytest.raises(ConfigError, match="not a valid circuit"):
        Circuit.from_dict({"n_qubits": 2})
