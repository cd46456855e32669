import numpy as np
import pytest

from lepton.data import ImageDataset, load_dataset
from lepton.data.mnist import FASHION_MNIST_DIR, find_idx_files
from lepton.errors import DataError


def test_digits(digits):
    assert digits.x_train.shape == (1437, 8, 8) and digits.x_test.shape == (360, 8, 8)
    assert digits.x_train.dtype == np.uint8 and digits.x_train.max() == 255
    assert digits.num_classes == 10 and digits.input_shape == (1, 8, 8)


@pytest.mark.skipif(find_idx_files(FASHION_MNIST_DIR) is None, reason="dataset-fashion-mnist not installed")
def test_fashion_mnist():
    d = load_dataset("fashion-mnist")
    assert d.x_train.shape == (60000, 28, 28) and d.classes[9] == "Ankle boot"
    assert np.bincount(d.y_train).tolist() == [6000] * 10


def test_npz_with_x_and_y_is_split(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (50, 6, 6), dtype=np.uint8)
    y = np.arange(50) % 3
    np.savez(tmp_path / "toy.npz", x=x, y=y)
    d = load_dataset(str(tmp_path / "toy.npz"))
    assert len(d.x_train) == 40 and len(d.x_test) == 10 and d.num_classes == 3
    merged = np.concatenate([d.x_train, d.x_test])
    assert sorted(map(bytes, merged)) == sorted(map(bytes, x))


def test_npz_with_object_arrays_is_refused(tmp_path):
    np.savez(tmp_path / "evil.npz", x=np.array([{"a": 1}], dtype=object), y=np.array([0]))
    with pytest.raises(DataError, match="without pickle"):
        load_dataset(str(tmp_path / "evil.npz"))


def test_npz_missing_keys(tmp_path):
    np.savez(tmp_path / "k.npz", images=np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(DataError, match="needs arrays 'x' and 'y'"):
        load_dataset(str(tmp_path / "k.npz"))


def test_float_images_are_refused_with_a_fix():
    with pytest.raises(DataError, match="astype"):
        ImageDataset(
            "f",
            np.zeros((2, 4, 4), np.float32),
            np.zeros(2, np.int64),
            np.zeros((1, 4, 4), np.float32),
            np.zeros(1, np.int64),
        )


def test_unknown_dataset():
    with pytest.raises(DataError, match="unknown dataset 'nope'"):
        load_dataset("nope")


def test_tensors_are_pixels_over_255(digits):
    x, y = digits.tensors("test")
    assert x.shape == (360, 1, 8, 8) and x.dtype.is_floating_point and y.dtype.is_signed
    np.testing.assert_allclose(x[:, 0].numpy() * 255, digits.x_test, atol=1e-4)
