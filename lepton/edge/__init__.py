"""Edge deployment: ONNX export, int8 through ONNX Runtime, latency profiling, the edge–cloud split
planner, the Open Inference Protocol server and the artifact registry."""
