"""Quantum exploration: a batched statevector simulator, variational quantum layers, hybrid models,
OpenQASM export, and quantum-inspired tensor-train layers. No quantum speed-up is claimed."""
