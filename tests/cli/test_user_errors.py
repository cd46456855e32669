"""Each bad value the outside sweep found ends as one line and exit 2: in-process (fast) and via the console script."""

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from lepton.models.registry import ModelSpec, build_model
from tests.cli.invoke import invoke


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A digits checkpoint, its .lep and .onnx, a folder, a FIFO and a circuit file."""
    from lepton.compress.container import save_lep
    from lepton.edge.export import export_onnx
    from lepton.train.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("files")
    torch.manual_seed(0)
    model = build_model("lenet-300-100", (1, 8, 8), 10)
    spec = ModelSpec("lenet-300-100", (1, 8, 8), 10)
    meta = {"dataset": {"name": "digits"}}
    save_checkpoint(root / "model", model, spec, extra=meta)
    save_lep(root / "model.lep", spec, model.state_dict(), metadata=meta)
    export_onnx(model, root / "model.onnx", input_shape=(1, 8, 8))
    (root / "folder").mkdir()
    (root / "folder" / "x").write_text("x")
    os.mkfifo(root / "fifo")
    return root


def _one_line_exit_2(o):
    assert o.kind == "user" and o.code == 2, o
    assert len(o.message.splitlines()) == 1 and "Traceback" not in o.message, o.message
    return o.message


# Each root cause of the sweep's 86 tracebacks, with what the one line must say.
CASES = [
    (["data", "reduce", "digits", "--bits", "0"], "--bits 0"),
    (["edge", "bench", "{root}/model.onnx", "--threads", "0", "--data", "digits"], "--threads 0"),
    (["quantum", "train", "--qubits", "0", "--data", "digits"], "--qubits 0"),
    (["train", "--data", "digits", "--normalize", "yes", "-o", "{root}/t"], "data.normalize = 'yes'"),
    (["data", "verify", "{root}/folder"], "is a folder"),
    (["data", "inspect", "{root}/folder"], "is a folder"),
    (["data", "unpack", "{root}/folder"], "is a folder"),
    (["edge", "export", "{root}/model.lep", "-o", "{root}/folder"], "--out {root}/folder: is a folder"),
    (["edge", "split", "{root}/model.lep", "--no-run", "--plot", "{root}/folder"], "--plot"),
    (["quantum", "export", "{root}/folder"], "is a folder"),
    (["edge", "bench", "{root}/model.onnx", "--data", "digits", "--batch", "1000000000"], "--batch 1000000000"),
    (["edge", "bench", "{root}/model.onnx", "--data", "digits", "--iterations", "1000000000"], "--iterations"),
    (["edge", "export", "{root}/model.lep", "-o", "{root}/m.onnx", "--data", "{root}/fake.npz"], "expects [1, 8, 8]"),
    (["run", "--quick", "-o", "{root}/model.lep"], "a file of that name exists"),
    (["eval", "{root}/fifo"], "not a regular file"),
    (["compress", "inspect", "{root}/fifo"], "not a regular file"),
    (["quantum", "draw", "{root}/fifo"], "not a regular file"),
    (["push", "{root}/fifo", "{root}/registry/m"], "not a regular file"),
    (["run", "{root}/fifo"], "not a regular file"),
    (["quantum", "draw", "--qubits", "1000000000"], "[1, 1024]"),
    (["quantum", "draw", "--layers", "1000000000"], "fewer qubits or layers"),
]


@pytest.fixture(scope="module")
def fake_mnist(files):
    rng = np.random.default_rng(0)
    np.savez(
        files / "fake.npz",
        x_train=rng.integers(0, 255, (20, 28, 28), dtype=np.uint8),
        y_train=np.arange(20, dtype=np.uint8) % 10,
        x_test=rng.integers(0, 255, (10, 28, 28), dtype=np.uint8),
        y_test=np.arange(10, dtype=np.uint8),
    )


@pytest.mark.parametrize("args, expected", CASES, ids=lambda a: " ".join(a[:3]) if isinstance(a, list) else "")
def test_bad_value_is_one_line_exit_2(files, fake_mnist, args, expected):
    t0 = time.perf_counter()
    message = _one_line_exit_2(invoke([a.format(root=files) for a in args], timeout=60))
    assert expected.format(root=files) in message
    assert time.perf_counter() - t0 < 30  # sizes are checked before anything is built or allocated


@pytest.mark.parametrize(
    "args",
    [
        ["serve", ""],
        ["eval", ""],
        ["compress", ""],
        ["edge", "export", ""],
        ["serve", "{root}/model.onnx", "--max-body-mb", "nan"],
        ["edge", "split", "{root}/model.lep", "--edge-slowdown", "inf"],
    ],
)
def test_empty_paths_and_non_finite_numbers_are_usage_errors(files, args):
    o = invoke([a.format(root=files) for a in args], timeout=60)
    assert o.kind == "usage" and o.code == 2, o
    assert "empty path" in o.message or "not a finite number" in o.message


def test_multi_line_messages_are_joined():
    from lepton.cli.app import user_error
    from lepton.errors import FormatError

    code, line = user_error(FormatError("weights do not fit:\n  Missing key(s): a\n  Unexpected key(s): b"))
    assert code == 2 and line == "error: weights do not fit:; Missing key(s): a; Unexpected key(s): b"


@pytest.mark.slow  # a subprocess of the real console script
def test_console_script_prints_one_line(files, tmp_path):
    """The same mapping through ``python -m lepton`` (main()): a pydantic error and a folder given as a file."""
    for args, expected in (
        (["data", "reduce", "digits", "--bits", "0"], "--bits 0"),
        (["quantum", "export", str(files / "folder")], "is a folder"),
    ):
        r = subprocess.run(
            [sys.executable, "-m", "lepton", *args],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
        )
        assert r.returncode == 2 and expected in r.stderr, r.stderr
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_verify_lists_every_bad_block(tmp_path):
    """Table-mode `data verify` prints every bad block, not only the first."""
    from lepton.data.store import Store

    out = tmp_path / "d.lds"
    assert invoke(["data", "pack", "digits", "-o", str(out), "--codec", "deflate", "--block-samples", "200"]).code == 0
    blocks = Store(out).splits["train"].blocks
    bad = [0, 2, len(blocks) - 1]
    raw = bytearray(out.read_bytes())
    for i in bad:
        offset, length, _ = blocks[i]["images"]
        raw[offset + length // 2] ^= 0xFF
    out.write_bytes(bytes(raw))
    o = invoke(["data", "verify", str(out)])
    assert o.code == 2 and f"{len(bad)} bad block(s)" in o.message and len(o.message.splitlines()) == 1
    for i in bad:
        assert f"block {i} of split 'train', field 'images'" in o.stdout, o.stdout
    assert sum(line.startswith("bad: ") for line in o.stdout.splitlines()) == len(bad)
