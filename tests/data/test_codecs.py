import lzma
import zlib

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lepton.data import load_fashion_mnist
from lepton.data.codecs import CODECS, DTYPES, Codec, choose_codec, fit_codec, get_codec
from lepton.errors import ConfigError, DataError, FormatError

GENERAL = ("deflate", "zstd", "lzma")
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit-exact equality (NaN payloads and -0.0 included), plus dtype and shape."""
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def roundtrip(codec: Codec, a: np.ndarray) -> np.ndarray:
    return codec.decode(codec.encode(a), a.dtype, a.shape)


arrays = st.sampled_from(DTYPES).flatmap(
    lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=9))
)
images = hnp.arrays(np.uint8, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=12))


@pytest.mark.parametrize("name", GENERAL)
@FAST
@given(a=arrays, shuffle=st.booleans())
def test_general_codecs_roundtrip_any_array(name, a, shuffle):
    assert same(roundtrip(get_codec(name, shuffle=shuffle), a), a)


@pytest.mark.parametrize("name", GENERAL)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_general_codecs_roundtrip_edge_cases_of_every_dtype(name, dtype):
    codec = get_codec(name)
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, 4096, dtype=np.uint8).view(np.uint8)[: 4096 // dtype.itemsize * dtype.itemsize]
    cases = [
        np.zeros((0, 5), dtype),
        np.ones(1, dtype),
        np.full((7, 3), 1, dtype),
        noise.view(dtype) if dtype != np.bool_ else noise.astype(bool),
    ]
    for a in cases:
        assert same(roundtrip(codec, a), a)
    # the stream is the little-endian bytes: decompressing without the shuffle gives them back
    a = np.arange(12).astype(dtype).reshape(3, 4)
    raw = get_codec(name, shuffle=False).encode(a)
    plain = {"deflate": zlib.decompress, "zstd": None, "lzma": lzma.decompress}[name]
    if plain is not None:
        assert plain(raw) == a.astype(dtype.newbyteorder("<")).tobytes()


@pytest.mark.slow  # over ~1 s: make test runs it, make test-fast skips it
@FAST
@given(a=images)
def test_cm_roundtrips_arbitrary_uint8_blocks(a):
    assert same(roundtrip(get_codec("lepton-cm"), a), a)


@pytest.mark.parametrize("shape", [(), (1,), (1, 1), (1, 1, 1), (2, 1, 9), (3, 9, 1), (1, 3, 2, 5), (0, 28, 28)])
def test_cm_roundtrips_tiny_and_odd_shapes(shape):
    rng = np.random.default_rng(1)
    for a in (rng.integers(0, 256, shape, dtype=np.uint8), np.full(shape, 255, np.uint8)):
        assert same(roundtrip(get_codec("lepton-cm"), a), a)


@pytest.mark.slow
def test_cm_roundtrips_real_images_and_beats_xz_on_mnist(mnist):
    cm, xz = get_codec("lepton-cm"), get_codec("lzma")
    x = mnist.x_train[:1000]
    blob = cm.encode(x)
    assert same(cm.decode(blob, x.dtype, x.shape), x)
    bpp = len(blob) * 8 / x.size
    xz_bpp = len(xz.encode(x)) * 8 / x.size
    # measured: ~1.16 bpp vs ~1.44 for xz -9e on the first 1,000 images (one stream, its own model embedded)
    assert bpp < 0.85 * xz_bpp and bpp < 1.25


def _reference_features(x: np.ndarray) -> np.ndarray:
    """The documented features of every pixel, computed independently (numpy, whole arrays)."""
    n, h, w = x.shape
    p = np.pad(x.astype(np.int64), ((0, 0), (2, 0), (3, 2)))

    def at(dr, dc):
        return p[:, 2 + dr : 2 + dr + h, 3 + dc : 3 + dc + w]

    W, N, NW, NE, WW, NN = at(0, -1), at(-1, 0), at(-1, -1), at(-1, 1), at(0, -2), at(-2, 0)
    NNE, NWW, NNW, NEE, WWW, NNEE = at(-2, 1), at(-1, -2), at(-2, -1), at(-1, 2), at(0, -3), at(-2, 2)
    r, c = np.indices((h, w))
    flat = x.reshape(n, -1).astype(np.int64)
    mode = np.zeros_like(flat)  # the image's most frequent value >= 240 (smallest on a tie; 0: none)
    for k in range(n):
        high = np.bincount(flat[k][flat[k] >= 240], minlength=256)
        mode[k] = high.argmax() if high.any() else 0
    med = np.where(
        NW >= np.maximum(W, N), np.minimum(W, N), np.where(NW <= np.minimum(W, N), np.maximum(W, N), W + N - NW)
    )
    cols = [
        W,
        N,
        NW,
        NE,
        WW,
        NN,
        NNE,
        NWW,
        NNW,
        NEE,
        WWW,
        NNEE,
        np.broadcast_to(r, x.shape),
        np.broadcast_to(c, x.shape),
        mode.reshape(x.shape),
        np.clip(N + W - NW, 0, 255),
        np.maximum(np.maximum(W, N), np.maximum(NW, NE)),
        N + NE - NNE,
        2 * W - WW,
        2 * N - NN,
        abs(W - NW) + abs(N - NW) + abs(N - NE),
        W + N + NW + NE,
        med,
    ]
    return np.stack(cols, -1).reshape(-1, len(cols))


def test_cm_features_match_an_independent_reference(mnist):
    from lepton.data.codecs import _cm_kernel as K

    x = mnist.x_train[:30]
    rows = np.empty((x.size, K.NFEAT), np.int16)
    K.feature_rows(np.ascontiguousarray(x), rows)
    assert np.array_equal(rows, _reference_features(x))
    odd = np.random.default_rng(3).integers(200, 256, (4, 5, 3), np.uint8)  # narrow planes, many modes
    rows = np.empty((odd.size, K.NFEAT), np.int16)
    K.feature_rows(odd, rows)
    assert np.array_equal(rows, _reference_features(odd))


def _tree_leaf(tree: np.ndarray, f: np.ndarray) -> int:
    node = 0
    while tree[node, 0] != 255:
        node = node + 1 if f[tree[node, 0]] <= tree[node, 1] else tree[node, 2]
    return int(tree[node, 1])


@pytest.mark.slow
def test_cm_codes_each_block_within_a_hair_of_its_models_entropy(mnist):
    """rANS against the ideal code length sum(-log2 p) of the stored model, leaves found by a plain
    preorder walk over independently computed features (not the kernels' node table)."""
    from lepton.data.codecs.cm import HEADER, CMCodec

    codec = CMCodec(leaves=256, fit_pixels=400_000).fit(mnist.x_train[:3000])
    x = mnist.x_train[3000:3200]
    blob = codec.encode(x)
    assert same(codec.decode(blob, x.dtype, x.shape), x)
    m = codec._model
    feats = _reference_features(x)
    modes = feats[:: 28 * 28, 14]  # each image's near-white level, sent first with the model's last row
    leaves = np.concatenate([np.full(len(x), m.leaves), [_tree_leaf(m.tree, f) for f in feats]])
    v = np.concatenate([modes, x.reshape(-1)]).astype(np.int64)
    p = m.freq[leaves, v] / 65536
    esc = m.freq[leaves, 256] / 65536
    ideal = np.where(p > 0, -np.log2(np.where(p > 0, p, 1)), 8 - np.log2(esc)).sum()
    payload = 8 * (len(blob) - HEADER - 4)
    assert ideal <= payload <= ideal * 1.0005 + 64  # 64 bits: the coder's final state


@pytest.mark.slow  # over ~1 s: make test runs it, make test-fast skips it
def test_cm_field_model_travels_in_params_and_guards_its_blocks(mnist):
    from lepton.data.codecs.cm import CMCodec

    x = mnist.x_train[:1000]
    fitted = fit_codec(CMCodec(leaves=128, fit_pixels=200_000), x)
    assert fitted.model and fit_codec(fitted, x) is fitted  # a fitted codec is kept as it is
    blob = fitted.encode(x[:300])
    again = get_codec("lepton-cm", **fitted.params, model=fitted.model)  # as a store rebuilds it
    assert same(again.decode(blob, x.dtype, (300, 28, 28)), x[:300])
    assert len(blob) < len(get_codec("lepton-cm").encode(x[:300]))  # no model in each block
    other = CMCodec(leaves=64, fit_pixels=200_000).fit(x[500:])
    with pytest.raises(FormatError, match="model CRC"):
        other.decode(blob, x.dtype, (300, 28, 28))
    with pytest.raises(FormatError, match="shared model"):
        get_codec("lepton-cm").decode(blob, x.dtype, (300, 28, 28))
    model = fitted.model
    flipped = bytearray(model)
    flipped[len(model) // 2] ^= 0x04
    for forged in (model[:-8], bytes(flipped), b"not a model", model + b"\0"):
        with pytest.raises(FormatError):
            CMCodec(model=forged)


def _model_blob(tree: bytes, leaves: int, q: np.ndarray | None = None, nfeat: int = 23) -> bytes:
    """A hand-made model: values 0-9 stored in every leaf, the rest through the escape."""
    from lepton.data.codecs.cm_model import HEAD, MAGIC

    if q is None:
        q = np.zeros((leaves + 1, 257), np.uint8)
        q[:, :10], q[:, 256] = 250, 255
    table = np.packbits(q > 0, axis=1).tobytes() + q[q > 0].tobytes()  # bitmap, then the stored entries
    body = HEAD.pack(MAGIC, 1, nfeat, leaves, len(tree)) + tree + table
    return lzma.compress(body)


@pytest.mark.parametrize(
    "tree, leaves, message",
    [
        (b"\xff", 1, None),  # one leaf: valid
        (b"\x00\x05\x00\xff\xff", 2, None),  # W <= 5 ? leaf : leaf
        (b"\x63\x05\x00\xff\xff", 2, "feature id 99"),  # an unknown feature
        (b"\x00\x05\x00\xff", 2, "ends inside"),  # a missing right child
        (b"\x00\x05\x00\xff\xff\xff", 2, "stray"),  # bytes after the tree
        (b"\xff", 2, "1 leaves for 2"),  # fewer leaves than distributions
        (b"\x00\x05\x00" * 17 + b"\xff" * 18, 18, "deeper"),  # deeper than the kernels allow
    ],
)
def test_forged_cm_models_are_refused(tree, leaves, message):
    from lepton.data.codecs.cm import CMCodec

    blob = _model_blob(tree, leaves)
    if message is None:
        codec = CMCodec(model=blob)
        x = np.arange(30, dtype=np.uint8).reshape(1, 5, 6)
        assert same(codec.decode(codec.encode(x), x.dtype, x.shape), x)  # unseen values escape
    else:
        with pytest.raises(FormatError, match=message):
            CMCodec(model=blob)
    no_escape = np.zeros((leaves + 1, 257), np.uint8)
    with pytest.raises(FormatError, match="escape"):
        CMCodec(model=_model_blob(tree, leaves, no_escape))
    with pytest.raises(FormatError, match="features"):
        CMCodec(model=_model_blob(tree, leaves, nfeat=7))


@pytest.mark.slow  # over ~1 s: make test runs it, make test-fast skips it
def test_cm_roundtrips_fashion_mnist():
    try:
        x = load_fashion_mnist().x_train[:300]
    except DataError as exc:
        pytest.skip(str(exc))
    cm = get_codec("lepton-cm")
    blob = cm.encode(x)
    assert same(cm.decode(blob, x.dtype, x.shape), x)
    assert len(blob) < len(get_codec("lzma").encode(x))


def _blocks():
    rng = np.random.default_rng(2)
    digits = np.clip(rng.normal(0, 90, (4, 10, 10)), 0, 255).astype(np.uint8)
    arrays = {"lepton-cm": digits, "freq": (digits // 40).astype(np.int16)}  # freq: small integers
    return {name: (get_codec(name), arrays.get(name, digits.astype(np.float32))) for name in CODECS}


@pytest.mark.parametrize("name", CODECS)
def test_corrupt_or_forged_blocks_are_refused(name):
    codec, a = _blocks()[name]
    blob = codec.encode(a)
    bad = [b"", blob[:3], blob[:-1], blob + b"\x00", blob[: len(blob) // 2]]
    for i in range(0, len(blob), max(1, len(blob) // 23)):  # bit flips across the block
        flipped = bytearray(blob)
        flipped[i] ^= 0x10
        bad.append(bytes(flipped))
    for data in bad:
        with pytest.raises(FormatError):
            codec.decode(data, a.dtype, a.shape)
    for shape in [(10**12, 10, 10), (a.shape[0] + 1, *a.shape[1:]), (a.shape[0] - 1, *a.shape[1:])]:
        with pytest.raises(FormatError):  # a forged shape never allocates it
            codec.decode(blob, a.dtype, shape)
    with pytest.raises(FormatError):
        codec.decode(blob, np.dtype("complex64"), a.shape)
    with pytest.raises(FormatError):
        codec.decode(blob, a.dtype, (-1, 4))


def test_bad_codec_names_params_and_dtypes_are_user_errors():
    with pytest.raises(ConfigError, match="unknown codec"):
        get_codec("brotli")
    with pytest.raises(ConfigError, match="level"):
        get_codec("zstd", level=99)
    with pytest.raises(ConfigError, match="bad parameters"):
        get_codec("lzma", window=3)
    with pytest.raises(DataError, match="not supported"):
        get_codec("zstd").encode(np.zeros(3, np.complex64))
    with pytest.raises(DataError, match="uint8"):
        get_codec("lepton-cm").encode(np.zeros(3, np.int16))


def test_codecs_rebuild_from_name_and_params():
    for name in CODECS:
        codec = get_codec(name)
        assert isinstance(codec, Codec)
        again = get_codec(codec.name, **codec.params)
        assert again == codec


@pytest.mark.slow  # over ~1 s: make test runs it, make test-fast skips it
def test_auto_picks_the_smallest_codec_meeting_the_speed_floor(mnist):
    x = mnist.x_train[:100]
    sizes = {n: len(fit_codec(get_codec(n), x).encode(x)) for n in CODECS}  # a learned model is per field
    assert choose_codec(x, min_decode_mb_s=0.0).name == min(sizes, key=sizes.get) == "lepton-cm"
    labels = mnist.y_train[:1000].astype(np.int64)
    assert choose_codec(labels, min_decode_mb_s=0.0).name == "freq"  # a static table beats every general codec
    assert choose_codec(x, candidates=["zstd"], min_decode_mb_s=1e15).name == "zstd"  # none fast enough
    with pytest.raises(DataError):
        choose_codec(np.zeros(3, np.float32), candidates=["lepton-cm"])


def test_measure_codec_counts_blocks_and_checks_the_round_trip():
    from lepton.data.codecs import measure_codec
    from lepton.errors import FormatError

    x = np.random.default_rng(0).integers(0, 4, (10, 6, 6), dtype=np.uint8)
    codec = get_codec("zstd")
    m = measure_codec(codec, x, block_samples=4)
    assert m.bytes == sum(len(codec.encode(x[s : s + 4])) for s in (0, 4, 8)) and m.model_bytes == 0
    assert m.bits_per_pixel == 8 * m.bytes / x.size and m.encode_mb_s > 0 and m.decode_mb_s > 0
    assert measure_codec(codec, x).bytes == len(codec.encode(x))

    class Lossy:
        name, params = "lossy", {}

        def encode(self, a):
            return codec.encode(a)

        def decode(self, data, dtype, shape):
            return codec.decode(data, dtype, shape) + 1

    with pytest.raises(FormatError, match="codec lossy: decoded block at sample 0 differs"):
        measure_codec(Lossy(), x, block_samples=4)
