"""Open any model file Lepton writes — a checkpoint (``.safetensors`` + ``.json``) or a ``.lep`` — as a module, or a
plain state dict another program saved (``.pt`` or ``.safetensors``) with the architecture the user names.

It dispatches to both formats' readers (``lepton.train.checkpoint`` and ``lepton.compress.container``), so
it sits on the layer of ``compress`` (above ``train``), below ``edge``, ``pipeline`` and ``cli``, which use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from lepton.compress.container import load_lep
from lepton.data.options import SourceOptions
from lepton.errors import FormatError
from lepton.models.registry import ModelSpec
from lepton.models.weights import read_weights
from lepton.train.checkpoint import load_checkpoint


@dataclass
class LoadedModel:
    model: nn.Module
    spec: ModelSpec
    meta: dict[str, Any]
    kind: str  # "checkpoint", "lep" or "weights"


def load_model_file(path: str | Path, *, trust_code: bool = False, arch: ModelSpec | None = None) -> LoadedModel:
    """Verify and load ``path``; the returned model is in eval mode.

    No code named by the file runs: the architecture comes from the registry or from the file's graph. A file
    that only names a ``package.module:factory`` loads with ``trust_code=True`` alone.

    Args:
        path: a checkpoint, a ``.lep``, or with ``arch`` a plain state dict (``.pt``, ``.pth``, ``.safetensors``).
        trust_code: allow importing the ``package.module:factory`` that the file or ``arch`` names.
        arch: the architecture of a plain state dict: a registry name or factory with input shape and classes.

    Returns:
        The model (eval mode), its spec (carrying the architecture as data for a user factory), metadata, kind.
    """
    path = Path(path)
    if arch is not None:
        return load_weights_file(path, arch, trust_code=trust_code)
    if path.suffix in (".pt", ".pth", ".bin") or (
        path.suffix == ".safetensors" and not path.with_suffix(".json").exists()
    ):
        raise FormatError(
            f"{path}: a plain weight file (no Lepton sidecar) says nothing about its architecture; pass --arch NAME "
            "(a registry name, or package.module:factory with --trust-code) and --input-shape C,H,W --num-classes N."
        )
    if path.suffix == ".lep":
        lep = load_lep(path)
        return LoadedModel(lep.build_model(trust_code=trust_code).eval(), lep.spec, lep.metadata, "lep")
    ckpt = load_checkpoint(path)
    return LoadedModel(ckpt.build_model(trust_code=trust_code).eval(), ckpt.spec, ckpt.meta, "checkpoint")


def load_weights_file(path: str | Path, arch: ModelSpec, *, trust_code: bool = False) -> LoadedModel:
    """A plain state dict (:func:`lepton.models.weights.read_weights`: nothing in the file runs) loaded into
    ``arch``, its names, shapes and dtypes checked first (:meth:`ModelSpec.load`).

    Args:
        path: a ``.pt``/``.pth`` zip written by ``torch.save(model.state_dict())`` or a ``.safetensors`` file.
        arch: the architecture (a user factory runs only with ``trust_code``).
        trust_code: allow importing ``arch``'s ``package.module:factory``.

    Returns:
        The loaded model in eval mode; its spec carries a user model's architecture as data.
    """
    path = Path(path)
    if path.suffix == ".lep":
        raise FormatError(f"{path}: a .lep file carries its architecture; drop --arch.")
    state = read_weights(path)
    try:
        model = arch.load(state, trust_code=trust_code, what=str(path)).eval()
    except FormatError as e:
        shape = ",".join(map(str, arch.input_shape))
        raise FormatError(
            f"{e} Check --arch, --input-shape (now {shape}) and --num-classes (now {arch.num_classes})."
        ) from None
    return LoadedModel(model, arch.with_graph(model), {}, "weights")


def trained_dataset(meta: dict[str, Any], where: str | Path) -> str | None:
    """The name of the dataset a model file's free metadata says it was trained on (``dataset.name``, or a
    plain ``dataset_name``), or None when it says nothing. A wrong-typed entry is a :class:`FormatError` naming
    the file, rather than a silent guess: the caller only asks when no ``--data`` was given, which is the fix."""
    dataset, name = meta.get("dataset"), meta.get("dataset_name")
    if dataset is not None:
        if not isinstance(dataset, dict) or not isinstance(dataset.get("name"), (str, type(None))):
            shown = repr(dataset if not isinstance(dataset, dict) else dataset.get("name"))
            raise FormatError(
                f"{where}: the metadata's 'dataset' is {shown[:60]}, expected an object whose 'name' "
                "is a string; pass --data NAME to choose the dataset."
            )
        name = dataset.get("name") or name
    if name is not None and not isinstance(name, str):
        raise FormatError(
            f"{where}: the metadata's 'dataset_name' is {name!r:.60}, expected a string; pass "
            "--data NAME to choose the dataset."
        )
    return name or None


def trained_source_options(meta: dict[str, Any], where: str | Path) -> SourceOptions:
    """How the model file's training data was read (image size, channels, layout: the ``data`` section of the
    ``config`` that ``lepton train`` records), so evaluating on the same source reads it the same way; the
    defaults when the file records none. A recorded section that does not validate is a :class:`FormatError`
    naming the file."""
    config = meta.get("config")
    data = config.get("data") if isinstance(config, dict) else None
    if not isinstance(data, dict):
        return SourceOptions()
    try:
        return SourceOptions.model_validate({k: data[k] for k in SourceOptions.model_fields if k in data})
    except ValueError as e:
        raise FormatError(
            f"{where}: the metadata's config.data does not validate ({str(e).splitlines()[0]}); "
            "pass --data to choose the dataset and fix or remove the metadata entry."
        ) from e
