"""The packed store: lossless round trips, refusal of damaged or forged files, Dataset access, training
equality with in-memory arrays, and reading through fsspec URLs."""

import hashlib
import json

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lepton.data.codecs import DTYPES, get_codec
from lepton.data.store import (
    PackedImageDataset,
    Store,
    StoreWriter,
    inspect_store,
    load_packed,
    pack_dataset,
    store_batches,
    verify_store,
)
from lepton.data.store.format import FOOTER, HEADER, open_store
from lepton.errors import ConfigError, FormatError
from lepton.models.registry import ModelSpec
from lepton.train import TensorBatches, TrainConfig, fit, seed_everything


@pytest.fixture(scope="module")
def digits_store(tmp_path_factory, digits):
    path = tmp_path_factory.mktemp("store") / "digits.lds"
    pack_dataset(digits, path, image_codec="zstd", block_samples=100)
    return path


# ---------------------------------------------------------------------------------------------- lossless round trips


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), codec=st.sampled_from(["deflate", "zstd", "lzma"]), block=st.integers(1, 7))
def test_roundtrip_every_dtype(tmp_path, data, codec, block):
    dtype = data.draw(st.sampled_from(DTYPES))
    n = data.draw(st.integers(0, 20))
    shape = data.draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=4))
    x = data.draw(hnp.arrays(dtype, (n, *shape)))
    labels = np.arange(n, dtype=np.int64)
    path = tmp_path / f"{dtype.name}.lds"
    with StoreWriter(path, block_samples=block, attrs={"k": [1, "two"]}) as w:
        w.add_split("train", {"x": x, "labels": labels}, {"x": codec, "labels": "deflate"})
        w.add_array("whole", x.reshape(-1), codec)
    with Store(path) as s:
        back = s.read_field("train", "x")
        assert back.dtype == x.dtype and back.shape == x.shape
        assert back.tobytes() == x.tobytes()  # bit for bit, NaN payloads and -0.0 included
        assert s.read_array("whole").tobytes() == x.reshape(-1).tobytes()
        assert np.array_equal(s.read_field("train", "labels"), labels)
        assert s.attrs == {"k": [1, "two"]}
        if n:
            idx = np.array([n - 1, 0, n // 2, n - 1])
            assert s.take("train", "x", idx).tobytes() == x[idx].tobytes()


@pytest.mark.slow
def test_full_mnist_pack_unpack_byte_for_byte(tmp_path, mnist):
    fast = get_codec("zstd", level=3)  # the store's job is tested here, not the codec's ratio
    path = pack_dataset(mnist, tmp_path / "mnist.lds", image_codec=fast, label_codec=fast)
    back = load_packed(path)
    for name in ("x_train", "y_train", "x_test", "y_test"):
        a, b = getattr(mnist, name), getattr(back, name)
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    assert back.classes == mnist.classes
    assert verify_store(path, reference=mnist).ok


@pytest.mark.slow
def test_full_mnist_pack_unpack_with_lepton_cm(tmp_path, mnist):
    """The full MNIST (70,000 images) through lepton-cm, byte for byte; a small tree keeps the fit short."""
    cm = get_codec("lepton-cm", leaves=256, fit_pixels=300_000)
    path = pack_dataset(mnist, tmp_path / "mnist.lds", image_codec=cm)
    back = load_packed(path)
    for name in ("x_train", "y_train", "x_test", "y_test"):
        a, b = getattr(mnist, name), getattr(back, name)
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    s = Store(path)
    train, test = s.split("train").fields["images"], s.split("test").fields["images"]
    assert train.codec.model == test.codec.model  # fitted once, on the first split
    assert test.model == train.model  # and stored once: the test split points at the train split's bytes
    assert 8 * s.field_bytes("train", "images") / mnist.x_train.size < 1.1


def test_inspect_counts_every_byte(digits_store, digits):
    rows = inspect_store(digits_store, xz=True)
    total = rows[-1]
    assert total["stored_bytes"] == digits_store.stat().st_size == sum(r["stored_bytes"] for r in rows[:-1])
    assert (
        total["raw_bytes"]
        == digits.x_train.nbytes + digits.x_test.nbytes + digits.y_train.nbytes + digits.y_test.nbytes
    )
    images = next(r for r in rows if r["split"] == "train" and r["field"] == "images")
    assert images["codec"] == "zstd" and images["bits_per_value"] < 8 and images["xz_bytes"] > 0


# ------------------------------------------------------------------------------------------ damaged or forged stores


def _rewrite_index(src, dst, edit):
    """Copy a store with its index JSON edited and a *valid* footer, as a forger would."""
    raw = src.read_bytes()
    offset, length, _, end = FOOTER.unpack(raw[-FOOTER.size :])
    index = json.loads(raw[offset : offset + length])
    edit(index)
    new = json.dumps(index).encode()
    dst.write_bytes(raw[:offset] + new + FOOTER.pack(offset, len(new), hashlib.sha256(new).digest(), end))
    return dst


@pytest.mark.slow
def test_cm_store_keeps_one_model_per_field_counted_and_checked(tmp_path, mnist):
    x, y = mnist.x_train[:2000], mnist.y_train[:2000]
    path = tmp_path / "cm.lds"
    with StoreWriter(path, block_samples=500) as w:
        w.add_split(
            "train", {"images": x, "labels": y}, {"images": get_codec("lepton-cm", leaves=128), "labels": "general"}
        )
    s = Store(path)
    spec = s.split("train").fields["images"]
    assert spec.model is not None and spec.codec.model  # one model, read back and checked at open
    assert np.array_equal(s.read_field("train", "images"), x)
    assert s.field_bytes("train", "images") == spec.model[1] + sum(b["images"][1] for b in s.split("train").blocks)
    assert 8 * s.field_bytes("train", "images") / x.size < 1.3  # the model counted, still well below xz's ~1.45
    raw = bytearray(path.read_bytes())
    raw[spec.model[0] + spec.model[1] // 2] ^= 0x01
    bad = tmp_path / "flip.lds"
    bad.write_bytes(bytes(raw))
    with pytest.raises(FormatError, match="model of split 'train', field 'images': checksum mismatch"):
        Store(bad)

    def drop_model(ix):
        del ix["splits"]["train"]["fields"]["images"]["model"]

    with pytest.raises(FormatError, match="offset"):  # its bytes no longer belong to anything
        Store(_rewrite_index(path, tmp_path / "nomodel.lds", drop_model))


def test_bit_flip_in_a_block_is_refused_naming_the_block(digits_store, tmp_path):
    s = Store(digits_store)
    offset, length, _ = s.split("train").blocks[3]["images"]
    raw = bytearray(digits_store.read_bytes())
    raw[offset + length // 2] ^= 0x10
    bad = tmp_path / "flip.lds"
    bad.write_bytes(bytes(raw))
    with pytest.raises(FormatError, match=r"block 3 of split 'train', field 'images': checksum mismatch"):
        Store(bad).read_field("train", "images")
    with pytest.raises(FormatError, match=r"block 3 of split 'train', field 'images': checksum mismatch"):
        Store(bad, threads=2).take("train", "images", np.arange(s.split("train").samples)[::-1])
    report = verify_store(bad)
    assert not report.ok and len(report.errors) == 1 and "block 3" in report.errors[0]
    assert np.array_equal(Store(bad).read_block("train", "images", 2), s.read_block("train", "images", 2))


@pytest.mark.parametrize("cut", [1, FOOTER.size, 100, 2000])
def test_truncated_store_is_refused(digits_store, tmp_path, cut):
    bad = tmp_path / "cut.lds"
    bad.write_bytes(digits_store.read_bytes()[:-cut])
    with pytest.raises(FormatError, match="truncated|footer|index"):
        Store(bad)


def test_flipped_index_byte_fails_its_hash(digits_store, tmp_path):
    raw = bytearray(digits_store.read_bytes())
    raw[-FOOTER.size - 10] ^= 1
    (tmp_path / "i.lds").write_bytes(bytes(raw))
    with pytest.raises(FormatError, match="SHA-256"):
        Store(tmp_path / "i.lds")


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda ix: ix["splits"]["train"]["blocks"][2]["images"].__setitem__(1, 2**62), "block 2 of split 'train'"),
        (lambda ix: ix["splits"]["train"]["blocks"][4]["labels"].__setitem__(0, 17), "block 4 of split 'train'"),
        (
            lambda ix: ix["splits"]["train"]["fields"]["images"]["codec"].__setitem__("name", "brotli"),
            "unknown codec 'brotli'",
        ),
        (lambda ix: ix["splits"]["train"]["fields"]["images"].__setitem__("shape", [2**20, 2**20]), "more than"),
        (lambda ix: ix["splits"]["train"].__setitem__("samples", 10**9), "block entries"),
        (lambda ix: ix["splits"]["test"]["fields"]["labels"].__setitem__("dtype", "object"), "dtype 'object'"),
        (lambda ix: ix.__setitem__("version", 99), "version"),
        (lambda ix: ix.pop("attrs"), "'attrs' is missing or not an object"),
        (lambda ix: ix.__setitem__("attrs", [1]), "'attrs' is missing or not an object"),
    ],
)
def test_forged_index_is_refused(digits_store, tmp_path, edit, message):
    with pytest.raises(FormatError, match=message):
        Store(_rewrite_index(digits_store, tmp_path / "forged.lds", edit))


def _rewrite_index_text(src, dst, edit):
    """Like :func:`_rewrite_index`, but ``edit`` rewrites the index's JSON text (for what json.dumps never writes)."""
    raw = src.read_bytes()
    offset, length, _, end = FOOTER.unpack(raw[-FOOTER.size :])
    new = edit(raw[offset : offset + length].decode()).encode()
    dst.write_bytes(raw[:offset] + new + FOOTER.pack(offset, len(new), hashlib.sha256(new).digest(), end))
    return dst


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda t: t.replace('"attrs":{', '"attrs":{"deep":' + "[" * 100_000 + "]" * 100_000 + ",", 1),
            "100002 levels deep, over the limit of 64",
        ),
        (lambda t: t.replace('"block_samples":', '"block_samples":1e999,"x":', 1), "1e999, which overflows"),
        (lambda t: t.replace('"attrs":{', '"attrs":{"w":NaN,', 1), "NaN"),
        (lambda t: t.replace('"version":1', '"version":1,"version":1', 1), "duplicate JSON key 'version'"),
        (lambda t: t.replace('"attrs":{', '"attrs":{"n":' + "1" * 5000 + ",", 1), "more than 4300 digits"),
    ],
)
def test_index_json_attacks_with_a_valid_checksum_are_refused(digits_store, tmp_path, edit, message):
    bad = _rewrite_index_text(digits_store, tmp_path / "forged.lds", edit)
    assert bad.read_bytes() != digits_store.read_bytes()
    with pytest.raises(FormatError, match=f"forged.lds: the index .*{message}") as info:
        Store(bad)
    assert "\n" not in str(info.value)


