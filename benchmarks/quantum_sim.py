"""Samples/s of the lepton statevector simulator, forward + backward, batch 256, 3 entangling layers.

Compares against PennyLane default.qubit (torch interface, backprop, broadcasting over the batch) on the
same circuit, weights and inputs in the same run when PennyLane is installed (`pip install -e .[pennylane]`),
with the max abs difference of outputs and gradients; otherwise prints the issue's PennyLane figure.

    .venv/bin/python benchmarks/quantum_sim.py [--threads 1] [--qubits 4 8 12]
"""

from __future__ import annotations

import argparse
import importlib.util
import time

import torch

from lepton.quantum.circuit import variational_circuit
from lepton.quantum.simulator import compile_circuit, expval_z

PENNYLANE_ISSUE = {4: "~10–19k (issue, same machine)", 8: "~4k (issue, same machine)", 12: "not measured"}


def pennylane_step(n: int, n_layers: int, wts: torch.Tensor, xs: torch.Tensor):
    """The same circuit (RY encoding, Rot layers, CNOT ring) on PennyLane default.qubit, torch backprop,
    broadcast over the batch: returns a forward+backward step and the forward function."""
    import pennylane as qml

    dev = qml.device("default.qubit", wires=n)

    @qml.qnode(dev, interface="torch", diff_method="backprop")
    def circuit(w: torch.Tensor, x: torch.Tensor):
        for i in range(n):
            qml.RY(x[:, i], wires=i)
        for layer in range(n_layers):
            for q in range(n):
                qml.Rot(w[layer, q, 0], w[layer, q, 1], w[layer, q, 2], wires=q)
            pairs = [(q, (q + 1) % n) for q in range(n)] if n > 2 else [(0, 1)] if n == 2 else []
            for a, b in pairs:
                qml.CNOT(wires=[a, b])
        return [qml.expval(qml.PauliZ(q)) for q in range(n)]

    def forward(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.stack(list(circuit(w, x)), -1)

    def step() -> None:
        forward(wts, xs).sum().backward()

    return step, forward


def max_diffs(f_ours, f_pl, wts: torch.Tensor, xs: torch.Tensor) -> tuple[float, float]:
    """Max abs difference of outputs, and of the gradients of sum(outputs) wrt weights and inputs."""
    outs, grads = [], []
    for f in (f_ours, f_pl):
        w, x = wts.detach().clone().requires_grad_(), xs.detach().clone().requires_grad_()
        out = f(w, x)
        out.sum().backward()
        outs.append(out.detach())
        grads.append(torch.cat([w.grad.reshape(-1), x.grad.reshape(-1)]))
    return float((outs[0] - outs[1]).abs().max()), float((grads[0] - grads[1]).abs().max())


def rate(f, batch: int, seconds: float = 3.0) -> tuple[float, float]:
    f()
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        f()
        n += 1
    return batch * n / (time.perf_counter() - t0), batch * n / max(time.process_time() - c0, 1e-9)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--qubits", type=int, nargs="+", default=[4, 8, 12])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--pennylane-max-qubits", type=int, default=8, help="skip PennyLane above this many qubits")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    have_pl = importlib.util.find_spec("pennylane") is not None
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), batch {args.batch}, {args.layers} layers, "
        f"PennyLane {'installed' if have_pl else 'not installed'}"
    )
    head = (
        f"{'PennyLane':>11} {'ours/PL':>8} {'max|Δout|':>10} {'max|Δgrad|':>10}"
        if have_pl
        else "  PennyLane default.qubit"
    )
    print(f"{'qubits':>6} {'dtype':>10} {'samples/s (wall)':>17} {'samples/s (cpu time)':>21}{head}")
    for n in args.qubits:
        circ = variational_circuit(n, args.layers)
        for dtype in (torch.complex64, torch.complex128):
            real = torch.float32 if dtype == torch.complex64 else torch.float64
            prog = compile_circuit(circ, dtype=dtype)
            wts = torch.randn(circ.weight_shape, dtype=real, requires_grad=True)
            xs = torch.randn(args.batch, n, dtype=real, requires_grad=True)

            def step() -> None:
                expval_z(prog, wts, xs).sum().backward()

            wall, cpu = rate(step, args.batch)
            line = f"{n:>6} {str(dtype).split('.')[-1]:>10} {wall:>17,.0f} {cpu:>21,.0f}"
            if not have_pl:
                print(f"{line}  {PENNYLANE_ISSUE.get(n, '')}")
                continue
            if n > args.pennylane_max_qubits:
                print(f"{line} {'skipped':>11}")
                continue
            pl_step, pl_forward = pennylane_step(n, args.layers, wts, xs)
            pl_wall, _ = rate(pl_step, args.batch)
            d_out, d_grad = max_diffs(lambda w, x: expval_z(prog, w, x), pl_forward, wts, xs)
            print(f"{line} {pl_wall:>11,.0f} {wall / pl_wall:>7.1f}x {d_out:>10.1e} {d_grad:>10.1e}")


if __name__ == "__main__":
    main()
