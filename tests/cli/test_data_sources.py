"""``lepton train --data`` on the new sources, end to end in-process: an image folder, option errors."""

import json

import numpy as np
import pytest
from PIL import Image

from lepton.train.checkpoint import load_checkpoint
from tests.cli.invoke import invoke


def _folder(root, size=(16, 16), per_class=5):
    rng = np.random.default_rng(3)
    for c, cls in enumerate(("circle", "square")):
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 60, size, dtype=np.uint8) + np.uint8(150 * c)
            Image.fromarray(pixels).save(root / cls / f"{i}.{'png' if i % 2 else 'jpg'}")
    return root


@pytest.mark.slow  # over ~1 s: make test runs it, make test-fast skips it
def test_train_on_an_image_folder_writes_a_checkpoint(tmp_path):
    data, out = _folder(tmp_path / "shapes"), tmp_path / "out"
    r = invoke(
        [
            "train",
            "--data",
            str(data),
            "--model",
            "lenet5",
            "--epochs",
            "1",
            "-o",
            str(out),
            "--quiet",
            "--format",
            "json",
        ]
    )
    assert r.kind == "ok", r.message
    result = json.loads(r.stdout)
    assert 0.0 <= result["test_accuracy"] <= 1.0
    ckpt = load_checkpoint(out / "model.safetensors")
    assert ckpt.spec.input_shape == (1, 16, 16) and ckpt.spec.num_classes == 2
    summary = ckpt.meta["dataset"]
    assert summary["train"] == 8 and summary["test"] == 2 and "held out 20%" in summary["notes"]


def test_image_size_and_channels_reach_the_loader(tmp_path):
    data, out = _folder(tmp_path / "shapes", size=(13, 21)), tmp_path / "out"
    args = ["train", "--data", f"folder:{data}", "--image-size", "16", "--channels", "rgb", "--epochs", "1"]
    r = invoke([*args, "-o", str(out), "--quiet", "--format", "json"])
    assert r.kind == "ok", r.message
    assert load_checkpoint(out / "model.safetensors").spec.input_shape == (3, 16, 16)
    # eval reads the folder the way training did (the recorded data options), not at its own 13x21 grey default
    r = invoke(["eval", str(out / "model.safetensors"), "--data", f"folder:{data}", "--format", "json"])
    assert r.kind == "ok", r.message
    assert json.loads(r.stdout)["dataset"] == "shapes"


def test_recorded_source_options_are_read_or_refused():
    from lepton.artifacts import trained_source_options
    from lepton.errors import FormatError

    meta = {"config": {"data": {"dataset": "x", "image_size": 24, "channels": "rgb", "train_subset": 5}}}
    opts = trained_source_options(meta, "m.lep")
    assert (opts.image_size, opts.channels, opts.layout) == (24, "rgb", "auto")
    assert trained_source_options({}, "m.lep") == trained_source_options({"config": 3}, "m.lep")
    with pytest.raises(FormatError, match=r"m\.lep: the metadata's config\.data does not validate"):
        trained_source_options({"config": {"data": {"channels": "cmyk"}}}, "m.lep")


def test_bad_options_and_non_square_arrays_are_one_clear_line(tmp_path):
    r = invoke(["train", "--data", "digits", "--layout", "hwc", "-o", str(tmp_path / "o")])
    assert r.kind == "user" and "layout" in r.message and "nhwc" in r.message
    np.savez(tmp_path / "wide.npz", x=np.zeros((10, 12, 20), np.uint8), y=np.arange(10) % 2)
    r = invoke(["train", "--data", str(tmp_path / "wide.npz"), "--epochs", "1", "-o", str(tmp_path / "w")])
    assert r.kind == "user" and "takes square images" in r.message and "12x20" in r.message


def test_non_square_arrays_train_and_evaluate_with_a_model_that_takes_any_size(tmp_path):
    rng = np.random.default_rng(4)
    npz, out = tmp_path / "wide.npz", tmp_path / "out"
    np.savez(npz, x=rng.integers(0, 256, (30, 12, 20, 3), dtype=np.uint8), y=np.arange(30) % 2)  # channels last
    model = "tests.fixtures.user_nets:make_any_size"
    r = invoke(
        ["train", "--data", str(npz), "--model", model, "--trust-code", "--epochs", "1", "-o", str(out), "--quiet"]
    )
    assert r.kind == "ok", r.message
    assert load_checkpoint(out / "model.safetensors").spec.input_shape == (3, 12, 20)
    r = invoke(["eval", str(out / "model.safetensors"), "--data", str(npz), "--format", "json"])  # from the graph
    assert r.kind == "ok", r.message
    assert 0.0 <= json.loads(r.stdout)["accuracy"] <= 1.0


def test_data_pack_reads_an_image_folder_with_the_same_options(tmp_path):
    from lepton.data import SourceOptions, load_dataset
    from lepton.data.store import load_packed

    data, out = _folder(tmp_path / "shapes", size=(13, 21)), tmp_path / "shapes.lds"
    r = invoke(["data", "pack", str(data), "--image-size", "16", "--channels", "rgb", "-o", str(out)])
    assert r.kind == "ok", r.message
    packed, direct = load_packed(out), load_dataset(str(data), SourceOptions(image_size=16, channels="rgb"))
    assert packed.input_shape == (3, 16, 16)
    np.testing.assert_array_equal(packed.x_train, direct.x_train)
    np.testing.assert_array_equal(packed.y_test, direct.y_test)
    r = invoke(["data", "pack", str(data), "--channels", "cmyk", "-o", str(tmp_path / "bad.lds")])
    assert r.kind == "user" and "--channels 'cmyk'" in r.message
