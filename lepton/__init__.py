"""Lepton: make deep-learning models and their data cheap to store, move, train and run.

The Python front door is :mod:`lepton.api` (``from lepton.api import train, compress, load, export_onnx``);
``lepton.load`` and ``lepton.export_onnx`` are also here, loaded on first use so that ``import lepton`` stays
light. ``lepton.train`` and ``lepton.compress`` are the subpackages that hold the building blocks.
"""

from typing import Any

from lepton.errors import ConfigError, DataError, FormatError, LeptonError, UntrustedCodeError

__version__ = "0.1.0"

_API = ("export_onnx", "load")

__all__ = ["ConfigError", "DataError", "FormatError", "LeptonError", "UntrustedCodeError", "__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        from lepton import api

        return getattr(api, name)
    raise AttributeError(f"module 'lepton' has no attribute {name!r}")
