"""Quantum exploration: a batched statevector simulator, variational quantum layers, hybrid models,
OpenQASM export. No quantum speed-up is claimed. The quantum-inspired tensor-train layers are classical and
live in :mod:`lepton.models.tensor_train`."""