def test_attrs_a_reader_would_refuse_are_refused_on_write(tmp_path):
    deep: dict = {}
    for _ in range(70):
        deep = {"x": deep}
    with pytest.raises(ConfigError, match="attrs nest 71 levels deep; a store index allows at most 63"):
        StoreWriter(tmp_path / "deep.lds", attrs=deep)
    with pytest.raises(ConfigError, match="attrs must be JSON"):
        StoreWriter(tmp_path / "nan.lds", attrs={"w": float("nan")})
    assert not list(tmp_path.iterdir())


def test_forged_block_length_within_file_is_refused(digits_store, tmp_path):
    """A consistent-looking index whose block claims more samples than its stream holds."""

    def shrink(ix):
        ix["splits"]["train"]["block_samples"] = 10
        ix["splits"]["train"]["samples"] = 10 * len(ix["splits"]["train"]["blocks"])

    bad = _rewrite_index(digits_store, tmp_path / "f.lds", shrink)
    with pytest.raises(FormatError, match="block 0 of split 'train', field 'images': cannot decode"):
        Store(bad).read_block("train", "images", 0)


def test_not_a_store_and_wrong_version(tmp_path):
    (tmp_path / "junk.lds").write_bytes(b"hello world" * 20)
    with pytest.raises(FormatError, match="not a Lepton data store"):
        Store(tmp_path / "junk.lds")
    with StoreWriter(tmp_path / "v.lds") as w:
        w.add_split("train", {"a": np.zeros(3, np.uint8)}, {"a": "zstd"})
    raw = bytearray((tmp_path / "v.lds").read_bytes())
    raw[: HEADER.size] = HEADER.pack(raw[:8], 2, 0)
    (tmp_path / "v.lds").write_bytes(bytes(raw))
    with pytest.raises(FormatError, match="version 2"):
        Store(tmp_path / "v.lds")


