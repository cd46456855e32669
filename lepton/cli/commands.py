"""Import every command module so each registers itself on the app."""

from lepton.cli import compress, info, run, train  # noqa: F401
