"""Generated gRPC modules of the Open Inference Protocol (`make proto` regenerates them from the .proto)."""
