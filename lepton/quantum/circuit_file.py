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
from lepton.utils.io import atomic_write_text

FORMAT, VERSION = "lepton-quantum-circuit", 1


@dataclass
class TrainedCircuit:
    circuit: Circuit
    weights: torch.Tensor  # [*circuit.weight_shape], float64
    sample_inputs: list[float] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def save_circuit(path: str | Path, tc: TrainedCircuit) -> None:
    doc = {"format": FORMAT, "version": VERSION, "circuit": tc.circuit.to_dict(),
           "weights": [float(v) for v in tc.weights.detach().reshape(-1)], "sample_inputs": tc.sample_inputs,
           "meta": tc.meta}
    atomic_write_text(path, json.dumps(doc, indent=1))


def load_circuit(path: str | Path) -> TrainedCircuit:
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such circuit file; write one with `lepton quantum train -o {path}`.") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FormatError(f"{path}: not a circuit file (invalid JSON: {e}).") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != VERSION:
        raise FormatError(f"{path}: not a {FORMAT} v{VERSION} file (format/version fields missing or different).")
    try:
        circuit = Circuit.from_dict(doc["circuit"])
        weights = torch.tensor([float(v) for v in doc["weights"]], dtype=torch.float64)
        sample = doc.get("sample_inputs")
        sample = None if sample is None else [float(v) for v in sample]
    except (KeyError, TypeError, ValueError) as e:
        raise FormatError(f"{path}: damaged circuit file: {e}") from None
    if weights.numel() != math.prod(circuit.weight_shape):
        raise FormatError(f"{path}: {weights.numel()} weights for a circuit of weight shape {circuit.weight_shape}.")
    if sample is not None and len(sample) != circuit.n_inputs:
        raise FormatError(f"{path}: {len(sample)} sample inputs for a circuit reading {circuit.n_inputs}.")
    return TrainedCircuit(circuit, weights.reshape(circuit.weight_shape), sample, dict(doc.get("meta") or {}))
