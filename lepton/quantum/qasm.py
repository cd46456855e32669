"""OpenQASM 2.0 / 3.0 export of a circuit with its trained weights and one input's values bound.

Wire ``i`` becomes ``q[i]``; ROT is written as its definition ``rz(phi); ry(theta); rz(omega)``, so the text
uses only ``qelib1.inc`` / ``stdgates.inc`` gates. Amplitude encoding needs a state-preparation routine that
OpenQASM 2 lacks, so such circuits are refused.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from lepton.errors import ConfigError
from lepton.quantum.circuit import Circuit, Param, flatten_values

_NAMES = {"RX": "rx", "RY": "ry", "RZ": "rz", "H": "h", "CNOT": "cx", "CZ": "cz"}


def _value(p: Param, weights: list[float], inputs: list[float]) -> float:
    if p.kind == "w":
        return p.scale * weights[p.index]
    if p.kind == "x":
        return p.scale * inputs[p.index]
    return p.scale * p.value


def to_qasm(
    circuit: Circuit, weights: Any = None, inputs: Any = None, *, version: int = 2, measure: bool = True
) -> str:
    """The circuit as OpenQASM ``version`` (2 or 3) text, angles printed with 17 significant digits."""
    if version not in (2, 3):
        raise ConfigError(f"OpenQASM version must be 2 or 3, got {version!r}.")
    if circuit.encoding == "amplitude":
        raise ConfigError(
            "amplitude-encoded circuits cannot be exported: OpenQASM has no state preparation; "
            "use angle encoding (encoding='angle') for exportable circuits."
        )
    w = [] if weights is None else flatten_values(weights)
    xs = [] if inputs is None else flatten_values(inputs.detach() if isinstance(inputs, torch.Tensor) else inputs)
    if len(w) != circuit.n_weights:
        raise ConfigError(f"to_qasm needs {circuit.n_weights} weights (shape {circuit.weight_shape}), got {len(w)}.")
    if len(xs) != circuit.n_inputs:
        raise ConfigError(f"to_qasm needs the {circuit.n_inputs} input values of one sample, got {len(xs)}.")
    n = circuit.n_qubits
    lines = (
        ["OPENQASM 2.0;", 'include "qelib1.inc";', f"qreg q[{n}];"]
        if version == 2
        else ["OPENQASM 3.0;", 'include "stdgates.inc";', f"qubit[{n}] q;"]
    )
    if measure:
        m = len(circuit.measured)
        lines.append(f"creg c[{m}];" if version == 2 else f"bit[{m}] c;")
    for op in circuit.ops:
        args = [_value(p, w, xs) for p in op.params]
        wires = ", ".join(f"q[{q}]" for q in op.wires)
        if not all(math.isfinite(a) for a in args):
            raise ConfigError(
                f"to_qasm: {op.gate} on {wires} has angle(s) {args}; OpenQASM needs finite angles, so "
                "check the weights and inputs for NaN or infinity."
            )
        if op.gate == "ROT":
            q = wires
            lines += [f"rz({args[0]:.17g}) {q};", f"ry({args[1]:.17g}) {q};", f"rz({args[2]:.17g}) {q};"]
        else:
            a = f"({args[0]:.17g})" if args else ""
            lines.append(f"{_NAMES[op.gate]}{a} {wires};")
    if measure:
        for i, q in enumerate(circuit.measured):
            lines.append(f"measure q[{q}] -> c[{i}];" if version == 2 else f"c[{i}] = measure q[{q}];")
    return "\n".join(lines) + "\n"
