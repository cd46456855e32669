"""``QuantumLayer``: a variational circuit as a torch module (inputs -> Pauli-Z expectations in [-1, 1])."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from lepton.errors import ConfigError
from lepton.quantum.circuit import Circuit, draw, variational_circuit
from lepton.quantum.simulator import Program, compile_circuit, expval_z
from lepton.utils.checks import check_float


class QuantumLayer(nn.Module):
    """``n_qubits`` wires, ``n_layers`` rotation + entangling-ring layers, weights ``[n_layers, n_qubits, k]``.

    ``forward(x)`` takes ``[batch, n_inputs]`` features (angles for angle encoding, amplitudes for
    amplitude encoding) and returns ``[batch, n_qubits]`` expectations of Z, as float32 (float64 with
    ``dtype=torch.complex128``). The circuit is compiled once per device and dtype.
    """

    def __init__(
        self,
        n_qubits: int,
        n_layers: int,
        *,
        n_inputs: int | None = None,
        encoding: Literal["angle", "amplitude"] = "angle",
        rotation: Literal["rot", "ry"] = "rot",
        entangler: Literal["cnot", "cz"] = "cnot",
        reupload: bool = False,
        dtype: torch.dtype = torch.complex64,
        seed: int | None = None,
        init_std: float | None = None,
    ) -> None:
        super().__init__()
        if dtype not in (torch.complex64, torch.complex128):
            raise ConfigError(f"QuantumLayer dtype must be torch.complex64 or torch.complex128, got {dtype}.")
        self.circuit: Circuit = variational_circuit(
            n_qubits,
            n_layers,
            n_inputs=n_inputs,
            encoding=encoding,
            rotation=rotation,
            entangler=entangler,
            reupload=reupload,
        )
        self.sim_dtype = dtype
        real = torch.float32 if dtype == torch.complex64 else torch.float64
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        if check_float(init_std, "init_std", 0, owner="QuantumLayer", allow_none=True) is None:
            init = torch.rand(self.circuit.weight_shape, generator=g, dtype=real) * 2 * torch.pi  # in [0, 2π)
        else:  # small angles start near the identity, away from barren plateaus
            init = torch.randn(self.circuit.weight_shape, generator=g, dtype=real) * init_std
        self.weights = nn.Parameter(init)
        self._programs: dict[tuple[str, torch.dtype], Program] = {}

    @property
    def n_inputs(self) -> int:
        return self.circuit.n_inputs

    def program(self, device: torch.device) -> Program:
        key = (str(device), self.sim_dtype)
        if key not in self._programs:
            self._programs[key] = compile_circuit(self.circuit, dtype=self.sim_dtype, device=device)
        return self._programs[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return expval_z(self.program(self.weights.device), self.weights, x)

    def draw(self) -> str:
        return draw(self.circuit, self.weights)

    def extra_repr(self) -> str:
        m = self.circuit.meta
        return (
            f"n_qubits={self.circuit.n_qubits}, n_layers={m['n_layers']}, encoding={self.circuit.encoding}, "
            f"rotation={m['rotation']}, entangler={m['entangler']}, reupload={m['reupload']}"
        )
