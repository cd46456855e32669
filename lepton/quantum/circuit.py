"""Circuits as data: a validated list of gates on wires whose angles name trainable weights, inputs or constants.

The same :class:`Circuit` is simulated (:mod:`lepton.quantum.simulator`), drawn as text (:func:`draw`),
exported to OpenQASM (:mod:`lepton.quantum.qasm`) and serialised to JSON (:meth:`Circuit.to_dict`).
Wire 0 is the most significant bit of a basis-state index (the PennyLane convention).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from lepton.errors import ConfigError
from lepton.utils.checks import check_int

GATES: dict[str, tuple[int, int]] = {  # name -> (wires, angles)
    "RX": (1, 1),
    "RY": (1, 1),
    "RZ": (1, 1),
    "ROT": (1, 3),
    "H": (1, 0),
    "CNOT": (2, 0),
    "CZ": (2, 0),
}
MAX_DESCRIBED_QUBITS = 1024  # a description (drawn, exported) may be large; simulation checks memory itself
MAX_DESCRIBED_OPS = 1 << 20  # gates of one description: building, drawing or exporting more is never useful


@dataclass(frozen=True)
class Param:
    """One gate angle: ``scale * weights.flatten()[index]`` (kind "w"), ``scale * inputs[:, index]`` ("x"),
    or the constant ``value`` ("c")."""

    kind: Literal["w", "x", "c"]
    index: int = 0
    scale: float = 1.0
    value: float = 0.0

    def label(self) -> str:
        if self.kind == "c":
            return f"{self.value:.4g}"
        s = "" if self.scale == 1.0 else f"{self.scale:.4g}*"
        return f"{s}{self.kind}{self.index}"


def w(index: int, scale: float = 1.0) -> Param:
    return Param("w", index, scale)


def x(index: int, scale: float = 1.0) -> Param:
    return Param("x", index, scale)


def c(value: float) -> Param:
    return Param("c", value=float(value))


@dataclass(frozen=True)
class Op:
    gate: str
    wires: tuple[int, ...]
    params: tuple[Param, ...] = ()


@dataclass(frozen=True)
class Circuit:
    """A variational circuit: ``n_qubits`` wires, an input encoding, gates, and Pauli-Z read-out wires.

    ``encoding="amplitude"`` starts from the L2-normalised input vector (zero-padded to 2**n_qubits)
    instead of |0…0>; ``"angle"`` starts from |0…0> and the gates read inputs through "x" params.
    Every index, wire and count is checked on construction, so a bad circuit never reaches the simulator.
    """

    n_qubits: int
    ops: tuple[Op, ...]
    weight_shape: tuple[int, ...] = (0,)
    n_inputs: int = 0
    encoding: Literal["angle", "amplitude"] = "angle"
    measure: tuple[int, ...] | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        n = check_int(self.n_qubits, "n_qubits", 1, MAX_DESCRIBED_QUBITS, owner="Circuit")
        if any(not isinstance(d, int) or d < 0 for d in self.weight_shape):
            raise ConfigError(f"Circuit weight_shape must be non-negative ints, got {self.weight_shape}.")
        if self.encoding not in ("angle", "amplitude"):
            raise ConfigError(f"Circuit encoding must be 'angle' or 'amplitude', got {self.encoding!r}.")
        if self.encoding == "amplitude" and not 1 <= self.n_inputs <= 2 ** min(n, 62):
            raise ConfigError(
                f"amplitude encoding of {self.n_inputs} inputs needs 1 <= n_inputs <= 2**n_qubits "
                f"= {2**n}; use more qubits or fewer features."
            )
        for i, op in enumerate(self.ops):
            self._check_op(i, op)
        for wire in self.measured:
            if not 0 <= wire < n:
                raise ConfigError(f"measured wire {wire} is out of range for {n} qubits (wires 0..{n - 1}).")

    def _check_op(self, i: int, op: Op) -> None:
        where = f"circuit op {i} ({op.gate} on wires {op.wires})"
        if op.gate not in GATES:
            raise ConfigError(f"{where}: unknown gate {op.gate!r}; known gates: {', '.join(GATES)}.")
        n_wires, n_params = GATES[op.gate]
        if len(op.wires) != n_wires or len(set(op.wires)) != n_wires:
            raise ConfigError(f"{where}: {op.gate} acts on {n_wires} distinct wire(s).")
        for wire in op.wires:
            if not isinstance(wire, int) or not 0 <= wire < self.n_qubits:
                raise ConfigError(
                    f"{where}: wire {wire!r} is out of range; this circuit has wires "
                    f"0..{self.n_qubits - 1}. Use a wire index below n_qubits or add qubits."
                )
        if len(op.params) != n_params:
            raise ConfigError(f"{where}: {op.gate} takes {n_params} angle(s), got {len(op.params)}.")
        for p in op.params:
            if p.kind == "w" and not 0 <= p.index < self.n_weights:
                raise ConfigError(
                    f"{where}: weight index {p.index} is out of range for weight_shape "
                    f"{self.weight_shape} ({self.n_weights} weights)."
                )
            if p.kind == "x" and not 0 <= p.index < self.n_inputs:
                raise ConfigError(f"{where}: input index {p.index} is out of range for {self.n_inputs} inputs.")
            if p.kind == "x" and self.encoding == "amplitude":
                raise ConfigError(f"{where}: an amplitude-encoded circuit cannot also read inputs as angles.")
            if not math.isfinite(p.scale) or not math.isfinite(p.value):
                raise ConfigError(f"{where}: angle parameters must be finite numbers.")

    @property
    def n_weights(self) -> int:
        return math.prod(self.weight_shape)

    @property
    def measured(self) -> tuple[int, ...]:
        return tuple(range(self.n_qubits)) if self.measure is None else self.measure

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_qubits": self.n_qubits,
            "weight_shape": list(self.weight_shape),
            "n_inputs": self.n_inputs,
            "encoding": self.encoding,
            "measure": None if self.measure is None else list(self.measure),
            "meta": self.meta,
            "ops": [
                {
                    "gate": o.gate,
                    "wires": list(o.wires),
                    "params": [
                        {"kind": p.kind, "index": p.index, "scale": p.scale, "value": p.value} for p in o.params
                    ],
                }
                for o in self.ops
            ],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Circuit:
        try:
            ops = tuple(
                Op(
                    str(o["gate"]),
                    tuple(int(v) for v in o["wires"]),
                    tuple(Param(p["kind"], int(p["index"]), float(p["scale"]), float(p["value"])) for p in o["params"]),
                )
                for o in d["ops"]
            )
            return cls(
                int(d["n_qubits"]),
                ops,
                tuple(int(v) for v in d["weight_shape"]),
                int(d["n_inputs"]),
                d["encoding"],
                None if d.get("measure") is None else tuple(int(v) for v in d["measure"]),
                dict(d.get("meta", {})),
            )
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, ConfigError):
                raise
            raise ConfigError(f"not a valid circuit description: {type(e).__name__}: {e}") from None


def variational_circuit(
    n_qubits: int,
    n_layers: int,
    *,
    n_inputs: int | None = None,
    encoding: Literal["angle", "amplitude"] = "angle",
    rotation: Literal["rot", "ry"] = "rot",
    entangler: Literal["cnot", "cz"] = "cnot",
    reupload: bool = False,
    input_gate: Literal["RX", "RY"] = "RY",
) -> Circuit:
    """The standard hardware-efficient ansatz: encode, then ``n_layers`` × (rotate every wire, entangle a ring).

    Angle encoding puts input ``i`` on wire ``i % n_qubits`` (``input_gate``); with ``reupload`` the inputs
    are encoded again before every layer (data re-uploading, Pérez-Salinas et al. 2020). Weights have shape
    ``[n_layers, n_qubits, 3]`` ("rot": RZ·RY·RZ) or ``[n_layers, n_qubits, 1]`` ("ry").
    """
    check_int(n_qubits, "n_qubits", 1, MAX_DESCRIBED_QUBITS, owner="variational_circuit")
    check_int(n_layers, "n_layers", 1, owner="variational_circuit")
    if rotation not in ("rot", "ry") or entangler not in ("cnot", "cz") or input_gate not in ("RX", "RY"):
        raise ConfigError(
            f"unknown ansatz option: rotation={rotation!r} (rot|ry), entangler={entangler!r} "
            f"(cnot|cz), input_gate={input_gate!r} (RX|RY)."
        )
    if encoding == "angle":
        n_inputs = n_qubits if n_inputs is None else n_inputs
    else:
        n_inputs = 2**n_qubits if n_inputs is None else n_inputs
    k = 3 if rotation == "rot" else 1
    check_int(n_inputs, "n_inputs", 0, owner="variational_circuit")
    # Count the gates before building any (a typo such as --layers 1000000000 must not allocate for minutes).
    encodings = (n_layers if reupload else 1) if encoding == "angle" else 0
    n_ops = encodings * n_inputs + n_layers * (n_qubits + (n_qubits if n_qubits > 2 else n_qubits - 1))
    if n_ops > MAX_DESCRIBED_OPS:
        raise ConfigError(
            f"a variational circuit of {n_qubits} qubits and {n_layers} layers has {n_ops:,} gates, "
            f"more than the {MAX_DESCRIBED_OPS:,} Lepton describes; use fewer qubits or layers."
        )
    ops: list[Op] = []

    def encode() -> None:
        if encoding == "angle":
            ops.extend(Op(input_gate, (i % n_qubits,), (x(i),)) for i in range(n_inputs))

    encode()
    for layer in range(n_layers):
        if reupload and layer > 0:
            encode()
        for q in range(n_qubits):
            base = (layer * n_qubits + q) * k
            ops.append(Op("ROT", (q,), (w(base), w(base + 1), w(base + 2))) if k == 3 else Op("RY", (q,), (w(base),)))
        if n_qubits > 1:
            pairs = [(q, (q + 1) % n_qubits) for q in range(n_qubits)] if n_qubits > 2 else [(0, 1)]
            ops.extend(Op(entangler.upper(), pair) for pair in pairs)
    return Circuit(
        n_qubits,
        tuple(ops),
        (n_layers, n_qubits, k),
        n_inputs,
        encoding,
        meta={
            "ansatz": "variational",
            "n_layers": n_layers,
            "rotation": rotation,
            "entangler": entangler,
            "reupload": reupload,
        },
    )


def _angle_text(p: Param, weights: list[float] | None) -> str:
    if p.kind == "w" and weights is not None:
        return f"{p.scale * weights[p.index]:.3f}"
    return p.label()


def draw(circuit: Circuit, weights: Any = None) -> str:
    """A text drawing, one line per wire; gates are placed in the earliest column their wires are free.

    With ``weights`` (a tensor or sequence), trained angles are printed as numbers instead of ``w<i>``.
    """
    flat = None if weights is None else [float(v) for v in flatten_values(weights)]
    n = circuit.n_qubits
    columns: list[dict[int, str]] = []
    free = [0] * n
    for op in circuit.ops:
        span = range(min(op.wires), max(op.wires) + 1)
        col = max(free[q] for q in span)
        if col == len(columns):
            columns.append({})
        cells = columns[col]
        if op.gate == "CNOT":
            cells[op.wires[0]], cells[op.wires[1]] = "●", "X"
        elif op.gate == "CZ":
            cells[op.wires[0]], cells[op.wires[1]] = "●", "●"
        else:
            args = ",".join(_angle_text(p, flat) for p in op.params)
            cells[op.wires[0]] = f"{'Rot' if op.gate == 'ROT' else op.gate}({args})" if args else op.gate
        for q in span:
            if len(op.wires) == 2 and q not in op.wires:
                cells[q] = "│"
            free[q] = col + 1
    lines = [f"{q}: ─" for q in range(n)]
    for cells in columns:
        width = max(len(s) for s in cells.values())
        for q in range(n):
            s = cells.get(q, "")
            lines[q] += s.center(width, "─" if s in ("", "●", "X", "│") else " ") + "─"
    for q in circuit.measured:
        lines[q] += "┤ <Z>"
    return "\n".join(lines)


def flatten_values(values: Any) -> list[float]:
    """A tensor or nested lists/tuples of numbers as one flat list of floats (row-major)."""
    if hasattr(values, "detach"):
        return values.detach().reshape(-1).tolist()
    out: list[float] = []
    for v in values:
        out.extend(flatten_values(v) if isinstance(v, (list, tuple)) else [float(v)])
    return out
