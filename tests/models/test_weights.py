"""Plain state dicts from the real writers (``torch.save``, ``safetensors.torch.save_file``) read back equal, and
forged files are refused with a clear error without running anything they name."""

import json
import pickle
import struct
import zipfile
from collections import OrderedDict

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from lepton.errors import FormatError
from lepton.models.weights import read_safetensors, read_torch_zip, read_weights


def _state() -> dict[str, torch.Tensor]:
    """Every supported dtype, a transposed (non-contiguous) view, two views of one storage and a Parameter."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 3))
    state = model.state_dict()  # an OrderedDict with the _metadata attribute torch.save records
    base = torch.randn(6, 5)
    state["t_float16"] = torch.randn(3, 4).half().t()
    state["t_bfloat16"] = torch.randn(7).bfloat16()
    state["t_float64"] = torch.randn(2, 2, dtype=torch.float64)
    state["t_int64"] = torch.arange(-5, 5)
    state["t_int32"] = torch.arange(6, dtype=torch.int32).reshape(2, 3)
    state["t_int8"] = torch.tensor([-128, 0, 127], dtype=torch.int8)
    state["t_uint8"] = torch.tensor([0, 255], dtype=torch.uint8)
    state["t_bool"] = torch.tensor([True, False, True])
    state["shared_a"] = base[1:4, ::2]
    state["shared_b"] = base[:, 3]
    state["scalar"] = torch.tensor(2.5)
    state["empty"] = torch.empty(0, 3)
    state["param"] = nn.Parameter(torch.randn(2, 3))
    return state


def _assert_equal(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert list(got) == list(want)
    for k, v in want.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape, k
        assert torch.equal(got[k], v.detach()), k


def test_torch_save_state_dicts_read_back_equal(tmp_path):
    want = _state()
    assert hasattr(want, "_metadata")
    torch.save(want, tmp_path / "w.pt")
    got = read_weights(tmp_path / "w.pt")
    _assert_equal(got, want)
    assert got["shared_a"].stride() == want["shared_a"].stride()  # views keep their layout
    assert got["shared_a"].untyped_storage().data_ptr() == got["shared_b"].untyped_storage().data_ptr()


def test_a_real_models_state_dict_loads_into_the_registry_architecture(tmp_path):
    from lepton.models import ModelSpec

    spec = ModelSpec("resnet20", (1, 8, 8), 10)
    model = spec.build().eval()
    torch.save(model.state_dict(), tmp_path / "r.pth")
    loaded = spec.load(read_weights(tmp_path / "r.pth")).eval()
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_safetensors_files_read_back_equal(tmp_path):
    want = {k: v.detach().contiguous() for k, v in _state().items() if k not in ("shared_a", "shared_b")}
    save_file(want, tmp_path / "w.safetensors", metadata={"format": "pt"})
    got = read_safetensors(tmp_path / "w.safetensors")
    assert set(got) == set(want)
    _assert_equal({k: got[k] for k in want}, want)


def test_a_big_endian_archive_is_byteswapped(tmp_path):
    want = {"w": torch.tensor([1.5, -2.0, 3.25]), "i": torch.tensor([1, -2, 1 << 40])}
    torch.save(want, tmp_path / "w.pt")
    src, dst = zipfile.ZipFile(tmp_path / "w.pt"), zipfile.ZipFile(tmp_path / "be.pt", "w")
    for info in src.infolist():
        data = src.read(info)
        if info.filename.endswith("/byteorder"):
            data = b"big"
        elif "/data/" in info.filename:
            width = 8 if data == want["i"].numpy().tobytes() else 4
            data = b"".join(data[i : i + width][::-1] for i in range(0, len(data), width))
        dst.writestr(info, data)
    dst.close()
    _assert_equal(read_torch_zip(tmp_path / "be.pt"), want)


# ---- forged .pt files: refused, nothing runs --------------------------------------------------------------------


def _archive(path, pkl: bytes, records: dict[str, bytes] | None = None) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/byteorder", b"little")
        for key, data in (records or {}).items():
            z.writestr(f"archive/data/{key}", data)


class _System:
    """Pickles as ``os.system(cmd)``: what an attacker's file runs under a plain unpickler."""

    def __init__(self, cmd: str) -> None:
        self.cmd = cmd

    def __reduce__(self):
        import os

        return os.system, (self.cmd,)


def test_a_pickle_that_would_run_a_command_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    _archive(tmp_path / "evil.pt", pickle.dumps({"w": _System(f"touch {marker}")}, protocol=2))
    with pytest.raises(FormatError, match=r"global 'posix.system' \(GLOBAL\) is not allowed.*state_dict"):
        read_weights(tmp_path / "evil.pt")
    assert not marker.exists()
    _archive(tmp_path / "evil4.pt", pickle.dumps({"w": _System(f"touch {marker}")}, protocol=4))
    with pytest.raises(FormatError, match=r"STACK_GLOBAL"):
        read_weights(tmp_path / "evil4.pt")
    assert not marker.exists()


def _reduce_pickle(fn_global: bytes, args: bytes) -> bytes:
    """protocol-2 pickle of {'w': fn(*args)} with ``fn_global`` b'module\\nname'."""
    return b"\x80\x02}X\x01\x00\x00\x00wc" + fn_global + b"\n" + args + b"Rs."


