"""Small helpers shared across subsystems (atomic file writes, hashing)."""

from lepton.utils.io import atomic_path, atomic_write_bytes, atomic_write_text, sha256_file

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "sha256_file"]
