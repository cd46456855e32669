"""A learned codec model shared by the splits of a store: stored once, pointed at by every field that uses it,
counted once, checked once; overlapping model extents refused; stores written before sharing still read."""

import json
from pathlib import Path

import numpy as np
import pytest

from lepton.data import load_digits
from lepton.data.codecs import get_codec
from lepton.data.dataset import ImageDataset
from lepton.data.store import Store, StoreWriter, inspect_store, load_packed, pack_dataset, verify_store
from lepton.data.store.format import HEADER
from lepton.errors import FormatError
from tests.cli.invoke import invoke
from tests.data.test_store import _rewrite_index

FIXTURE = Path(__file__).parent.parent / "fixtures" / "store_v1_split_models.lds"
"""Written by the code before models were shared (commit c5e45c3), each split holding its own copy of each model:
``pack_dataset(_subset(), path, image_codec=get_codec("lepton-cm", leaves=16), label_codec="freq",
block_samples=100)``."""


def _subset() -> ImageDataset:
    d = load_digits()
    return ImageDataset(
        d.name,
        d.x_train[:300],
        d.y_train[:300],
        d.x_test[:60],
        d.y_test[:60],
        classes=d.classes,
        source="sklearn digits, first 300 train and 60 test",
    )


class _PerSplitModels(StoreWriter):
    """The writer as it was before sharing: every field appends its own copy of its model."""

    def _model_extent(self, model: bytes) -> tuple[int, int, int]:
        return tuple(self._append(model))


def _pack(writer: type[StoreWriter], data: ImageDataset, path: Path) -> Path:
    """Both splits the way :func:`pack_dataset` writes them (the test split reuses the train split's codecs)."""
    codecs = {"images": get_codec("lepton-cm", leaves=16), "labels": "freq"}
    meta = {"name": data.name, "classes": list(data.classes), "source": data.source}  # as pack_dataset's
    with writer(path, attrs=meta, block_samples=100) as w:
        for split in ("train", "test"):
            x, y = (data.x_train, data.y_train) if split == "train" else (data.x_test, data.y_test)
            specs = w.add_split(split, {"images": x, "labels": y}, codecs)
            codecs = {k: s.codec for k, s in specs.items()}
    return path


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    data, root = _subset(), tmp_path_factory.mktemp("shared")
    shared = pack_dataset(
        data, root / "shared.lds", image_codec=get_codec("lepton-cm", leaves=16), label_codec="freq", block_samples=100
    )
    return data, shared, _pack(_PerSplitModels, data, root / "per-split.lds")


def test_a_later_split_points_at_the_first_splits_model(stores):
    data, shared, per_split = stores
    new, old = Store(shared), Store(per_split)
    for field in ("images", "labels"):
        train, test = new.split("train").fields[field], new.split("test").fields[field]
        assert train.model is not None and test.model == train.model  # the same extent, not a copy
        assert test.codec is train.codec  # the model was read, checked and parsed once
        assert old.split("test").fields[field].model != old.split("train").fields[field].model
    copies = sum(old.split("test").fields[f].model[1] for f in ("images", "labels"))
    assert copies > 300  # lepton-cm's tree and freq's table
    assert new.index_offset == old.index_offset - copies  # the payload lost exactly the second copies
    assert old.file_bytes - copies - 16 < new.file_bytes <= old.file_bytes - copies  # the index: shorter offsets
    back = load_packed(new)
    for name in ("x_train", "y_train", "x_test", "y_test"):
        a, b = getattr(data, name), getattr(back, name)
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    assert verify_store(new, reference=data).ok
    for split in ("train", "test"):  # the blocks themselves are the bytes the old layout held
        for i, block in enumerate(new.split(split).blocks):
            for field, (offset, length, _) in block.items():
                o, n, _ = old.split(split).blocks[i][field]
                assert new._src().read(offset, length) == old._src().read(o, n)


def test_a_shared_model_is_counted_once_under_the_split_that_stored_it(stores):
    _, shared, per_split = stores
    new, old = Store(shared), Store(per_split)
    for field in ("images", "labels"):
        blocks = {s: sum(b[field][1] for b in new.split(s).blocks) for s in ("train", "test")}
        model = new.split("train").fields[field].model[1]
        assert new.model_owner("train", field) == new.model_owner("test", field) == ("train", field)
        assert new.field_bytes("train", field) == blocks["train"] + model
        assert new.field_bytes("test", field) == blocks["test"]
        assert old.model_owner("test", field) == ("test", field)  # its own copy, counted for it
        assert old.field_bytes("test", field) == blocks["test"] + old.split("test").fields[field].model[1]
    rows = inspect_store(new)
    assert rows[-1]["stored_bytes"] == new.file_bytes == sum(r["stored_bytes"] for r in rows[:-1])
    by = {(r["split"], r["field"]): r for r in rows}
    assert by["train", "images"]["model"] == f"{new.split('train').fields['images'].model[1]:,} B"
    assert by["test", "images"]["model"] == by["test", "labels"]["model"] == "shared with split 'train'"
    assert by["test", "images"]["model_bytes"] == 0
    pixels = new.split("test").samples * 64
    assert by["test", "images"]["bits_per_value"] == pytest.approx(8 * new.field_bytes("test", "images") / pixels)


