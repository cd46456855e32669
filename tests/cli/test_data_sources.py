"""``lepton train --data`` on the new sources, end to end in-process: an image folder, option errors."""

import json

import numpy as np
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


def test_bad_options_and_non_square_arrays_are_one_clear_line(tmp_path):
    r = invoke(["train", "--data", "digits", "--layout", "hwc", "-o", str(tmp_path / "o")])
    assert r.kind == "user" and "layout" in r.message and "nhwc" in r.message
    np.savez(tmp_path / "wide.npz", x=np.zeros((10, 12, 20), np.uint8), y=np.arange(10) % 2)
    r = invoke(["train", "--data", str(tmp_path / "wide.npz"), "--epochs", "1", "-o", str(tmp_path / "w")])
    assert r.kind == "user" and "takes square images" in r.message and "12x20" in r.message
