"""CIFAR-10/100 binary version: files written here byte by byte from the format's description."""

import numpy as np
import pytest

from lepton.data import SourceOptions, load_cifar, load_dataset
from lepton.errors import DataError

RNG = np.random.default_rng(1)


def _record(labels, img):
    """The binary version's record: label byte(s), then the red, green and blue 32x32 planes, row by row."""
    planes = b"".join(bytes(int(v) for v in img[c].ravel()) for c in range(3))
    return bytes(labels) + planes


def _write(path, rows):
    path.write_bytes(b"".join(_record(labels, img) for labels, img in rows))


def _cifar10(root, per_batch=2, n_test=3):
    root.mkdir(parents=True, exist_ok=True)
    train, test = [], []
    for b in range(1, 6):
        rows = [
            ([int(RNG.integers(0, 10))], RNG.integers(0, 256, (3, 32, 32), dtype=np.uint8)) for _ in range(per_batch)
        ]
        _write(root / f"data_batch_{b}.bin", rows)
        train += rows
    test = [([int(RNG.integers(0, 10))], RNG.integers(0, 256, (3, 32, 32), dtype=np.uint8)) for _ in range(n_test)]
    _write(root / "test_batch.bin", test)
    return train, test


def test_cifar10_exact_arrays_labels_and_class_names(tmp_path):
    train, test = _cifar10(tmp_path / "c10")
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (tmp_path / "c10" / "batches.meta.txt").write_text("\n".join(names) + "\n\n")
    d = load_dataset(str(tmp_path / "c10"))  # detected from the file names
    assert d.name == "cifar10" and d.input_shape == (3, 32, 32) and d.classes == tuple(names)
    np.testing.assert_array_equal(d.x_train, np.stack([img for _, img in train]))
    np.testing.assert_array_equal(d.x_test, np.stack([img for _, img in test]))
    assert d.y_train.tolist() == [lab[0] for lab, _ in train] and d.y_test.tolist() == [lab[0] for lab, _ in test]
    explicit = load_dataset(f"cifar10:{tmp_path / 'c10'}")
    np.testing.assert_array_equal(explicit.x_train, d.x_train)


def test_cifar10_from_the_folder_the_archive_extracts_to(tmp_path):
    _cifar10(tmp_path / "cifar-10-batches-bin")
    assert load_dataset(str(tmp_path)).x_train.shape == (10, 3, 32, 32)


def test_cifar100_fine_by_default_coarse_on_request(tmp_path):
    def rows(n):
        return [
            ([int(RNG.integers(0, 20)), int(RNG.integers(0, 100))], RNG.integers(0, 256, (3, 32, 32), dtype=np.uint8))
            for _ in range(n)
        ]

    train, test = rows(4), rows(2)
    _write(tmp_path / "train.bin", train)
    _write(tmp_path / "test.bin", test)
    d = load_dataset(f"cifar100:{tmp_path}")
    assert d.num_classes == 100 and d.y_train.tolist() == [lab[1] for lab, _ in train]
    np.testing.assert_array_equal(d.x_train, np.stack([img for _, img in train]))
    np.testing.assert_array_equal(d.x_test, np.stack([img for _, img in test]))
    coarse = load_dataset(str(tmp_path), SourceOptions(cifar_labels="coarse"))
    assert coarse.num_classes == 20 and coarse.y_test.tolist() == [lab[0] for lab, _ in test]
    assert "coarse labels" in coarse.summary()["notes"]


def test_truncated_record_names_the_file_and_offset(tmp_path):
    _cifar10(tmp_path)
    f = tmp_path / "data_batch_3.bin"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"data_batch_3\.bin: truncated: record 1 at byte offset 3073 has 2973 of 3073"):
        load_dataset(str(tmp_path))


def test_label_out_of_range_and_missing_files(tmp_path):
    _cifar10(tmp_path)
    _write(tmp_path / "test_batch.bin", [([12], np.zeros((3, 32, 32), np.uint8))])
    with pytest.raises(DataError, match=r"test_batch\.bin: record 0 has a label 12, expected 0\.\.9"):
        load_cifar(tmp_path)
    (tmp_path / "data_batch_5.bin").unlink()
    with pytest.raises(DataError, match="missing data_batch_5.bin"):
        load_cifar(tmp_path)


@pytest.mark.parametrize("layout", ["batches-py-dir", "data_batch_1-no-bin", "python-subdir"])
def test_pickled_version_is_refused(tmp_path, layout):
    if layout == "batches-py-dir":
        root = tmp_path / "cifar-10-batches-py"
        root.mkdir()
        (root / "data_batch_1").write_bytes(b"\x80\x04")
    elif layout == "data_batch_1-no-bin":
        root = tmp_path
        (root / "data_batch_1").write_bytes(b"\x80\x04")
    else:
        root = tmp_path
        (root / "cifar-100-python").mkdir()
    with pytest.raises(DataError, match="pickled Python version.*download the binary version"):
        load_dataset(str(root))
    with pytest.raises(DataError, match="pickled Python version"):
        load_dataset(f"cifar10:{root}")
