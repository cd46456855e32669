"""A trained circuit on disk: one JSON file (no code is executed on load), written atomically.

``{"format": "lepton-quantum-circuit", "version": 1, "circuit": Circuit.to_dict(), "weights": [floats],
"sample_inputs": [floats] | null, "meta": {...}}``; ``weights`` has ``prod(circuit.weight_shape)`` entries.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lepton.errors import ConfigError, FormatError
from lepton.quantum.circuit import Circuit
from lepton.utils import strict_json
from lepton.utils.io import atomic_write_text
from lepton.utils.strict_json import expect_dict, expect_list

FORMAT, VERSION = "lepton-quantum-circuit", 1


@dataclass
class TrainedCircuit:
    circuit: Circuit
    weights: torch.Tensor  # [*circuit.weight_shape], float64
    sample_inputs: list[float] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def save_circuit(path: str | Path, tc: TrainedCircuit) -> None:
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "circuit": tc.circuit.to_dict(),
        "weights": [float(v) for v in tc.weights.detach().reshape(-1)],
        "sample_inputs": tc.sample_inputs,
        "meta": tc.meta,
    }
    try:
        text = json.dumps(doc, indent=1, allow_nan=False)
    except ValueError:
        raise ConfigError(
            f"{path}: the circuit's weights or sample inputs hold NaN or infinity (training diverged?); "
            "a circuit file stores finite numbers only."
        ) from None
    atomic_write_text(path, text)


def _finite(values: Any, what: str) -> list[float]:
    """``values`` as floats if it is a JSON array of finite numbers (booleans, strings and null are refused)."""
    out = []
    for v in expect_list(values, what):
        try:
            x = float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan
        except OverflowError:  # an integer beyond the float range
            x = math.inf
        if not math.isfinite(x):
            raise FormatError(
                f"{what} holds {str(v)[:40]}; expected finite numbers only (a NaN or infinite angle "
                "cannot be simulated or exported), the file is damaged or forged."
            )
        out.append(x)
    return out


def load_circuit(path: str | Path) -> TrainedCircuit:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such circuit file; write one with `lepton quantum train -o {path}`.") from None
    doc = strict_json.loads(raw, f"circuit file {path}")
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != VERSION:
        raise FormatError(f"{path}: not a {FORMAT} v{VERSION} file (format/version fields missing or different).")
    try:
        circuit = Circuit.from_dict(expect_dict(doc.get("circuit"), f"{path}: the key 'circuit'"))
    except ConfigError as e:
        raise FormatError(f"{path}: damaged circuit file: {e}") from None
    weights = torch.tensor(_finite(doc.get("weights"), f"{path}: weights"), dtype=torch.float64)
    sample = doc.get("sample_inputs")
    sample = None if sample is None else _finite(sample, f"{path}: sample_inputs")
    meta = expect_dict(doc.get("meta") or {}, f"{path}: the key 'meta'")
    if weights.numel() != math.prod(circuit.weight_shape):
        raise FormatError(f"{path}: {weights.numel()} weights for a circuit of weight shape {circuit.weight_shape}.")
    if sample is not None and len(sample) != circuit.n_inputs:
        raise FormatError(f"{path}: {len(sample)} sample inputs for a circuit reading {circuit.n_inputs}.")
    return TrainedCircuit(circuit, weights.reshape(circuit.weight_shape), sample, dict(meta))
