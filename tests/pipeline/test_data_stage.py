"""The data stage's pieces: codec comparison on evenly spaced blocks, lepton-cm fitted once on a sample of
pixels, and auto measuring that fitted model instead of refitting one to the first block."""

import numpy as np
import pytest

from lepton.data.codecs import _cm_kernel as K
from lepton.data.codecs import choose_codec, cm_model, fit_codec, get_codec
from lepton.pipeline.config import PackConfig
from lepton.pipeline.stages.data import image_codec, sample_blocks, with_fit_pixels


def test_sample_blocks_takes_whole_blocks_evenly_spaced():
    x = np.arange(10_500)
    got, n = sample_blocks(x, 1000, 3000)
    assert n == 3 and np.array_equal(got, np.concatenate([x[0:1000], x[5000:6000], x[10_000:]]))
    got, n = sample_blocks(x, 1000, None)
    assert n == 11 and np.array_equal(got, x)
    got, n = sample_blocks(x, 1000, 1)
    assert n == 1 and np.array_equal(got, x[:1000])


def test_fit_pixels_applies_only_to_an_unfitted_learned_codec():
    cm = get_codec("lepton-cm")
    assert with_fit_pixels(cm, 123).fit_pixels == 123
    assert with_fit_pixels(cm, None) is cm
    zstd = get_codec("zstd")
    assert with_fit_pixels(zstd, 123) is zstd
    assert PackConfig().fit_pixels < get_codec("lepton-cm").fit_pixels  # the stage samples fewer pixels


@pytest.mark.slow  # ~6 s: two lepton-cm fits and every auto candidate
def test_auto_measures_the_model_fitted_to_the_split(mnist):
    x = mnist.x_train[:600]
    codec, seconds = image_codec("auto", x, 200, 30_000)
    assert codec.name == "lepton-cm" and codec.model and set(seconds) == {"fit", "choose"}
    again = fit_codec(get_codec("lepton-cm", fit_pixels=30_000), x)
    assert codec.model == again.model  # fitted to the whole split on 30,000 pixels, not to the first block
    named, _ = image_codec("zstd", x, 200, 30_000)
    assert named == get_codec("zstd")


def test_choose_codec_uses_a_fitted_codec_as_it_is(mnist):
    x = mnist.x_train[:300]
    fitted = fit_codec(get_codec("lepton-cm", leaves=64, fit_pixels=20_000), mnist.x_train[:600])
    assert choose_codec(x, candidates=["lepton-cm", "zstd"], min_decode_mb_s=0.0, fitted=[fitted]) is fitted


def test_threaded_leaf_counts_equal_one_pass(mnist):
    images = np.ascontiguousarray(mnist.x_train[:500])
    model = cm_model.fit(images, leaves=64, min_leaf=50, max_fit_pixels=30_000)
    shape = cm_model._shape_only(model.tree)
    one = K.leaf_counts(images, *shape.nodes, shape.leaves)
    for parts in (1, 2, 7):
        assert np.array_equal(cm_model._count(images, shape, cm_model._chunks(len(images), parts)), one)
