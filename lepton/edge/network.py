"""The link between edge and cloud in words: a bandwidth ('10Mbit'), a delay ('20ms'), a tensor encoding.

Pure helpers with no heavy imports, so configs can validate these values without loading torch or ONNX.
"""

from __future__ import annotations

import re
from typing import Literal

from lepton.errors import ConfigError

Encoding = Literal["fp32", "int8", "int8+zstd"]

_UNITS = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}


def parse_bandwidth(text: str) -> float:
    """'10Mbit', '500kbit', '1Gbit', '2MB' (bytes) -> bits per second."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmMgG]?)(bit|b|B|bps)?(/s)?\s*", text)
    if not m or float(m.group(1)) <= 0:
        raise ConfigError(f"bandwidth {text!r} is not a positive rate; write e.g. '10Mbit', '500kbit' or '2MB'.")
    bits = float(m.group(1)) * _UNITS[m.group(2).lower()]
    return bits * 8 if m.group(3) == "B" else bits


def parse_duration_ms(text: str) -> float:
    """'20ms', '0.1s', '150us', '5' (ms) -> milliseconds."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|s|us)?\s*", text)
    if not m:
        raise ConfigError(f"duration {text!r} is not a time; write e.g. '20ms', '0.1s' or '150us'.")
    return float(m.group(1)) * {"ms": 1.0, None: 1.0, "s": 1e3, "us": 1e-3}[m.group(2)]
