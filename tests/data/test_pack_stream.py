"""Streaming pack: a store written block by block (``StoreWriter.add_split_blocks``) holds what one written
from whole arrays holds, with a bounded number of blocks in flight; ``lepton data pack`` streams an image
folder and the store trains like the folder."""

import numpy as np
import pytest
from PIL import Image

from lepton.data.folder import load_image_folder, plan_image_folder
from lepton.data.options import SourceOptions
from lepton.data.store import Store, StoreWriter, pack_dataset, pack_image_folder, verify_store
from lepton.errors import DataError
from tests.cli.invoke import invoke


def _folder(root, *, rgb=False, per_class=7, size=(12, 10)):
    rng = np.random.default_rng(1)
    for c, cls in enumerate(("a", "b", "c")):
        (root / "train" / cls).mkdir(parents=True)
        (root / "test" / cls).mkdir(parents=True)
        for i in range(per_class):
            shape = (*size, 3) if rgb else size
            pixels = (rng.integers(0, 40, shape) + 60 * c).astype(np.uint8)
            split = "test" if i < 2 else "train"
            Image.fromarray(pixels).save(root / split / cls / f"{i}.png")
    return root


@pytest.mark.parametrize("rgb", [False, True])
def test_streamed_folder_store_equals_the_store_of_the_decoded_folder(tmp_path, rgb):
    root = _folder(tmp_path / "f", rgb=rgb)
    plan = plan_image_folder(root)
    streamed = pack_image_folder(plan, tmp_path / "s.lds", image_codec="zstd", label_codec="zstd", block_samples=4)
    whole = pack_dataset(
        load_image_folder(root), tmp_path / "w.lds", image_codec="zstd", label_codec="zstd", block_samples=4
    )
    a, b = Store(streamed), Store(whole)
    for split in ("train", "test"):
        assert len(a.split(split).blocks) == len(b.split(split).blocks) == -(-len(plan.items(split)) // 4)
        for field in ("images", "labels"):
            x, y = a.read_field(split, field), b.read_field(split, field)
            assert x.dtype == y.dtype and np.array_equal(x, y)
    assert a.attrs["classes"] == ["a", "b", "c"] and a.attrs["name"] == "f"
    assert verify_store(streamed, reference=plan).ok


def test_blocks_are_written_as_they_come(tmp_path):
    """One encoding thread: when block i is asked for, every block before i - 2 is already in the file."""
    written = []
    with StoreWriter(tmp_path / "x.lds", block_samples=5, threads=1) as w:

        def blocks():
            for i in range(10):
                written.append(w._offset)
                yield {"v": np.full((5, 3), i, np.uint8)}

        w.add_split("warm", {"v": np.zeros((1, 3), np.uint8)}, {"v": "deflate"})
        w.add_split_blocks("data", blocks(), {"v": "deflate"})
    assert all(written[i] > written[i - 3] for i in range(3, 10))
    assert np.array_equal(Store(tmp_path / "x.lds").read_field("data", "v")[::5, 0], np.arange(10))


@pytest.mark.parametrize(
    ("blocks", "message"),
    [
        ([np.zeros((2, 3), np.uint8), np.zeros((4, 3), np.uint8)], "only the last block may hold fewer than 4"),
        ([np.zeros((4, 3), np.uint8), np.zeros((4, 3), np.int16)], r"block 1, field 'v': int16\[3\] per sample"),
        ([np.zeros((5, 3), np.uint8)], r"the same 1..4 samples"),
        ([], "has no blocks"),
    ],
)
def test_bad_blocks_are_refused_and_leave_no_file(tmp_path, blocks, message):
    with pytest.raises(DataError, match=message):
        with StoreWriter(tmp_path / "x.lds", block_samples=4) as w:
            w.add_split_blocks("train", ({"v": b} for b in blocks), {"v": "deflate"})
    assert not (tmp_path / "x.lds").exists()


def test_a_corrupt_image_names_the_file(tmp_path):
    root = _folder(tmp_path / "f")
    (root / "train" / "b" / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(DataError, match=r"3.png: cannot read as an image"):
        plan = plan_image_folder(root, SourceOptions(image_size=10))
        pack_image_folder(plan, tmp_path / "s.lds", image_codec="zstd")
    assert not (tmp_path / "s.lds").exists()


def test_cli_packs_a_folder_streaming_and_trains_from_it(tmp_path):
    root, out = _folder(tmp_path / "f", per_class=12), tmp_path / "f.lds"
    r = invoke(
        ["data", "pack", str(root), "--image-size", "10", "--codec", "zstd", "--block-samples", "8", "-o", str(out)]
    )
    assert r.kind == "ok", r.message
    assert "verified" in r.stdout and Store(out).split("train").samples == 30
    r = invoke(
        ["train", "--data", str(out), "--model", "lenet-300-100", "--epochs", "1", "-o", str(tmp_path / "t"), "--quiet"]
    )
    assert r.kind == "ok", r.message


def test_default_blocks_hold_at_most_8_mib_of_large_images(tmp_path):
    """MNIST- and CIFAR-sized samples keep 1,000 per block; large images get fewer, so a block of a streamed
    pack stays within 8 MiB of pixels (what bounds its memory)."""
    from lepton.data.store import DEFAULT_BLOCK_SAMPLES, default_block_samples

    assert default_block_samples(28 * 28) == default_block_samples(3 * 32 * 32) == DEFAULT_BLOCK_SAMPLES
    assert default_block_samples(3 * 96 * 96) == (8 << 20) // (3 * 96 * 96) == 303
    assert default_block_samples(3 * 4096 * 4096) == 1  # one huge image per block, never zero
    plan = plan_image_folder(_folder(tmp_path / "f", rgb=True, per_class=5, size=(700, 700)))
    store = Store(pack_image_folder(plan, tmp_path / "s.lds", image_codec="deflate"))
    assert store.split("train").block_samples == 5  # 1.47 MB per image: five fit in 8 MiB
    assert len(store.split("train").blocks) == 2  # 9 training images