def test_interrupted_write_leaves_no_store(tmp_path):
    path = tmp_path / "out.lds"

    def boom(done):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        with StoreWriter(path, block_samples=2) as w:
            w.add_split("train", {"a": np.arange(10, dtype=np.uint8)}, {"a": "zstd"}, progress=boom)
    assert list(tmp_path.iterdir()) == []
    w = StoreWriter(path)  # killed before close(): only a temporary file, and it has no footer
    w.add_split("train", {"a": np.random.default_rng(0).integers(0, 255, 500, dtype=np.uint8)}, {"a": "zstd"})
    w._f.flush()
    assert not path.exists()
    tmp = next(tmp_path.iterdir())
    with pytest.raises(FormatError, match="footer is missing"):
        Store(tmp)
    w.abort()
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------------- reading for torch


def test_dataset_random_access_matches_raw_arrays(digits_store, digits):
    ds = PackedImageDataset(digits_store, "train", cache_bytes=2 * 100 * 64)  # two blocks: forces evictions
    x_ref, y_ref = digits.tensors("train")
    for i in np.random.default_rng(0).integers(0, len(ds), 200):
        x, y = ds[int(i)]
        assert torch.equal(x, x_ref[i]) and y.item() == y_ref[i].item()
    assert len(ds) == len(digits.x_train)
    x, y = ds.__getitems__([5, 1400, 5, 0])
    assert torch.equal(x, x_ref[[5, 1400, 5, 0]]) and torch.equal(y, y_ref[[5, 1400, 5, 0]])


