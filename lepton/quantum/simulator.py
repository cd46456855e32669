"""A batched, differentiable statevector simulator in torch (CPU or GPU, complex64 or complex128).

A circuit is compiled once into a short program: every parametric one-qubit gate becomes a ZYZ rotation
whose three angles are an affine function of the weights and inputs, so all gate matrices of a batch are
built by one vectorised expression; consecutive one-qubit gates on a wire are fused into one 2×2 matrix;
runs of CNOT/CZ gates become one permutation with signs. Before the first entangling gate the state is a
product state, built by outer products instead of gate applications. The state is ``[batch, 2**n]``;
autograd differentiates everything (no parameter shift).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch

from lepton.errors import ConfigError
from lepton.quantum.circuit import Circuit
from lepton.utils.checks import check_int

HALF_PI = math.pi / 2
_H = [[1 / math.sqrt(2), 1 / math.sqrt(2)], [1 / math.sqrt(2), -1 / math.sqrt(2)]]
_COMPLEX = (torch.complex64, torch.complex128)


def available_bytes(device: torch.device) -> int:
    """Memory the simulator may use on ``device``: free GPU memory, or MemAvailable of the host."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))


def check_memory(n_qubits: int, batch: int, dtype: torch.dtype, device: torch.device, *, copies: int) -> None:
    """Refuse (before allocating anything) a simulation whose states would not fit in memory."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    need = (1 << n_qubits) * max(batch, 1) * itemsize * copies
    have = available_bytes(device)
    if need > have:
        raise ConfigError(
            f"simulating {n_qubits} qubits at batch {batch} needs about {need / 2**30:,.1f} GiB "
            f"({copies} states of 2**{n_qubits} {dtype} amplitudes) but {device} has {have / 2**30:,.1f} GiB "
            f"available. Use fewer qubits, a smaller batch, complex64, or run under torch.no_grad()."
        )


@dataclass
class Program:
    """A compiled circuit for one device and dtype (see the module docstring)."""

    circuit: Circuit
    dtype: torch.dtype
    device: torch.device
    w_index: torch.Tensor  # [G, 3] into weights.flatten() padded with one zero
    w_scale: torch.Tensor  # [G, 3]
    x_index: torch.Tensor  # [G, 3] into inputs padded with one zero column
    x_scale: torch.Tensor  # [G, 3]
    offset: torch.Tensor  # [G, 3]
    x_gates: torch.Tensor  # ids of the gates that read inputs
    x_pos: dict[int, int]  # gate id -> row of the per-sample matrices
    constants: torch.Tensor  # [K, 2, 2] fixed gates (H), ids G..G+K-1
    steps: list[tuple[str, object, object]]  # ("layer", {wire: [gate ids]}, None) | ("perm", index, sign)
    product_prefix: int  # 1 if the first layer is applied to |0…0> as a product state
    z_sign: torch.Tensor  # [2**n, len(measured)]


def _zyz(gate: str, params: tuple) -> list[tuple]:
    """The three ZYZ angles (phi, theta, omega) of a one-qubit gate, each as (param or None, offset)."""
    if gate == "ROT":
        return [(p, 0.0) for p in params]
    (p,) = params
    return {
        "RY": [(None, 0.0), (p, 0.0), (None, 0.0)],
        "RZ": [(p, 0.0), (None, 0.0), (None, 0.0)],
        "RX": [(None, HALF_PI), (p, 0.0), (None, -HALF_PI)],
    }[gate]  # RX(a) = RZ(-pi/2) RY(a) RZ(pi/2)


class _Permute(torch.autograd.Function):
    """``x[perm]`` whose backward is a gather with the inverse permutation (not a scatter-add)."""

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor, perm: torch.Tensor, inverse: torch.Tensor
    ) -> torch.Tensor:
        ctx.inverse = inverse  # type: ignore[attr-defined]
        return x.index_select(0, perm)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple:
        return grad.index_select(0, ctx.inverse), None, None  # type: ignore[attr-defined]


def _pair_perm(gate: str, a: int, b: int, n: int, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    bit_a = (idx >> (n - 1 - a)) & 1
    if gate == "CNOT":
        return idx ^ (bit_a << (n - 1 - b)), None
    bit_b = (idx >> (n - 1 - b)) & 1
    return idx, 1.0 - 2.0 * (bit_a & bit_b).to(torch.float64)


def compile_circuit(
    circuit: Circuit, *, dtype: torch.dtype = torch.complex64, device: str | torch.device = "cpu"
) -> Program:
    if dtype not in _COMPLEX:
        raise ConfigError(f"simulator dtype must be torch.complex64 or torch.complex128, got {dtype}.")
    device = torch.device(device)
    n = circuit.n_qubits
    check_memory(n, 1, torch.int64, device, copies=3 + len(circuit.measured))  # permutation and sign tables
    real = torch.float32 if dtype == torch.complex64 else torch.float64
    nw, nx = circuit.n_weights, circuit.n_inputs
    rows: list[list[tuple]] = []
    constants: list[list[list[float]]] = []
    gate_id: list[int] = []
    for op in circuit.ops:
        if op.gate in ("RX", "RY", "RZ", "ROT"):
            gate_id.append(len(rows))
            rows.append(_zyz(op.gate, op.params))
        elif op.gate == "H":
            gate_id.append(-1 - len(constants))
            constants.append(_H)
        else:
            gate_id.append(-(10**9))
    g = len(rows)
    w_index, w_scale, x_index, x_scale, offset = ([[0] * 3 for _ in rows] for _ in range(5))
    for i, row in enumerate(rows):
        for j, (p, off) in enumerate(row):
            w_index[i][j], x_index[i][j], offset[i][j] = nw, nx, off
            w_scale[i][j] = x_scale[i][j] = 0.0
            if p is None:
                continue
            if p.kind == "w":
                w_index[i][j], w_scale[i][j] = p.index, p.scale
            elif p.kind == "x":
                x_index[i][j], x_scale[i][j] = p.index, p.scale
            else:
                offset[i][j] += p.scale * p.value

    steps: list[tuple[str, object, object]] = []
    idx = torch.arange(1 << n, dtype=torch.int64)
    pending: dict[int, list[int]] = {}
    perm: torch.Tensor | None = None
    sign: torch.Tensor | None = None
    perm_wires: set[int] = set()

    def emit_perm() -> None:
        nonlocal perm, sign
        if perm is not None:
            inverse = torch.empty_like(perm)
            inverse[perm] = torch.arange(len(perm))
            steps.append(
                (
                    "perm",
                    (perm.to(device), inverse.to(device)),
                    None if sign is None else sign.to(device=device, dtype=real),
                )
            )
        perm, sign = None, None
        perm_wires.clear()

    def emit_layer() -> None:
        # every pending one-qubit gate commutes with the pending permutation (a gate on a permuted wire
        # would have emitted it first), so they can all be applied now, as one layer
        if pending:
            steps.append(("layer", dict(sorted(pending.items())), None))
            pending.clear()

    for op, gid in zip(circuit.ops, gate_id):
        if len(op.wires) == 1:
            q = op.wires[0]
            if q in perm_wires:
                emit_layer()
                emit_perm()
            pending.setdefault(q, []).append(gid if gid >= 0 else g + (-1 - gid))
            continue
        if any(q in pending for q in op.wires):
            emit_layer()
        p2, s2 = _pair_perm(op.gate, op.wires[0], op.wires[1], n, idx)
        if perm is None:
            perm, sign = p2, s2
        else:  # new[k] = s2[k] * s1[p2[k]] * old[p1[p2[k]]]
            s1 = None if sign is None else sign[p2]
            perm = perm[p2]
            sign = s1 if s2 is None else (s2 if s1 is None else s1 * s2)
        perm_wires.update(op.wires)
    emit_layer()
    emit_perm()
    prefix = 1 if circuit.encoding == "angle" and steps and steps[0][0] == "layer" else 0

    x_gates = [i for i, r in enumerate(x_scale) if any(v != 0 for v in r)]
    measured = torch.tensor(circuit.measured, dtype=torch.int64)
    z_sign = 1.0 - 2.0 * ((idx[:, None] >> (n - 1 - measured)) & 1).to(real)
    t = lambda v, dt: torch.tensor(v, dtype=dt, device=device).reshape(-1, 3)  # noqa: E731
    return Program(
        circuit,
        dtype,
        device,
        t(w_index, torch.int64),
        t(w_scale, real),
        t(x_index, torch.int64),
        t(x_scale, real),
        t(offset, real),
        torch.tensor(x_gates, dtype=torch.int64, device=device),
        {gid: i for i, gid in enumerate(x_gates)},
        torch.tensor(constants, dtype=dtype, device=device).reshape(-1, 2, 2),
        steps,
        prefix,
        z_sign.to(device),
    )


def zyz_matrices(angles: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``RZ(omega) RY(theta) RZ(phi)`` for ``angles[..., (phi, theta, omega)]`` -> ``[..., 2, 2]``."""
    phi, theta, omega = angles.unbind(-1)
    c, s = torch.cos(theta / 2), torch.sin(theta / 2)
    a, b = (phi + omega) / 2, (phi - omega) / 2
    ca, sa, cb, sb = torch.cos(a), torch.sin(a), torch.cos(b), torch.sin(b)
    re = torch.stack([c * ca, -s * cb, s * cb, c * ca], -1)
    im = torch.stack([-c * sa, -s * sb, -s * sb, c * sa], -1)
    return torch.complex(re, im).to(dtype).reshape(*angles.shape[:-1], 2, 2)


