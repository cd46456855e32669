"""Lepton: make deep-learning models and their data cheap to store, move, train and run."""

from lepton.errors import ConfigError, DataError, FormatError, LeptonError

__version__ = "0.1.0"

__all__ = ["ConfigError", "DataError", "FormatError", "LeptonError", "__version__"]