def test_cli_inspect_says_which_split_holds_the_model(stores):
    _, shared, _ = stores
    out = invoke(["data", "inspect", str(shared), "--no-xz", "--format", "json"])
    assert out.code == 0, out.message
    rows = {(r["split"], r["field"]): r for r in json.loads(out.stdout)["rows"]}
    assert rows["test", "images"]["model"] == "shared with split 'train'"
    table = invoke(["data", "inspect", str(shared), "--no-xz"])
    assert table.code == 0 and "shared" in table.stdout and "'trai" in table.stdout  # wrapped on a narrow terminal


def _model_of(ix, split, field):
    return ix["splits"][split]["fields"][field]["model"]


@pytest.mark.parametrize(
    "forge, message",
    [
        (lambda m, b: [m[0] + 1, m[1] - 1, m[2]], "offset .* is wrong"),  # inside the shared model
        (lambda m, b: [m[0], m[1] - 1, m[2]], "offset .* is wrong"),  # same start, shorter
        (lambda m, b: [m[0], m[1], m[2] ^ 1], "share .* bytes at .* but not their CRC-32"),
        (lambda m, b: list(b), "offset .* is wrong"),  # exactly a block's extent: only models may be shared
        (lambda m, b: [m[0], m[1] + 10**9, m[2]], "length"),  # past the file
    ],
)
def test_overlapping_but_not_identical_model_extents_are_refused(stores, tmp_path, forge, message):
    _, shared, _ = stores

    def edit(ix):
        block = ix["splits"]["test"]["blocks"][0]["images"]
        ix["splits"]["test"]["fields"]["images"]["model"] = forge(_model_of(ix, "train", "images"), block)

    with pytest.raises(FormatError, match=message):
        Store(_rewrite_index(shared, tmp_path / "forged.lds", edit))


def test_a_corrupted_shared_model_is_refused_for_both_splits(stores, tmp_path):
    _, shared, _ = stores
    offset, length, _ = Store(shared).split("train").fields["images"].model
    raw = bytearray(shared.read_bytes())
    raw[offset + length // 2] ^= 0x01
    bad = tmp_path / "flip.lds"
    bad.write_bytes(bytes(raw))
    both = r"the model of split 'train', field 'images', split 'test', field 'images': checksum mismatch"
    with pytest.raises(FormatError, match=both):
        Store(bad)
    with pytest.raises(FormatError, match=both):
        load_packed(bad)


def test_a_store_written_before_models_were_shared_still_reads():
    data = _subset()
    s = Store(FIXTURE)
    assert s.version == 1
    back = load_packed(s)
    for name in ("x_train", "y_train", "x_test", "y_test"):
        a, b = getattr(data, name), getattr(back, name)
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    for field in ("images", "labels"):
        train, test = s.split("train").fields[field], s.split("test").fields[field]
        assert train.model[1:] == test.model[1:] and train.model[0] != test.model[0]  # two copies of one model
        assert s.model_owner("test", field) == ("test", field)
        assert s.field_bytes("test", field) == test.model[1] + sum(b[field][1] for b in s.split("test").blocks)
    rows = inspect_store(s)
    assert sum(r["stored_bytes"] for r in rows[:-1]) == s.file_bytes == FIXTURE.stat().st_size
    assert not any("shared" in str(r.get("model", "")) for r in rows)
    assert verify_store(s, reference=data).ok


def test_writing_equal_models_for_two_fields_of_one_split_stores_them_once(tmp_path):
    """Sharing is by the model's bytes: two fields fitted to the same labels share one table."""
    y = np.arange(500, dtype=np.uint8) % 7
    with StoreWriter(tmp_path / "two.lds", block_samples=100) as w:
        w.add_split("train", {"a": y, "b": y.copy()}, {"a": "freq", "b": "freq"})
    s = Store(tmp_path / "two.lds")
    a, b = s.split("train").fields["a"], s.split("train").fields["b"]
    assert a.model == b.model and s.model_owner("train", "b") == ("train", "a")
    assert np.array_equal(s.read_field("train", "b"), y)
    assert s.field_bytes("train", "a") + s.field_bytes("train", "b") == s.index_offset - HEADER.size
    assert inspect_store(s)[1]["model"] == "shared with split 'train', field 'a'"
