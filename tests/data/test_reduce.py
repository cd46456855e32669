"""Lossy reduction: each method's store reconstructs what an independent computation predicts, is smaller,
and reports accuracy from real (short) training."""

import numpy as np
import pytest
from sklearn.decomposition import PCA

from lepton.data.reduce import ReduceConfig, reconstruct, reduce_dataset, write_reduced
from lepton.data.store import Store, load_packed, verify_store
from lepton.errors import ConfigError
from lepton.train.job import accuracy_check


def test_pca_reconstruction_matches_sklearn_within_int8_error(tmp_path, digits):
    cfg = ReduceConfig(pca_variance=0.9)
    store = write_reduced(digits, tmp_path / "pca.lds", cfg)
    flat = digits.x_train.reshape(len(digits.x_train), -1).astype(np.float32)
    ref = PCA(n_components=0.9, svd_solver="full").fit(flat)
    assert store.attrs["reduction"]["components"] == ref.n_components_
    exact = np.clip(np.rint(ref.inverse_transform(ref.transform(flat))), 0, 255)
    back = reconstruct(store).x_train.reshape(len(flat), -1).astype(np.float32)
    # int8 coefficients add a small error on top of PCA's own: SNR against the exact PCA reconstruction
    snr = 10 * np.log10((exact**2).sum() / ((exact - back) ** 2).sum())
    assert snr > 25
    assert verify_store(store).ok and store.file_bytes < digits.x_train.nbytes + digits.x_test.nbytes


@pytest.mark.slow  # over ~1 s: make test runs it, make test-fast skips it
@pytest.mark.parametrize("bits", [1, 3, 7])
def test_bit_depth_keeps_top_bits(tmp_path, digits, bits):
    back = load_packed(write_reduced(digits, tmp_path / "b.lds", ReduceConfig(bits=bits)).location)
    assert np.array_equal(back.x_test >> (8 - bits), digits.x_test >> (8 - bits))  # same top bits
    levels = np.unique(back.x_train)
    assert len(levels) <= 2**bits and levels.min() >= 0 and (bits > 1 or set(levels) <= {0, 255})


@pytest.mark.slow  # over ~1 s: make test runs it, make test-fast skips it
def test_feature_selection_keeps_chosen_pixels(tmp_path, digits):
    store = write_reduced(digits, tmp_path / "v.lds", ReduceConfig(select_variance=100.0))
    flat = digits.x_train.reshape(len(digits.x_train), -1)
    keep = np.nonzero(flat.var(axis=0) > 100.0)[0]
    assert np.array_equal(store.read_array("select.indices"), keep)
    back = reconstruct(store).x_train.reshape(len(flat), -1)
    assert np.array_equal(back[:, keep], flat[:, keep])
    dropped = np.setdiff1d(np.arange(flat.shape[1]), keep)
    assert np.array_equal(back[:, dropped], np.broadcast_to(np.rint(flat[:, dropped].mean(0)), back[:, dropped].shape))
    mi = write_reduced(digits, tmp_path / "m.lds", ReduceConfig(select_mi=20))
    assert mi.attrs["reduction"]["features"] == 20 and mi.read_field("train", "features").shape == (len(flat), 20)


@pytest.mark.slow
def test_reduce_report_trains_on_reconstructed_images(tmp_path, digits):
    cfg = ReduceConfig(bits=2, train_samples=300, epochs=1, model="lenet-300-100")
    report = reduce_dataset(
        digits, tmp_path / "r.lds", cfg, accuracy=accuracy_check(cfg.model, epochs=cfg.epochs, seed=cfg.seed)
    )
    assert [r.data for r in report.rows] == ["original (raw uint8)", "2-bit"]
    assert report.store_bytes == (tmp_path / "r.lds").stat().st_size == report.rows[1].bytes
    assert report.ratio > 3 and 0 < report.rows[1].test_accuracy <= 1
    assert report.rows[1].accuracy_delta == pytest.approx(report.rows[1].test_accuracy - report.rows[0].test_accuracy)
    assert "short" in report.note and Store(tmp_path / "r.lds").attrs["reduction"]["bits"] == 2


def test_exactly_one_method():
    with pytest.raises(ValueError, match="exactly one"):
        ReduceConfig(pca_variance=0.9, bits=2)
    with pytest.raises(ValueError):
        ReduceConfig(pca_variance=1.5)


def test_cli_reduce_needs_one_method(tmp_path):
    from typer.testing import CliRunner

    from lepton.cli import commands  # noqa: F401
    from lepton.cli.app import app

    r = CliRunner().invoke(app, ["data", "reduce", "digits", "-o", str(tmp_path / "x.lds")])
    assert isinstance(r.exception, ConfigError) and "exactly one" in str(r.exception)
