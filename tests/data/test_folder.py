"""Image folders (ImageFolder layout) read with Pillow, against the arrays the test wrote."""

import numpy as np
import pytest
from PIL import Image

from lepton.data import SourceOptions, load_dataset, load_image_folder
from lepton.errors import DataError

RNG = np.random.default_rng(0)


def _save(path, pixels, fmt=None, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format=fmt, **kw)
    return pixels


def _grey(h=13, w=17):
    return RNG.integers(0, 256, (h, w), dtype=np.uint8)


def _rgb(h=13, w=17):
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_grey_png_folder_with_splits_is_read_pixel_for_pixel(tmp_path):
    written = {}
    for split, n in (("train", 3), ("test", 2)):
        for cls in ("dog", "cat"):  # classes are sorted by name: cat=0, dog=1
            for i in range(n):
                written[(split, cls, i)] = _save(tmp_path / split / cls / f"{i}.png", _grey())
    d = load_dataset(str(tmp_path))
    assert d.classes == ("cat", "dog") and d.source.endswith("(image folder)")
    assert d.x_train.shape == (6, 13, 17) and d.x_test.shape == (4, 13, 17) and d.input_shape == (1, 13, 17)
    expect = np.stack([written[("train", c, i)] for c in ("cat", "dog") for i in range(3)])
    np.testing.assert_array_equal(d.x_train, expect)
    np.testing.assert_array_equal(
        d.x_test, np.stack([written[("test", c, i)] for c in ("cat", "dog") for i in range(2)])
    )
    assert d.y_train.tolist() == [0, 0, 0, 1, 1, 1] and d.y_test.tolist() == [0, 0, 1, 1]
    assert "test split from test/" in d.summary()["notes"]


def test_grey_and_rgb_png_auto_is_rgb_and_grey_replicates(tmp_path):
    rgb = _save(tmp_path / "a" / "x.png", _rgb())
    grey = _save(tmp_path / "b" / "y.png", _grey())
    both = [_save(tmp_path / c / f"z{i}.png", _grey()) for c in ("a", "b") for i in range(2)]
    d = load_image_folder(tmp_path, SourceOptions(test_fraction=0.5))
    assert d.input_shape == (3, 13, 17) and "rgb" in d.notes
    merged = np.concatenate([d.x_train, d.x_test])
    expect = [rgb.transpose(2, 0, 1)] + [np.repeat(g[None], 3, 0) for g in (grey, *both)]
    assert sorted(map(bytes, merged)) == sorted(map(bytes, expect))


def test_channels_grey_converts_colour_by_luma(tmp_path):
    rgb = _save(tmp_path / "a" / "x.png", _rgb())
    _save(tmp_path / "a" / "y.png", rgb)
    d = load_image_folder(tmp_path, SourceOptions(channels="grey", test_fraction=0.5))
    assert d.input_shape == (1, 13, 17) and len(d.x_train) == len(d.x_test) == 1
    luma = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])  # ITU-R 601-2, Pillow's "L"
    for got in (d.x_train[0], d.x_test[0]):
        assert np.abs(got.astype(np.float64) - luma).max() <= 1.0


def test_jpeg_is_close_to_what_was_written(tmp_path):
    yy, xx = np.mgrid[0:13, 0:17]
    smooth = np.stack([(yy * 15) % 256, (xx * 12) % 256, ((yy + xx) * 8) % 256], -1).astype(np.uint8)
    for cls in ("a", "b"):
        _save(tmp_path / cls / "0.jpeg", smooth, quality=95)
        _save(tmp_path / cls / "1.JPG", smooth, "JPEG", quality=95)
    d = load_dataset(f"folder:{tmp_path}")
    assert d.x_train.shape == (2, 3, 13, 17) and d.x_test.shape == (2, 3, 13, 17)
    assert np.abs(d.x_train.astype(int) - smooth.transpose(2, 0, 1)).mean() < 4
    grey = smooth[..., 0]
    _save(tmp_path / "c" / "g.jpg", grey, quality=95)  # a grey JPEG among colour ones: replicated to RGB
    _save(tmp_path / "c" / "h.jpg", grey, quality=95)
    d = load_dataset(f"folder:{tmp_path}")
    rows = np.concatenate([d.x_train[d.y_train == 2], d.x_test[d.y_test == 2]])
    assert rows.shape == (2, 3, 13, 17) and (rows[:, 0] == rows[:, 1]).all() and (rows[:, 1] == rows[:, 2]).all()
    assert np.abs(rows[:, 0].astype(int) - grey).mean() < 4


