"""Small valid seed files of every format, written by Lepton's own writers, the same bytes on every run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

SPEC_FC = ("lenet-300-100", (1, 8, 8), 10, {"fc1": 48, "fc2": 24})
SPEC_CONV = ("lenet5-classic", (1, 12, 12), 4, {"fc1": 40, "fc2": 20})


def _shared(t: torch.Tensor, levels: int, keep: float) -> torch.Tensor:
    """``t`` pruned to the ``keep`` fraction of largest magnitudes and its survivors snapped to ``levels``
    values (Deep Compression's pruning + weight sharing, without the retraining)."""
    flat = t.flatten()
    cut = flat.abs().kthvalue(max(1, int(flat.numel() * (1 - keep)))).values if keep < 1 else -1.0
    grid = torch.linspace(float(flat.min()), float(flat.max()), levels)
    snapped = grid[(flat[:, None] - grid[None, :]).abs().argmin(1)]
    return torch.where(flat.abs() > cut, snapped, torch.zeros(())).reshape(t.shape)


def _model(spec_args: tuple) -> tuple:
    from lepton.models import ModelSpec

    spec = ModelSpec(*spec_args)
    return spec, spec.build()


def write_lep(out: Path) -> list[Path]:
    """Five `.lep` files: shared + pruned (sparse/dense, ANS), mixed encodings (Huffman), a tensor-train model,
    a structurally pruned one whose positions are a context-coded mask (format version 3), and a compact one
    (format version 4)."""
    from lepton.compress.container import save_lep
    from lepton.compress.share import round_to_half
    from lepton.models import ModelSpec
    from lepton.quantum.tensor_train import convert_linears, tt_layout

    torch.manual_seed(0)
    spec, model = _model(SPEC_FC)
    state = {k: _shared(v, 64, 0.2) if k.endswith("weight") else v for k, v in model.state_dict().items()}
    save_lep(out / "fc.lep", spec, state, coder="ans", metadata={"note": "fuzz seed", "accuracy": 0.5})
    spec, model = _model(SPEC_CONV)
    state = dict(model.state_dict())
    state["conv1.weight"] = _shared(state["conv1.weight"], 8, 1.0)  # dense: shared, not pruned
    state["conv2.weight"] = _shared(state["conv2.weight"], 4096, 0.3)  # sparse-raw: pruned, not shared
    save_lep(out / "conv.lep", spec, state, coder="huffman", metadata={"stage": "prune"})
    spec, model = _model(SPEC_FC)
    convert_linears(model, {"fc1": 2.0}, cores=2)
    spec = ModelSpec(*SPEC_FC, tt=tt_layout(model))  # type: ignore[misc]
    save_lep(out / "tt.lep", spec, model.state_dict(), coder="ans")
    spec, model = _model(SPEC_FC)
    state = dict(model.state_dict())
    fc1 = _shared(state["fc1.weight"], 16, 0.3)
    fc1[::3] = 0  # whole neurons removed
    fc1[:, 1::2] = 0  # whole inputs removed
    state["fc1.weight"] = fc1
    state["fc2.weight"] = _shared(state["fc2.weight"], 5000, 0.2)
    state["fc2.weight"][:, ::2] = 0
    save_lep(out / "mask.lep", spec, state, coder="ans")
    spec, model = _model(SPEC_FC)  # compact (version 4): implied offsets, one payload CRC, float16 codebooks
    state = {k: _shared(v, 32, 0.1) if k.endswith("weight") else v for k, v in model.state_dict().items()}
    round_to_half(state)
    save_lep(out / "compact.lep", spec, state, coder="ans", compact=True)
    return [out / "fc.lep", out / "conv.lep", out / "tt.lep", out / "mask.lep", out / "compact.lep"]


def _images(n: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth blobs with noise: compressible, like digits, in 8x8."""
    yy, xx = np.mgrid[:8, :8]
    centres = rng.uniform(2, 6, (n, 2, 1, 1))
    blob = 255 * np.exp(-((yy - centres[:, 0]) ** 2 + (xx - centres[:, 1]) ** 2) / 6)
    return np.clip(blob + rng.normal(0, 8, blob.shape), 0, 255).astype(np.uint8)


def write_lds(out: Path) -> list[Path]:
    """One store: a lepton-cm + zstd split, an lzma + deflate split, and a whole array."""
    from lepton.data.codecs import get_codec
    from lepton.data.store import StoreWriter

    rng = np.random.default_rng(0)
    path = out / "digits.lds"
    with StoreWriter(path, attrs={"name": "blobs", "classes": ["a", "b", "c"]}, block_samples=64, threads=1) as w:
        w.add_split(
            "train",
            {"images": _images(200, rng), "labels": rng.integers(0, 3, 200, dtype=np.uint8)},
            {"images": get_codec("lepton-cm", leaves=16, fit_pixels=20_000), "labels": "zstd"},
        )
        w.add_split(
            "test",
            {"images": _images(70, rng), "labels": rng.integers(0, 3, 70, dtype=np.uint8)},
            {"images": "lzma", "labels": "deflate"},
        )
        w.add_array("pca.mean", rng.normal(size=64).astype(np.float32), "zstd")
    return [path]


def write_ckpt(out: Path) -> list[Path]:
    """Two checkpoints after two training steps: Adam and SGD with momentum (optimizer state included)."""
    from lepton.train.checkpoint import save_checkpoint

    paths = []
    for name, make in (
        ("adam", lambda p: torch.optim.Adam(p, lr=1e-3)),
        ("sgd", lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)),
    ):
        torch.manual_seed(0)
        spec, model = _model(SPEC_FC)
        opt = make(model.parameters())
        for _ in range(2):
            opt.zero_grad()
            model(torch.randn(4, 1, 8, 8)).square().mean().backward()
            opt.step()
        paths.append(
            save_checkpoint(out / name, model, spec, optimizer=opt, extra={"train": {"epoch": 1, "history": []}})
        )
    return paths


def write_registry(out: Path, leps: list[Path]) -> list[Path]:
    """A registry with two versions of one model and one of another; ``created`` fixed for repeatable bytes."""
    from lepton.edge.registry import Registry

    root = out / "registry"
    reg = Registry(root)
    for i, (lep, name, version) in enumerate(
        ((leps[0], "lenet", "1"), (leps[1], "lenet", "2"), (leps[0], "tiny", "v1"))
    ):
        reg.push(lep, name, version, metrics={"accuracy": 0.9, "stage": "seed"})
        manifest = root / "models" / name / version / "manifest.json"
        doc = json.loads(manifest.read_text())
        doc["created"] = f"2024-01-0{i + 1}T00:00:00.000000+00:00"
        manifest.write_text(json.dumps(doc, indent=2))
    return [root]


def write_circuit(out: Path) -> list[Path]:
    """A trained-looking 3-qubit, 2-layer circuit with data re-uploading and sample inputs."""
    from lepton.quantum.circuit import variational_circuit
    from lepton.quantum.circuit_file import TrainedCircuit, save_circuit

    circuit = variational_circuit(3, 2, reupload=True)
    weights = torch.linspace(-1.5, 1.5, circuit.n_weights, dtype=torch.float64).reshape(circuit.weight_shape)
    path = out / "circuit.json"
    save_circuit(path, TrainedCircuit(circuit, weights, [0.1, -0.2, 0.3], {"accuracy": 0.75}))
    return [path]


def write_weights(out: Path) -> dict[str, list[Path]]:
    """A plain state dict as torch.save and safetensors write it: several dtypes, strided and shared views."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    _, model = _model(SPEC_FC)
    state = model.state_dict()
    base = torch.randn(4, 6)
    extra = {"half": base.half().t(), "view": base[1:3, ::2], "ids": torch.arange(5), "mask": torch.rand(3) > 0.5}
    torch.save({**state, **extra}, out / "weights.pt")
    save_file({**state, **{k: v.contiguous() for k, v in extra.items()}}, out / "weights.safetensors")
    return {"pt": [out / "weights.pt"], "safetensors": [out / "weights.safetensors"]}


def write_seeds(out: Path) -> dict[str, list[Path]]:
    """Every seed, by format, under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    leps = write_lep(out)
    return {
        "lep": leps,
        "lds": write_lds(out),
        "ckpt": write_ckpt(out),
        "registry": write_registry(out, leps),
        "circuit": write_circuit(out),
        **write_weights(out),
    }
