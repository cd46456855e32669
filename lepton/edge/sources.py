"""Where ``lepton serve`` gets its models: local files, and artifact registry references (``ROOT/NAME[:VERSION]``,
ROOT a folder, ``file://`` URL or ``s3://bucket/prefix``) pulled into a cache folder and verified (size and
SHA-256 against the manifest, :meth:`lepton.edge.registry.Registry.pull`) before ONNX Runtime opens them.

A cached file is reused only if its SHA-256 still matches the manifest; anything else is pulled again. The
server's load endpoint (:mod:`lepton.edge.repository`) loads a name from where it came from at start (its
registry, or its file, read again), and a name it has not served from ``registry`` (default
:func:`lepton.edge.registry.default_registry`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from lepton.edge.registry import Registry, check_segment, default_registry, parse_ref
from lepton.edge.server import ServedModel, load_served_model
from lepton.errors import ConfigError
from lepton.utils.io import sha256_file

if TYPE_CHECKING:
    from lepton.models.registry import ModelSpec

FILE_SUFFIXES = (".onnx", ".lep", ".safetensors", ".pt", ".pth", ".ckpt")


@dataclass(frozen=True)
class ModelSource:
    """A model argument of ``lepton serve``: a local ``file`` (``location`` its path) or a ``registry`` reference
    (``location`` the registry root, ``name`` and optionally ``version``)."""

    kind: Literal["file", "registry"]
    location: str
    name: str | None = None
    version: str | None = None


def parse_model_arg(arg: str) -> ModelSource:
    """A local file if ``arg`` exists; else a registry reference ``ROOT/NAME[:VERSION]`` (or ``NAME:VERSION`` in
    the default registry).

    Args:
        arg: the command-line argument.

    Returns:
        Where the model comes from.
    """
    if Path(arg).exists():
        return ModelSource("file", arg)
    if arg.endswith(FILE_SUFFIXES) or ("/" not in arg and ":" not in arg):
        raise ConfigError(
            f"model {arg!r}: no such file, and not a registry reference; pass an existing .onnx/.lep/weight file "
            "or ROOT/NAME[:VERSION] (e.g. ./registry/lenet5:3 or s3://bucket/models/lenet5)."
        )
    root, name, version = parse_ref(arg)
    return ModelSource("registry", root, name, version)


class ModelLoader:
    """Opens the server's models (module docstring); every call blocks (download, export, ONNX Runtime session),
    so the server runs it on a worker thread.

    Args:
        cache_dir: where pulled artifacts (and non-ONNX exports) are kept.
        registry: the registry root for load requests of names not served from a reference at start.
        threads: ONNX Runtime intra-op threads of each model.
        trust_code: allow a ``package.module:factory`` named by a local file (as ``lepton serve --trust-code``).
        arch: the architecture of a plain local weight file.
    """

    def __init__(
        self,
        cache_dir: str | Path,
        *,
        registry: str | None = None,
        threads: int = 1,
        trust_code: bool = False,
        arch: ModelSpec | None = None,
    ) -> None:
        self.cache_dir, self.registry, self.threads = Path(cache_dir), registry, threads
        self.trust_code, self.arch = trust_code, arch
        self.sources: dict[str, ModelSource] = {}

    def open(self, source: ModelSource, *, name: str | None = None, version: str | None = None) -> ServedModel:
        """Open ``source``; ``name``/``version`` name a local file's model (default: its stem, "1"). Remembers
        where the model came from, for :meth:`load`."""
        if source.kind == "file":
            path = Path(source.location)
            served = load_served_model(
                path,
                name=name,
                version=version or "1",
                threads=self.threads,
                workdir=self._folder("files", str(path.resolve()), name or path.stem),
                trust_code=self.trust_code,
                arch=self.arch,
            )
            self.sources[served.name] = ModelSource("file", source.location, served.name, served.version)
            return served
        if source.name is None:
            raise ConfigError(f"registry source {source.location!r} has no model name; write ROOT/NAME[:VERSION].")
        registry = Registry(source.location)
        manifest = registry.resolve(source.name, source.version)
        folder = self._folder("registry", source.location, source.name, manifest.version)
        cached = folder / Path(manifest.file).name
        if not (cached.is_file() and cached.stat().st_size == manifest.size and sha256_file(cached) == manifest.sha256):
            _, cached = registry.pull(source.name, manifest.version, folder)
        served = load_served_model(
            cached, name=source.name, version=manifest.version, threads=self.threads, workdir=folder
        )
        self.sources[source.name] = ModelSource("registry", source.location, source.name)
        return served

    def load(self, name: str, version: str | None = None) -> ServedModel:
        """The model a load request asks for: ``name`` (``version``; default the registry's latest, or the file's
        version) from where it came from at start, else from ``registry``."""
        check_segment(name, "model name")
        if version is not None:
            check_segment(version, "version")
        source = self.sources.get(name) or ModelSource("registry", self.registry or default_registry(), name)
        if source.kind == "file":
            if version not in (None, source.version):
                raise ConfigError(
                    f"model {name!r} is served from the file {source.location} as version {source.version}; "
                    "load it without a version (re-reads the file), or serve it from a registry."
                )
            return self.open(source, name=name, version=source.version)
        return self.open(ModelSource("registry", source.location, name, version))

    def _folder(self, kind: str, location: str, *parts: str) -> Path:
        digest = hashlib.sha256(location.encode()).hexdigest()[:16]
        folder = self.cache_dir.joinpath(kind, digest, *parts)
        folder.mkdir(parents=True, exist_ok=True)
        return folder
