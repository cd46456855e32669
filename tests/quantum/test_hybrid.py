"""Hybrid PCA → quantum models: PCA against scikit-learn, and a short training run on 8x8 digits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

from lepton.data import load_digits
from lepton.errors import ConfigError
from lepton.quantum.hybrid import HybridConfig, HybridPCA, PCAFeatures, run_hybrid
from lepton.quantum.layers import QuantumLayer


def test_pca_features_match_sklearn_whitened_pca() -> None:
    x = torch.tensor(np.random.default_rng(0).normal(size=(200, 12)) @ np.diag(np.linspace(3, 0.2, 12)))
    ours = PCAFeatures(12, 5).double().fit(x)(x).numpy()
    ref = PCA(n_components=5, whiten=True, svd_solver="full").fit_transform(x.numpy())
    signs = np.sign((ours * ref).sum(0))  # each component is defined up to its sign
    assert np.abs(ours - ref * signs).max() < 1e-8
    with pytest.raises(ConfigError):
        PCAFeatures(12, 13)


def test_small_init_starts_near_identity_and_rejects_negative_std() -> None:
    layer = QuantumLayer(3, 2, init_std=0.0, rotation="ry", entangler="cz")
    x = torch.tensor([[0.3, -0.2, 1.1]])
    # RY(x) on |0> then identity rotations and a CZ ring (diagonal): <Z_i> = cos(x_i)
    torch.testing.assert_close(layer(x), torch.cos(x), atol=1e-6, rtol=0)
    with pytest.raises(ConfigError, match="init_std"):
        QuantumLayer(3, 2, init_std=-1.0)


def test_hybrid_trains_on_digits_and_beats_chance() -> None:
    torch.set_num_threads(1)  # restored after the test by the autouse fixture in tests/conftest.py
    cfg = HybridConfig(classes=[0, 1, 2, 3], n_qubits=4, n_layers=2, epochs=4, batch_size=32, lr=0.05, train_subset=300)
    rep = run_hybrid(load_digits(), cfg)
    hybrid, logreg, mlp = rep.results
    assert rep.n_train == 300 and rep.n_test > 100 and rep.features == "PCA-4"
    assert hybrid.test_accuracy > 0.7  # chance is 0.25
    assert logreg.params == 4 * 4 + 4 and abs(mlp.params - hybrid.params) <= hybrid.params // 3
    wires = rep.circuit.splitlines()  # one wire per qubit: input encoding, 2 layers, a <Z> readout
    assert [w.split(":")[0] for w in wires] == ["0", "1", "2", "3"], rep.circuit
    assert all(f"RY(x{i})" in w and w.count("Rot(") == 2 and w.endswith("<Z>") for i, w in enumerate(wires))
    model = HybridPCA(64, 4, 4, 2)
    assert model(torch.rand(5, 1, 8, 8)).shape == (5, 4)