def _check_tensors(
    prog: Program, weights: torch.Tensor | None, inputs: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
    c = prog.circuit
    if weights is None:
        weights = torch.zeros(c.weight_shape, device=prog.device)
    if not isinstance(weights, torch.Tensor) or tuple(weights.shape) != tuple(c.weight_shape):
        got = tuple(weights.shape) if isinstance(weights, torch.Tensor) else type(weights).__name__
        raise ConfigError(f"circuit weights must be a tensor of shape {tuple(c.weight_shape)}, got {got}.")
    batched = True
    if c.n_inputs == 0:
        if inputs is not None:
            raise ConfigError("this circuit reads no inputs; call it without inputs.")
        return weights, None, False
    if inputs is None:
        raise ConfigError(f"this circuit reads {c.n_inputs} inputs; pass inputs of shape [batch, {c.n_inputs}].")
    if inputs.dim() == 1:
        inputs, batched = inputs[None], False
    if inputs.dim() != 2 or inputs.shape[1] != c.n_inputs:
        raise ConfigError(
            f"circuit inputs must have shape [batch, {c.n_inputs}] or [{c.n_inputs}], got {tuple(inputs.shape)}."
        )
    if inputs.is_complex():
        raise ConfigError("circuit inputs must be real (angles or amplitudes), got a complex tensor.")
    return weights, inputs, batched


def _program(
    prog: Program | Circuit, weights: torch.Tensor | None, inputs: torch.Tensor | None, dtype: torch.dtype
) -> Program:
    if isinstance(prog, Program):
        return prog
    device = (
        weights.device
        if isinstance(weights, torch.Tensor)
        else (inputs.device if isinstance(inputs, torch.Tensor) else torch.device("cpu"))
    )
    return compile_circuit(prog, dtype=dtype, device=device)


def _run(prog: Program, weights: torch.Tensor | None, inputs: torch.Tensor | None) -> torch.Tensor:
    """The final state, amplitude-major: ``[2**n, batch]``."""
    weights, inputs, _ = _check_tensors(prog, weights, inputs)
    n, dt = prog.circuit.n_qubits, prog.dtype
    real = torch.float32 if dt == torch.complex64 else torch.float64
    batch = 1 if inputs is None else inputs.shape[0]
    grad = torch.is_grad_enabled() and (weights.requires_grad or (inputs is not None and inputs.requires_grad))
    check_memory(n, batch, dt, prog.device, copies=2 * len(prog.steps) + 4 if grad else 3)

    w = torch.cat([weights.reshape(-1).to(real), weights.new_zeros(1, dtype=real)])
    mats = zyz_matrices(prog.offset + prog.w_scale * w[prog.w_index], dt)
    if len(prog.constants):
        mats = torch.cat([mats, prog.constants])
    mats = mats[None]  # [1, gates, 2, 2]: the same for every sample
    if prog.x_gates.numel():  # gates that read inputs get per-sample matrices [batch, x-gates, 2, 2]
        xg = prog.x_gates
        xin = torch.cat([inputs.to(real), inputs.new_zeros(batch, 1, dtype=real)], 1)
        mats_x = zyz_matrices(
            prog.offset[xg] + prog.w_scale[xg] * w[prog.w_index[xg]] + prog.x_scale[xg] * xin[:, prog.x_index[xg]], dt
        )

    def fused(ids: list[int]) -> torch.Tensor:
        m = None
        for i in ids:
            gate = mats_x[:, prog.x_pos[i]] if i in prog.x_pos else mats[:, i]
            m = gate if m is None else gate @ m
        return m  # type: ignore[return-value]  # [1 or batch, 2, 2]

    steps = prog.steps  # the state is kept amplitude-major, [2**n, batch]: gathers of whole rows are fast
    if prog.circuit.encoding == "amplitude":
        amp = torch.zeros(1 << n, batch, dtype=real, device=inputs.device)
        amp[: inputs.shape[1]] = inputs.to(real).T
        norm = amp.norm(dim=0, keepdim=True)
        if bool((norm == 0).any()):
            raise ConfigError("amplitude encoding needs a non-zero input vector in every row; got an all-zero row.")
        state = (amp / norm).to(dt)
    else:
        first: dict[int, list[int]] = steps[0][1] if prog.product_prefix else {}  # type: ignore[assignment]
        zero = torch.zeros(2, 1, dtype=dt, device=prog.device)
        zero[0] = 1
        vecs = [fused(first[q])[:, :, 0].T if q in first else zero for q in range(n)]  # [2, 1 or batch]
        state = vecs[0]
        for v in vecs[1:]:
            state = (state[:, None, :] * v[None, :, :]).reshape(-1, max(state.shape[1], v.shape[1]))
        state = state.expand(-1, batch)
        steps = steps[prog.product_prefix :]
    for kind, a, b in steps:
        if kind == "layer":
            state = _apply_layer(state, {q: fused(ids) for q, ids in a.items()}, n)  # type: ignore[union-attr]
        else:
            state = _Permute.apply(state, *a)  # type: ignore[misc]
            if b is not None:
                state = state * b[:, None]
    return state


def simulate(
    prog: Program | Circuit,
    weights: torch.Tensor | None = None,
    inputs: torch.Tensor | None = None,
    *,
    dtype: torch.dtype = torch.complex64,
) -> torch.Tensor:
    """The final statevector ``[batch, 2**n]`` (``[2**n]`` for unbatched or input-free circuits)."""
    prog = _program(prog, weights, inputs, dtype)
    batched = inputs is not None and inputs.dim() == 2
    state = _run(prog, weights, inputs).T
    return state if batched else state[0]


def _groups(n: int, max_size: int = 5) -> list[tuple[int, int]]:
    """Split wires 0..n-1 into contiguous, near-equal groups of at most ``max_size`` wires: (start, size)."""
    k = -(-n // max_size)
    sizes = [n // k + (1 if i < n % k else 0) for i in range(k)]
    return [(sum(sizes[:i]), sizes[i]) for i in range(k)]


def _apply_layer(state: torch.Tensor, mats: dict[int, torch.Tensor], n: int) -> torch.Tensor:
    """Apply one-qubit matrices ``{wire: [1 or batch, 2, 2]}`` to ``state [2**n, batch]``.

    Wires are grouped (≤ 5 per group); each group's Kronecker product (≤ 32×32) is applied by one matrix
    product on a view of the state, so a whole rotation layer costs a couple of matmuls, not n small ones.
    """
    batch = state.shape[1]
    for start, size in _groups(n):
        wires = [q for q in range(start, start + size) if q in mats]
        if not wires:
            continue
        k = None
        for q in range(start, start + size):
            m = mats.get(q)
            if m is None:
                m = torch.eye(2, dtype=state.dtype, device=state.device)[None]
            k = (
                m
                if k is None
                else (k[:, :, None, :, None] * m[:, None, :, None, :]).reshape(
                    max(k.shape[0], m.shape[0]), 2 * k.shape[1], 2 * k.shape[1]
                )
            )
        a, d, c = 1 << start, 1 << size, 1 << (n - start - size)
        if k.shape[0] == 1:  # type: ignore[union-attr]
            state = k[0] @ state.reshape(a, d, c * batch)  # type: ignore[index]
        else:
            state = torch.einsum("bij,ajcb->aicb", k, state.reshape(a, d, c, batch))
        state = state.reshape(-1, batch)
    return state


def probabilities(state: torch.Tensor) -> torch.Tensor:
    r = torch.view_as_real(state)
    return (r * r).sum(-1)


def expval_z(
    prog: Program | Circuit,
    weights: torch.Tensor | None = None,
    inputs: torch.Tensor | None = None,
    *,
    dtype: torch.dtype = torch.complex64,
) -> torch.Tensor:
    """Pauli-Z expectation of every measured wire: ``[batch, len(measured)]`` (real)."""
    prog = _program(prog, weights, inputs, dtype)
    z = (prog.z_sign.T @ probabilities(_run(prog, weights, inputs))).T
    return z if inputs is not None and inputs.dim() == 2 else z[0]


def sample(
    state: torch.Tensor, shots: int, wires: tuple[int, ...] | None = None, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Measure ``shots`` times in the computational basis: bits ``[batch, shots, len(wires)]`` (uint8)."""
    check_int(shots, "shots", 1, owner="sample")
    batched = state.dim() == 2
    state = state if batched else state[None]
    n = state.shape[1].bit_length() - 1
    wires = tuple(range(n)) if wires is None else tuple(wires)
    if any(not 0 <= q < n for q in wires):
        raise ConfigError(f"sample wires {wires} out of range for {n} qubits.")
    probs = probabilities(state.detach()).to(torch.float64)
    idx = torch.multinomial(probs, shots, replacement=True, generator=generator)
    shifts = torch.tensor([n - 1 - q for q in wires], device=idx.device)
    bits = ((idx[..., None] >> shifts) & 1).to(torch.uint8)
    return bits if batched else bits[0]


def expval_z_from_samples(bits: torch.Tensor) -> torch.Tensor:
    """Shot estimate of <Z> per wire from :func:`sample` bits (mean of +1 for 0 and -1 for 1)."""
    return 1.0 - 2.0 * bits.to(torch.float64).mean(-2)
