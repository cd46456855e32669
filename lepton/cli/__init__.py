"""The ``lepton`` command-line interface."""

from lepton.cli.app import app, main

__all__ = ["app", "main"]
