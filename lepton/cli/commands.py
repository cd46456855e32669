"""Import every command module so each registers itself on the app."""

from lepton.cli import compress, data, edge, info, quantum, registry, run, serve, train  # noqa: F401
