"""Model compression: pruning, weight sharing and quantization, distillation, and the `.lep` file."""