def test_16_bit_grey_png_is_scaled_not_clipped(tmp_path):
    wide = (np.arange(13 * 17, dtype=np.uint32) * 300).reshape(13, 17).astype(np.uint16)
    for cls in ("a", "b"):
        _save(tmp_path / cls / "0.png", wide)
        _save(tmp_path / cls / "1.png", wide)
    assert Image.open(tmp_path / "a" / "0.png").mode.startswith("I;16")
    d = load_dataset(str(tmp_path))
    expect = ((wide.astype(np.uint64) * 255 + 32767) // 65535).astype(np.uint8)
    assert d.input_shape == (1, 13, 17)
    for x in (*d.x_train, *d.x_test):
        np.testing.assert_array_equal(x, expect)


def test_sizes_most_common_by_default_and_image_size_resizes_and_crops(tmp_path):
    common = [_save(tmp_path / "a" / f"{i}.png", _grey(13, 17)) for i in range(3)]
    _save(tmp_path / "b" / "odd.png", np.full((20, 30), 77, np.uint8))
    _save(tmp_path / "b" / "odd2.png", np.full((9, 5), 200, np.uint8))
    d = load_image_folder(tmp_path, SourceOptions(test_fraction=0.4))
    assert d.input_shape == (1, 13, 17) and "the most common size" in d.notes
    merged = np.concatenate([d.x_train, d.x_test])
    assert sum(any(np.array_equal(m, c) for c in common) for m in merged) == 3
    assert any((m == 77).all() for m in merged) and any((m == 200).all() for m in merged)  # uniform stays uniform
    d8 = load_image_folder(tmp_path, SourceOptions(image_size=8, test_fraction=0.4))
    assert d8.input_shape == (1, 8, 8) and "image_size" in d8.notes


def test_center_crop_keeps_the_middle(tmp_path):
    img = np.zeros((10, 30), np.uint8)
    img[:, 10:20] = 255  # only the middle third is white: a 10x10 center crop is all white
    for cls in ("a", "b"):
        _save(tmp_path / cls / "0.png", img)
        _save(tmp_path / cls / "1.png", img)
    d = load_image_folder(tmp_path, SourceOptions(image_size=10))
    assert d.x_train.shape == (2, 10, 10) and (d.x_train == 255).all()


def test_held_out_split_is_stratified_seeded_and_said(tmp_path):
    for cls in ("a", "b", "c"):
        for i in range(10):
            _save(tmp_path / cls / f"{i:02d}.png", _grey(6, 6))
    d = load_dataset(str(tmp_path))
    assert np.bincount(d.y_test).tolist() == [2, 2, 2] and np.bincount(d.y_train).tolist() == [8, 8, 8]
    assert "held out 20% of each class" in d.summary()["notes"]
    again = load_dataset(str(tmp_path))
    np.testing.assert_array_equal(d.x_test, again.x_test)


@pytest.mark.parametrize("content", [b"not an image at all", None], ids=["garbage", "truncated-png"])
def test_corrupt_image_is_a_data_error_naming_the_file(tmp_path, content):
    for cls in ("a", "b"):
        _save(tmp_path / cls / "ok.png", _grey())
        _save(tmp_path / cls / "ok2.png", _grey())
    bad = tmp_path / "b" / "broken.png"
    if content is None:
        _save(bad, _rgb(64, 64))
        content = bad.read_bytes()[:200]
    bad.write_bytes(content)
    with pytest.raises(DataError, match="broken.png: cannot read as an image"):
        load_dataset(str(tmp_path))


def test_decompression_bomb_limit_is_kept(tmp_path, monkeypatch):
    for cls in ("a", "b"):
        _save(tmp_path / cls / "big.png", _grey())
        _save(tmp_path / cls / "big2.png", _grey())
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 13x17 = 221 > 2 x 100: Pillow refuses
    with pytest.raises(DataError, match=r"big2?\.png: cannot read as an image \(DecompressionBombError"):
        load_dataset(str(tmp_path))


def test_layout_errors(tmp_path):
    (tmp_path / "empty" / "a").mkdir(parents=True)
    _save(tmp_path / "empty" / "b" / "0.png", _grey())
    with pytest.raises(DataError, match=r"class folders \['a'\] hold no"):
        load_dataset(f"folder:{tmp_path / 'empty'}")
    _save(tmp_path / "s" / "train" / "a" / "0.png", _grey())
    _save(tmp_path / "s" / "test" / "z" / "0.png", _grey())
    with pytest.raises(DataError, match=r"classes \['z'\] are not in the train split"):
        load_dataset(str(tmp_path / "s"))
    (tmp_path / "none").mkdir()
    with pytest.raises(DataError, match="no class sub-folders"):
        load_dataset(f"folder:{tmp_path / 'none'}")
    with pytest.raises(DataError, match="needs a path: folder:PATH"):
        load_dataset("folder")


def test_a_folder_too_big_for_memory_is_refused_before_decoding(tmp_path, monkeypatch):
    from lepton.data import folder

    for cls in ("a", "b"):
        _save(tmp_path / cls / "0.png", _grey())
        _save(tmp_path / cls / "1.png", _grey())
    monkeypatch.setattr(folder, "_physical_memory", lambda: 1000)  # 4 x 13 x 17 = 884 bytes > 500
    monkeypatch.setattr(folder, "decode_image", lambda *a: pytest.fail("decoded before the size check"))
    with pytest.raises(DataError, match=r"13x17 \(the most common size\) would take 0\.0 GiB.*smaller --image-size"):
        load_dataset(str(tmp_path))