def test_reduce_on_a_storage_class_or_disallowed_opcodes_are_refused(tmp_path):
    _archive(tmp_path / "a.pt", _reduce_pickle(b"torch\nFloatStorage", b")"))
    with pytest.raises(FormatError, match="REDUCE calls 'torch FloatStorage'"):
        read_weights(tmp_path / "a.pt")
    _archive(tmp_path / "b.pt", b"\x80\x02}X\x01\x00\x00\x00w]s.")  # EMPTY_LIST
    with pytest.raises(FormatError, match="opcode EMPTY_LIST is not allowed"):
        read_weights(tmp_path / "b.pt")
    _archive(tmp_path / "c.pt", b"\x80\x02}X\x01\x00\x00\x00wK\x01s.")  # a value that is not a tensor
    with pytest.raises(FormatError, match=r"'w' is a int, not a tensor.*model.state_dict\(\)"):
        read_weights(tmp_path / "c.pt")


def _tensor_pickle(numel: int, offset: int, size: tuple[int, ...], stride: tuple[int, ...]) -> bytes:
    """A hand-written protocol-2 pickle of {'w': _rebuild_tensor_v2(storage('0', numel), offset, size, stride)}."""

    def tup(xs):
        return b"(" + b"".join(b"J" + struct.pack("<i", x) for x in xs) + b"t"

    pid = b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpu"
    pid += b"J" + struct.pack("<i", numel) + b"tQ"
    args = b"(" + pid + b"J" + struct.pack("<i", offset) + tup(size) + tup(stride) + b"\x89}t"
    return b"\x80\x02}X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n" + args + b"Rs."


def test_views_past_their_storage_and_huge_storages_are_refused(tmp_path):
    _archive(tmp_path / "ok.pt", _tensor_pickle(6, 0, (2, 3), (3, 1)), {"0": struct.pack("<6f", *range(6))})
    assert torch.equal(read_weights(tmp_path / "ok.pt")["w"], torch.arange(6.0).reshape(2, 3))
    _archive(tmp_path / "past.pt", _tensor_pickle(6, 1, (2, 3), (3, 1)), {"0": struct.pack("<6f", *range(6))})
    with pytest.raises(FormatError, match="reaches element 6 of storage '0', which has 6"):
        read_weights(tmp_path / "past.pt")
    _archive(tmp_path / "huge.pt", _tensor_pickle(2**31 - 1, 0, (1,), (1,)), {"0": b"\0" * 4})
    with pytest.raises(FormatError, match="storages of over"):
        read_weights(tmp_path / "huge.pt")
    _archive(tmp_path / "short.pt", _tensor_pickle(6, 0, (2, 3), (3, 1)), {"0": b"\0" * 20})
    with pytest.raises(FormatError, match="declares 6 elements .24 bytes. but its record holds 20"):
        read_weights(tmp_path / "short.pt")


def test_truncated_legacy_and_foreign_files_are_refused(tmp_path):
    torch.save({"w": torch.ones(3)}, tmp_path / "w.pt")
    data = (tmp_path / "w.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError, match="not a readable zip"):
        read_weights(tmp_path / "cut.pt")
    (tmp_path / "legacy.pt").write_bytes(pickle.dumps(OrderedDict(w=1), protocol=2))
    with pytest.raises(FormatError, match="legacy .*non-zip"):
        read_weights(tmp_path / "legacy.pt")
    (tmp_path / "x.bin").write_bytes(b"hello")
    with pytest.raises(FormatError, match="neither a .safetensors file nor a zip"):
        read_weights(tmp_path / "x.bin")


# ---- forged .safetensors files ---------------------------------------------------------------------------------------


def _safetensors(path, header: dict, buffer: bytes, n: int | None = None) -> None:
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text) if n is None else n) + text + buffer)


@pytest.mark.parametrize(
    "header, buffer, n, message",
    [
        ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8, 1 << 40, "header length"),
        ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 16]}}, b"\0" * 8, None, r"bytes \[0, 16\)"),
        ({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}, b"\0" * 8, None, "do not hold"),
        (
            {
                "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
            },
            b"\0" * 12,
            None,
            "overlaps",
        ),
        ({"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8, None, "leaves a hole"),
        ({"w": {"dtype": "F8_E4M3", "shape": [8], "data_offsets": [0, 8]}}, b"\0" * 8, None, "dtype 'F8_E4M3'"),
        ({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]}}, b"", None, "non-negative integers"),
        ({"w": {"dtype": "F32", "shape": [1 << 30, 1 << 30], "data_offsets": [0, 0]}}, b"", None, "elements"),
    ],
)
def test_forged_safetensors_headers_are_refused(tmp_path, header, buffer, n, message):
    _safetensors(tmp_path / "w.safetensors", header, buffer, n)
    with pytest.raises(FormatError, match=message):
        read_weights(tmp_path / "w.safetensors")


def test_a_safetensors_header_that_is_not_strict_json_is_refused(tmp_path):
    text = b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "w": 1}'
    (tmp_path / "w.safetensors").write_bytes(struct.pack("<Q", len(text)) + text + b"\0" * 4)
    with pytest.raises(FormatError, match="duplicate JSON key"):
        read_weights(tmp_path / "w.safetensors")