def test_shuffled_take_decodes_the_field_once_on_threads(digits_store, digits):
    order = np.random.default_rng(0).permutation(len(digits.x_train))
    for threads in (1, 2):
        s = Store(digits_store, threads=threads)
        first = s.take("train", "images", order[:64])  # touches most blocks: a shuffled pass decodes them all
        whole, done = s._whole["train", "images"]
        assert done.all() and np.array_equal(whole, digits.x_train)
        assert np.array_equal(first, digits.x_train[order[:64]])
        assert np.array_equal(s.take("train", "images", order), digits.x_train[order])
        assert s._complete["train", "images"] is whole and not whole.flags.writeable  # later takes: one gather
        with pytest.raises(IndexError):
            s.take("train", "images", np.array([0, -1]))  # no wrap-around on the decoded field's fast path
        with pytest.raises(IndexError, match="index out of range for split 'train'"):
            s.take("train", "images", np.array([len(order)]))
    s = Store(digits_store)
    s.take("train", "images", np.array([5, 7]))  # one block: decoded alone
    assert s._whole["train", "images"][1].sum() == 1
    with pytest.raises(ConfigError, match=r"The 'threads' parameter of Store must be an int in \[0, inf\)"):
        Store(digits_store, threads=-1)
    with pytest.raises(ConfigError, match=r"The 'threads' parameter of StoreWriter must be an int in \[0, inf\)"):
        StoreWriter(digits_store.parent / "never.lds", threads=-1)
    assert not (digits_store.parent / "never.lds").exists()


