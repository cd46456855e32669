"""resolve_device for every spelling, its errors on a machine without the device, and the CPU copies files are
written from (checked on fake CUDA tensors: FakeTensorMode gives tensors on ``cuda`` without a GPU)."""

import pytest
import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from lepton.errors import ConfigError
from lepton.utils.device import cpu_tensors, module_device, mps_available, resolve_device

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")


def test_cpu_is_the_cpu():
    assert resolve_device("cpu") == torch.device("cpu")


def test_auto_prefers_cuda_then_mps_then_cpu():
    expected = "cuda" if CUDA else "mps" if mps_available() else "cpu"
    assert resolve_device("auto").type == expected


@pytest.mark.parametrize("spec", ["gpu", "CPU", "cuda:", "cuda:-1", "cuda:01", "cuda:x", "", "cpu ", "tpu", "mps:0"])
def test_unknown_spellings_are_refused(spec):
    with pytest.raises(ConfigError, match="must be auto, cpu, cuda, cuda:N or mps") as e:
        resolve_device(spec)
    assert "--device cpu or auto" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.skipif(CUDA, reason="checks the error on a machine without CUDA")
@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_without_cuda_names_the_fix(spec):
    with pytest.raises(ConfigError) as e:
        resolve_device(spec)
    assert str(e.value) == (
        f"--device {spec}: CUDA is not available on this machine (torch sees no GPU); use --device cpu or auto."
    )


@pytest.mark.skipif(mps_available(), reason="checks the error on a machine without MPS")
def test_mps_without_mps_names_the_fix():
    with pytest.raises(ConfigError, match=r"MPS backend is not available.*use --device cpu or auto"):
        resolve_device("mps")


@needs_cuda
def test_cuda_indices():
    count = torch.cuda.device_count()
    assert resolve_device("cuda") == torch.device("cuda")  # no index: DDP gives each worker cuda:LOCAL_RANK
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device(f"cuda:{count - 1}") == torch.device("cuda", count - 1)
    with pytest.raises(ConfigError, match=f"has {count} CUDA device"):
        resolve_device(f"cuda:{count}")


def test_module_device():
    assert module_device(nn.Linear(2, 2)) == torch.device("cpu")
    assert module_device(nn.ReLU()) == torch.device("cpu")  # no tensors at all
    assert module_device(nn.Linear(2, 2, device="meta")) == torch.device("meta")


def test_cpu_tensors_shares_the_memory_of_cpu_tensors():
    t = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.ones(3).requires_grad_()}
    out = cpu_tensors(t)
    assert out["w"].data_ptr() == t["w"].data_ptr() and torch.equal(out["b"], t["b"]) and not out["b"].requires_grad
    transposed = cpu_tensors({"t": t["w"].t()})["t"]
    assert transposed.is_contiguous() and torch.equal(transposed, t["w"].t())


def test_cpu_tensors_moves_cuda_tensors_to_the_cpu():
    with FakeTensorMode():  # tensors on cuda without a GPU: device, shape and dtype, no data
        state = {"w": torch.zeros(3, 4, device="cuda"), "n": torch.zeros((), dtype=torch.long, device="cuda")}
        out = cpu_tensors(state)
    assert set(out) == set(state)
    assert {v.device for v in out.values()} == {torch.device("cpu")}
    assert all(out[k].shape == state[k].shape and out[k].dtype == state[k].dtype for k in state)