@pytest.mark.timeout(120)
def test_loader_workers_give_the_in_memory_batches(digits_store, digits):
    x, y = digits.tensors("train")
    ref = TensorBatches(x, y, 64, seed=3)
    loader = store_batches(digits_store, "train", 64, seed=3, workers=2)
    for epoch in (0, 1):
        ref.set_epoch(epoch)
        loader.set_epoch(epoch)
        pairs = list(zip(ref, loader, strict=True))
        assert len(pairs) == len(ref) == len(loader)
        assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in pairs)


@pytest.mark.slow
def test_training_from_store_gives_identical_weights(tmp_path, mnist):
    """LeNet-5, same seed: trained from raw arrays and from the packed store, weights equal bit for bit."""
    sub = mnist.subset(600, 100)
    path = pack_dataset(sub, tmp_path / "sub.lds", image_codec="deflate", block_samples=300)
    cfg = TrainConfig(epochs=2, batch_size=50, seed=7)
    spec = ModelSpec("lenet5", sub.input_shape, sub.num_classes)

    def train(batches):
        seed_everything(cfg.seed)
        model = spec.build()
        fit(model, batches, cfg, progress=False)
        return model.state_dict()

    raw = train(TensorBatches(*sub.tensors("train"), cfg.batch_size, seed=cfg.seed))
    packed = train(store_batches(path, "train", cfg.batch_size, seed=cfg.seed))
    assert raw.keys() == packed.keys()
    assert all(torch.equal(raw[k], packed[k]) for k in raw)


# --------------------------------------------------------------------------------------------------------- fsspec


def test_read_through_file_url(digits_store, digits):
    back = load_packed(f"file://{digits_store}")
    assert np.array_equal(back.x_test, digits.x_test) and np.array_equal(back.y_train, digits.y_train)
    ds = PackedImageDataset(f"file://{digits_store}", "test")
    assert torch.equal(ds[7][0], digits.tensors("test")[0][7])


def test_read_through_memory_filesystem_by_ranges(digits_store, digits):
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/lepton-test/digits.lds", digits_store.read_bytes())
    reads = []
    original = fs.cat_file

    def counting(path, start=None, end=None, **kw):
        reads.append(end - start)
        return original(path, start=start, end=end, **kw)

    fs.cat_file = counting
    try:
        s = Store("memory://lepton-test/digits.lds")
        assert np.array_equal(s.read_block("train", "images", 5), digits.x_train[500:600])
        assert sum(reads) < digits_store.stat().st_size / 3  # ranges, not the whole file
        assert verify_store("memory://lepton-test/digits.lds", reference=digits).ok
    finally:
        fs.cat_file = original
        fs.rm("/lepton-test", recursive=True)


# ------------------------------------------------------------------------------------------------------------- CLI


def test_cli_pack_inspect_verify_unpack(tmp_path, digits):
    from typer.testing import CliRunner

    from lepton.cli import commands  # noqa: F401
    from lepton.cli.app import app

    run = CliRunner().invoke
    out = tmp_path / "d.lds"
    r = run(app, ["data", "pack", "digits", "-o", str(out), "--codec", "deflate", "--format", "json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["bytes"] == out.stat().st_size
    r = run(app, ["data", "inspect", str(out), "--no-xz", "--format", "json"])
    assert json.loads(r.output)["rows"][0]["codec"] == "deflate"
    assert run(app, ["data", "verify", str(out)]).exit_code == 0
    assert run(app, ["data", "unpack", str(out), "-o", str(tmp_path / "d.npz")]).exit_code == 0
    with np.load(tmp_path / "d.npz", allow_pickle=False) as z:
        assert np.array_equal(z["x_train"], digits.x_train) and np.array_equal(z["y_test"], digits.y_test)
    with open_store(out) as store:
        first = store.split("train").blocks[0]["images"][0]  # after the labels' frequency table
    raw = bytearray(out.read_bytes())
    raw[first + 5] ^= 0xFF
    out.write_bytes(bytes(raw))
    r = run(app, ["data", "verify", str(out)])
    assert isinstance(r.exception, FormatError) and "block 0 of split 'train'" in str(r.exception)
